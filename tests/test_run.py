"""A run's plumbing (common/config.py, run.py, backup.py, machine.py, evaluation.py): settings
and their command line, evaluation-only flags, bad values, atomic writes, NaN, unreadable
weights, resume of weights and optimizer, history files, naming the machine."""
import json
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import evaluation, run
from simulate import KillAt

REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Toy(run.RunConfig):
    rate: float = run.arg(0.5, "a rate in (0, 1]", gt=0.0, le=1.0)
    mode: str = run.arg("a", "a mode", choices=["a", "b"])

    def validate(self):
        if self.mode == "b" and self.rate > 0.9:
            raise ValueError("--rate must be <= 0.9 in mode b")


@dataclasses.dataclass(frozen=True)
class ToyWithEvaluation(Toy):
    probes: int = run.arg(4, "draws for an evaluation-only figure", ge=1, le=9, evaluation=True)


@pytest.mark.quick
def test_an_evaluation_flag_is_declared_on_its_field_alone():
    """A new evaluation-only setting needs nothing in common/: resume ignores it (with the
    epochs), --load ignores it (not the epochs), the training settings leave it out, and --help
    says so."""
    assert run.not_training(ToyWithEvaluation) == (*run.RUN_ONLY, "epochs", "probes")
    assert run.load_may_change(ToyWithEvaluation) == (*run.RUN_ONLY, "probes")
    cfg = run.parse_config(ToyWithEvaluation, ["--probes", "7"])
    assert "probes" not in run.settings(cfg) and "rate" in run.settings(cfg)
    saved = dataclasses.asdict(run.parse_config(ToyWithEvaluation, ["--epochs", "9"]))
    assert run.changed_settings(saved, cfg) == []
    assert run.changed_settings(saved, cfg, run.load_may_change(ToyWithEvaluation)) == [
        ("--epochs", 9, 50)]
    with pytest.raises(SystemExit):
        run.parse_config(ToyWithEvaluation, ["--help"])


@pytest.mark.quick
def test_common_names_no_field_of_a_particular_script():
    """The scripts' own settings are theirs: the run's plumbing names none (the seed study reads
    metrics.json keys, one of which, is_images, shares a setting's name)."""
    import importlib

    from common import catalog
    base = {f.name for f in dataclasses.fields(run.RunConfig)}
    own = set()
    for s in catalog.SCRIPTS:
        own |= {f.name for f in dataclasses.fields(importlib.import_module(s.name).Config)} - base
    for module in ("run.py", "journal.py", "catalog.py"):
        text = (REPO / "common" / module).read_text()
        assert not [n for n in own if f'"{n}"' in text], module


@pytest.mark.quick
def test_defaults_and_overrides():
    cfg = run.parse_config(Toy, [])
    assert cfg == Toy()
    cfg = run.parse_config(Toy, ["--epochs", "3", "--batch-size", "7", "--rate", "1", "--load"])
    assert (cfg.epochs, cfg.batch_size, cfg.rate, cfg.load) == (3, 7, 1.0, True)


@pytest.mark.quick
@pytest.mark.parametrize("argv, needle", [
    (["--epochs", "-1"], "--epochs must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--rate", "0"], "--rate must be > 0.0"),
    (["--rate", "nan"], "--rate must be finite"),
    (["--mode", "c"], "invalid choice"),
    (["--epochs", "two"], "invalid int value"),
    (["--bogus"], "unrecognized arguments"),
    (["--mode", "b", "--rate", "1"], "--rate must be <= 0.9 in mode b"),
])
def test_bad_values_exit_2_with_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        run.parse_config(Toy, argv, prog="toy.py")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and err.startswith("toy.py: error:")


@pytest.mark.quick
def test_help_documents_every_field(capsys):
    with pytest.raises(SystemExit) as e:
        run.parse_config(Toy, ["--help"], prog="toy.py")
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(Toy):
        assert "--" + f.name.replace("_", "-") in text
        assert " ".join(f.metadata["help"].split()) in text


