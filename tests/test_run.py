"""The run's life (common/run.py: setup, train, load, finish, cli): a NaN loss stops training
with one line; a metric out of range is written, said and exits 1; Ctrl-C names the last epoch
and how to go on (after the last epoch: that the evaluation comes next); a kill during the
evaluation keeps the old outputs and does not train again; --load names the setting that
differs (the epochs too), needs a folder and a history. (Settings and bad flags:
test_config.py; backups: test_backup.py; the output folder: test_journal.py; Ctrl-C before
`main` starts: test_startup.py.)"""
import importlib.util
import json
import time

import keras
import numpy as np
import pytest

import vae_keras
from common import run
from simulate import KillAt, KillAtTrainEnd, finished, one_line_error, quick


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
def test_a_metric_out_of_range_is_written_said_and_exits_1(tmp_path):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    with pytest.raises(SystemExit) as stop:
        run.finish(tmp_path, model, {"test_nll": float("nan"), "test_loss": 1.0}, time.perf_counter())
    assert "test_nll came out NaN or infinite" in str(stop.value.code)
    assert "NaN" in (tmp_path / "metrics.json").read_text()


# what an interrupt says matches what happened
def test_ctrl_c_names_the_last_epoch_and_how_to_resume(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        run.cli(lambda: vae_keras.main(quick(out), callbacks=[KillAt(1)]))
    assert stop.value.code == 130
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert lines[-1].startswith("interrupted after epoch 1 ")
    assert "The same command resumes from epoch 2" in lines[-1]
    kill = KillAt(5)  # never reached: it only records the epochs that start
    run.cli(lambda: vae_keras.main(quick(out), callbacks=[kill]))  # the same command resumes
    assert kill.started == [1] and len(run.read_history(out / "history.csv")["loss"]) == 2


def test_ctrl_c_after_the_last_epoch_says_the_run_evaluates_next(tmp_path, capsys):
    from simulate import KillAtTrainEnd

    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        run.cli(lambda: vae_keras.main(quick(out), callbacks=[KillAtTrainEnd()]))
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "after the last epoch (2" in last and "evaluates it without training" in last


def test_a_kill_during_the_evaluation_keeps_the_old_outputs_and_does_not_train_again(tmp_path):
    out = tmp_path / "run"
    vae_keras.main(quick(out, "--seed", "1"))
    old = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != run.LOCK}
    with pytest.raises(KeyboardInterrupt):
        vae_keras.main(quick(out), callbacks=[KillAtTrainEnd()])
    assert {p.name: p.read_bytes() for p in out.iterdir()
            if p.is_file() and p.name in old} == old  # the earlier set, whole
    kill = KillAt(5)
    metrics = vae_keras.main(quick(out), callbacks=[kill])
    assert kill.started == []  # evaluated from the backed-up weights, not trained again
    assert json.loads((out / "config.json").read_text())["seed"] == 0
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert not (out / run.BACKUP).exists() and not (out / run.PENDING).exists()


# --load checks what it loads
def test_load_names_the_flag_that_differs_from_the_saved_run(tmp_path):
    out = tmp_path / "run"
    vae_keras.main(quick(out))
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--load", "--latent-dim", "3"))
    assert "--latent-dim 3 (saved: 2)" in str(stop.value.code)


def test_load_checks_epochs_and_needs_an_existing_folder(tmp_path):
    out = tmp_path / "run"
    finished(out)
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--load", "--epochs", "50"))
    assert "--epochs 50 (saved: 2)" in one_line_error(stop)
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(tmp_path / "missing", "--load"))
    assert "no folder" in one_line_error(stop) and not (tmp_path / "missing").exists()


def test_load_without_a_history_names_what_is_missing(tmp_path):
    out = tmp_path / "run"
    vae_keras.main(quick(out))
    (out / "history.csv").unlink()
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--load"))
    assert "no history.csv" in str(stop.value.code)


@pytest.mark.quick
@pytest.mark.parametrize("script", ["vae_keras", "vae_vmf_keras", "vae_keras_cnn_gs"])
def test_bfloat16_computes_the_products_in_bfloat16_and_the_rest_in_float32(script):
    """--precision bfloat16 (run.precision): the Dense and convolution layers compute in
    bfloat16; the script's own layers (samplers, losses) compute in float32; every weight
    stays float32; a training step's loss is finite and float32; the policy is reset after."""
    import importlib

    module = importlib.import_module(script)
    vae, encoder, decoder = module.build_models(module.Config(precision="bfloat16"))
    assert keras.config.dtype_policy().name == "float32"
    products = [l for l in vae._flatten_layers() if isinstance(
        l, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    assert any(l.compute_dtype == "bfloat16" for l in products)
    own = [l for l in vae._flatten_layers() if type(l).__module__ == script]
    assert own and all(l.compute_dtype == "float32" for l in own), [l.name for l in own]
    assert {v.dtype for v in vae.weights if "float" in v.dtype} == {"float32"}
    x = np.random.default_rng(0).random((16, *vae.input_shape[1:])).astype("float32")
    loss = vae.train_on_batch(x)
    assert np.isfinite(loss)
    from common import evaluation

    logits = evaluation.infer(evaluation.logits_model(decoder), np.asarray(
        evaluation.infer(encoder, x[:2], "float32")[0] if script == "vae_keras" else
        module.uniform_on_sphere(2, decoder.input_shape[-1], np.random.default_rng(0))
        if script == "vae_vmf_keras" else np.eye(decoder.input_shape[-1], dtype="float32")[
            np.zeros((2, decoder.input_shape[1]), int)], "float32"))
    assert logits.dtype == np.float64 and np.all(np.isfinite(logits))


SEEDS_WITHOUT_TENSORFLOW = """
import random, sys, numpy as np, torch
from common import run
import keras
def draws():
    return [random.random(), float(np.random.random()), float(torch.rand(1)),
            float(keras.random.uniform(()))]
run.set_random_seed(3)
ours = draws()
assert "tensorflow" not in sys.modules, "the seed imported TensorFlow"
keras.utils.set_random_seed(3)  # Keras' own, which imports TensorFlow when it is installed
assert "tensorflow" in sys.modules
assert draws() == ours, "other seeds than Keras' call sets"
"""


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="needs TensorFlow installed, to show it is left unloaded")
def test_seeding_pytorch_does_not_import_tensorflow_and_seeds_as_keras_does():
    """TensorFlow installed, on PyTorch: `run.set_random_seed` leaves it unloaded (Keras' own
    call imports it, seconds at every start) and sets the seeds Keras' call sets."""
    import subprocess
    import sys

    from portable import env

    done = subprocess.run([sys.executable, "-c", SEEDS_WITHOUT_TENSORFLOW], env=env("torch"),
                          cwd=run.REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
