"""The same scripts on JAX and PyTorch, with TensorFlow taken away, and weights that cross over.

This file runs under the default backend (TensorFlow); it starts the other backends in
subprocesses, since a process picks its Keras backend once.
"""
import subprocess
import sys

import numpy as np
import pytest

from common import run
from portable import OTHERS, env


def passed(returncode, output):
    """Every test a portable run ran passed, and no dtype truncation was warned."""
    assert returncode == 0, output[-6000:]
    last = output.splitlines()[-1]
    assert " passed" in last and "failed" not in last and "error" not in last
    assert "truncated to dtype" not in output


@pytest.mark.parametrize("backend", OTHERS)
def test_the_portable_tests_pass_without_tensorflow(backend, portable_run):
    """Every test marked `backends` (each script's end-to-end run with a kill and a resume,
    the samplers, the flow's inverse and log-det, the kernels, the direct calls), in a process
    where `import tensorflow` fails: so no module on these paths needs TensorFlow. pytest.ini
    turns a dtype-truncation warning into an error, so none is printed either. Those marked
    `portable_slow` as well run there in the slow tier (below)."""
    passed(*portable_run)


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHERS)
def test_the_slower_portable_tests_pass_without_tensorflow(backend, portable_run):
    """The `portable_slow` tests (the seed determinism with a resume, the τ schedule with
    several steps a call), likewise."""
    passed(*portable_run)


@pytest.mark.quick
def test_the_blocker_blocks(tmp_path):
    """The harness above proves something only if TensorFlow really cannot be imported."""
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib.util\nassert importlib.util.find_spec('tensorflow') is None\n"
                     "import tensorflow\n")
    done = subprocess.run([sys.executable, str(probe)], env=env("jax", tensorflow=False),
                          capture_output=True, text=True)
    assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr
    done = subprocess.run([sys.executable, str(probe)], env=env("jax"), capture_output=True,
                          text=True)
    assert done.returncode == 1 and "AssertionError" in done.stderr  # found when not blocked


CROSS = """
import os, sys, time, numpy as np, keras, vae_keras
from common import run
backend, folder, *others = sys.argv[1:]
alive = globals().get("alive", lambda: None)  # the test's check that the other processes run
assert keras.backend.backend() == backend
z = np.linspace(-2, 2, 20, dtype="float32").reshape(10, 2)
run.set_random_seed({"tensorflow": 1, "jax": 2, "torch": 3}[backend])  # as the scripts
vae, _, decoder = vae_keras.build_models(vae_keras.Config())
# one epoch away from the initial weights, then save and decode; the decoding appears last, by a
# rename, so the weights are whole once it is there
vae.fit(np.random.default_rng(0).random((200, 784)).astype("float32"), epochs=1, batch_size=100,
        verbose=0)
vae.save_weights(f"{folder}/{backend}.weights.h5")
np.save(f"{folder}/{backend}.part.npy", decoder.predict(z, verbose=0))
os.replace(f"{folder}/{backend}.part.npy", f"{folder}/{backend}.npy")
for source in others:  # decode with the weights each other backend saved, once they are there
    deadline = time.time() + 600
    while not os.path.exists(f"{folder}/{source}.npy"):
        alive()
        assert time.time() < deadline, f"no weights from {source}"
        time.sleep(0.1)
    vae.load_weights(f"{folder}/{source}.weights.h5")
    np.save(f"{folder}/{source}-{backend}.npy", decoder.predict(z, verbose=0))
"""


def test_weights_saved_on_each_backend_load_on_every_other(tmp_path, monkeypatch):
    """TensorFlow's part runs in this process (its backend), JAX's and PyTorch's in one process
    each, all at once: each trains and saves, then loads what the other two saved."""
    backends = ("tensorflow", *OTHERS)
    logs = {b: open(tmp_path / f"{b}.log", "w") for b in OTHERS}
    others = {b: subprocess.Popen(
        [sys.executable, "-c", CROSS, b, str(tmp_path), *sorted(set(backends) - {b})],
        env=env(b), cwd=run.REPO, stdout=logs[b], stderr=subprocess.STDOUT) for b in OTHERS}

    def output(backend):
        logs[backend].close()
        return (tmp_path / f"{backend}.log").read_text()[-3000:]

    def alive():  # fail at once, not after the wait, when a process the others wait for failed
        for backend, process in others.items():
            assert process.poll() in (None, 0), f"{backend}: {output(backend)}"

    try:
        monkeypatch.setattr(sys, "argv", ["-c", "tensorflow", str(tmp_path), *OTHERS])
        exec(CROSS, {"alive": alive})
        for backend, process in others.items():
            assert process.wait(timeout=600) == 0, f"{backend}: {output(backend)}"
    finally:
        for backend, process in others.items():
            process.kill()
            process.wait()
            logs[backend].close()
    for source in backends:
        for target in set(backends) - {source}:
            np.testing.assert_allclose(np.load(tmp_path / f"{source}-{target}.npy"),
                                       np.load(tmp_path / f"{source}.npy"), rtol=1e-5,
                                       atol=1e-6, err_msg=f"saved on {source}, loaded on {target}")
    # each backend trained from its own seed: the check above compares distinct weights
    assert not np.allclose(np.load(tmp_path / "jax.npy"), np.load(tmp_path / "torch.npy"))


def test_gpu_check_without_a_gpu_says_so_in_one_line(background_command):
    """`portable.COMMANDS` holds the command: it runs in the background, started with the suite."""
    done = background_command
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("no GPU: ") and len(done.stdout.splitlines()) == 1
    assert "jax: CPU only" in done.stdout and "torch: CPU only" in done.stdout


def test_gpu_check_runs_and_reports_on_the_cpu_when_asked(background_command):
    """The check itself, tried on the CPU with TensorFlow blocked (a GPU machine may lack it);
    the command in `portable.COMMANDS`, in the background."""
    done = background_command
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "tensorflow: not importable, skipped" in lines
    assert any(l.startswith("torch_vae: ") and "s/epoch" in l and "CPU seeds" in l for l in lines)
    keys = dict(kv.split("=") for kv in lines[-1].split())
    assert keys["runs"] == "1" and float(keys["torch_vae_s_per_epoch"]) > 0