def test_script_cli_rejects_bad_value_without_traceback():
    done = subprocess.run([sys.executable, str(REPO / "vae_keras.py"), "--batch-size", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "vae_keras.py: error: --batch-size must be >= 1 (got 0)" in done.stderr


@pytest.mark.quick
def test_write_json_is_atomic_and_readable(tmp_path):
    run.write_json(tmp_path / "m.json", {"a": np.float32(1.5), "b": 2})
    assert (tmp_path / "m.json").read_text().startswith("{")
    assert not list(tmp_path.glob("*.tmp"))
    # a write that fails half-way leaves the previous file whole and no temporary behind
    before = (tmp_path / "m.json").read_text()
    with pytest.raises(TypeError):
        run.write_json(tmp_path / "m.json", {"a": 1, "b": object()})
    assert (tmp_path / "m.json").read_text() == before
    assert json.loads(before) == {"a": 1.5, "b": 2}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.quick
def test_nan_loss_stops_with_clear_message(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.full((20, 3), np.nan, "float32")
    cfg = run.RunConfig(epochs=2, batch_size=10)
    earlier = {"model.weights.h5": "earlier weights", "history.csv": "epoch,loss\n0,1.5\n",
               "config.json": '{"epochs": 50}\n'}
    for name, text in earlier.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(SystemExit) as e:
        run.train(model, cfg, tmp_path, x, np.zeros((20, 1), "float32"))
    assert "loss became nan" in str(e.value)
    for name, text in earlier.items():  # the earlier run's outputs are whole
        assert (tmp_path / name).read_text() == text


@pytest.mark.quick
def test_unreadable_weights_give_clear_error(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    bad = tmp_path / "model.weights.h5"
    bad.write_bytes(b"garbage")
    with pytest.raises(SystemExit, match="cannot read the weights"):
        run.load_weights(model, bad)
    with pytest.raises(SystemExit, match="no weights"):
        run.load_weights(model, tmp_path / "absent.weights.h5")


@pytest.mark.quick
def test_importance_sampled_nll_log_mean_exp():
    lw = np.log(np.array([[1.0, 3.0], [2.0, 2.0], [0.5, 1.5]]))
    m = evaluation.importance_sampled_nll(lambda x, k: lw[x], np.arange(3), 2, chunk_samples=4)
    nll = -np.log([2.0, 2.0, 1.0])
    np.testing.assert_allclose(m["test_nll"], nll.mean())
    np.testing.assert_allclose(m["test_nll_stderr"], nll.std(ddof=1) / np.sqrt(3))
    assert (m["is_samples"], m["is_images"]) == (2, 3)


@pytest.mark.quick
def test_bernoulli_log_likelihood_from_logits():
    rng = np.random.default_rng(0)
    x = rng.random((3, 4, 5)).astype("float32")
    logits = rng.normal(0, 3, (3, 4, 5)).astype("float32")
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    by_hand = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2))
    np.testing.assert_allclose(np.asarray(evaluation.bernoulli_log_likelihood(x, logits)),
                               by_hand, rtol=1e-5)
    # no clipping: a pixel the decoder is sure of keeps its exact log-likelihood
    sure = np.asarray(evaluation.bernoulli_log_likelihood(np.zeros((1, 1)), np.full((1, 1), 40.0)))
    assert sure[0] == pytest.approx(-40.0, rel=1e-6)


@pytest.mark.quick
def test_read_history_parses_and_drops_empty_columns(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss,tau\n0,3.5,4.0,NA\n1,2.5,NA,NA\n")
    history = run.read_history(path)
    assert set(history) == {"epoch", "loss", "val_loss"}
    np.testing.assert_array_equal(history["loss"], [3.5, 2.5])
    assert np.isnan(history["val_loss"][1])


@pytest.mark.quick
def test_resume_restores_weights_and_optimizer_state(tmp_path):
    import keras

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        m.compile(optimizer="adam", loss="mse")
        return m

    x = np.random.default_rng(0).random((40, 3)).astype("float32")
    y = x.sum(1, keepdims=True)
    cfg = run.RunConfig(epochs=3, batch_size=10)
    kill = KillAt(2)
    with pytest.raises(KeyboardInterrupt):
        run.train(model(), cfg, tmp_path, x, y, callbacks=[kill])
    resumed = model()
    history = run.train(resumed, cfg, tmp_path, x, y, callbacks=[kill])
    assert kill.started == [0, 1, 2, 2]
    assert int(resumed.optimizer.iterations.numpy()) == 12  # 3 epochs x 4 batches, not 4
    assert len(history["loss"]) == 3 and np.all(np.isfinite(history["loss"]))


@pytest.mark.quick
@pytest.mark.parametrize("flags, units", [("fpu avx2 fma", "no AVX-512 or AMX"),
                                          ("avx2 avx512f avx512_bf16 amx_bf16 amx_tile",
                                           "AVX-512 AVX512-BF16 AMX-BF16")])
def test_machine_names_the_cpu_and_its_bfloat16_units(tmp_path, flags, units):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: {flags}\n")
    text = run.machine(cpuinfo)
    assert text.startswith("Test CPU 9000, ") and text.endswith(units)
    assert run.machine(tmp_path / "missing").endswith("no AVX-512 or AMX")


@pytest.mark.quick
def test_machine_names_the_accelerator_the_backend_uses(monkeypatch, tmp_path):
    """No GPU here: the backends' own device queries are replaced by a pretend one."""
    import types

    import jax
    import torch

    assert run.accelerator() is None  # this machine computes on its CPU
    monkeypatch.setattr(run.keras.backend, "backend", lambda: "torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Pretend GPU 80GB")
    assert run.machine(tmp_path / "missing").endswith("; Pretend GPU 80GB (PyTorch, cuda)")
    monkeypatch.setattr(run.keras.backend, "backend", lambda: "jax")
    gpu = types.SimpleNamespace(platform="gpu", device_kind="Pretend H")
    monkeypatch.setattr(jax, "devices", lambda: [gpu])
    assert run.accelerator() == "Pretend H (JAX, gpu)"
    monkeypatch.setattr(jax, "devices", lambda: 1 / 0)
    assert run.accelerator() == "an accelerator that could not be named"
