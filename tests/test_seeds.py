"""What a seed changes and fixes, and the seed-study command (common/seeds.py): it runs each
seed once and summarises them, refuses flags it would ignore, does not count a run with damaged
metrics as done, interrupted summarises the seeds that finished, and --summary-only needs no
Keras."""
import dataclasses
import importlib
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import nice
import vae_keras
import vae_vmf_keras
from common import catalog, run, seeds
from simulate import KillAt, one_line_error


def epoch_order(x, y, seed, epoch, batch_size=8):
    """One epoch's batches as `fit` gets them on this backend, checked against the NumPy ones."""
    batches, order = run.epoch_batches(x, y, batch_size, seed)
    order.on_epoch_begin(epoch)
    plain = [order.batches[i] for i in range(len(order.batches))]
    if batches is not order.batches:  # TensorFlow's tf.data pipeline: the same batches
        served = [tuple(t.numpy() for t in b) if isinstance(b, tuple) else b.numpy()
                  for b in batches]
        assert len(served) == len(plain)
        for a, b in zip(served, plain):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return plain


@pytest.mark.quick
def test_every_epoch_has_its_own_order_fixed_by_seed_and_epoch():
    x = np.arange(50, dtype="float32")[:, None]
    first = np.concatenate(epoch_order(x, None, seed=0, epoch=0))[:, 0]
    assert sorted(first) == list(range(50))  # each image once an epoch
    assert np.array_equal(first, np.concatenate(epoch_order(x, None, 0, 0))[:, 0])
    assert not np.array_equal(first, np.concatenate(epoch_order(x, None, 0, 1))[:, 0])
    assert not np.array_equal(first, np.concatenate(epoch_order(x, None, 1, 0))[:, 0])
    # images stay paired with their targets, and the last batch keeps the remainder
    pairs = epoch_order(x, -x, seed=3, epoch=2)
    assert [len(a) for a, _ in pairs] == [8] * 6 + [2]
    assert all(np.array_equal(a, -b) for a, b in pairs)


@pytest.mark.quick
def test_fit_with_a_seed_set_sees_a_new_order_every_epoch(tmp_path):
    """The fault this guards against: seeded fit(shuffle=True) replaying one order."""
    class Record(keras.layers.Layer):
        def build(self, shape):
            self.first = self.add_weight(shape=(), initializer="zeros", trainable=False)
            self.w = self.add_weight(shape=(1,), initializer="ones")

        def call(self, x):
            self.first.assign(x[0, 0])
            return x * self.w

    cfg = run.RunConfig(epochs=3, batch_size=4, seed=0)
    keras.utils.set_random_seed(cfg.seed)
    inputs = keras.Input((1,))
    record = Record()
    model = keras.Model(inputs, record(inputs))
    model.compile("sgd", "mse")
    seen = []

    class Batches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(record.first.numpy()))

    x = np.arange(40, dtype="float32")[:, None]
    run.train(model, cfg, tmp_path, x, x, callbacks=[Batches()])
    epochs = np.array(seen).reshape(3, 10)
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


def sampler_and_input(script, seed):
    """A script's model weights and its sampling layer with an input, built under `seed`."""
    keras.utils.set_random_seed(seed)
    if script is nice:
        cfg = nice.Config(seed=seed, hidden_dim=16, hidden_layers=2)
        encoder, _ = nice.build_models(cfg, dim=8)
        return encoder, encoder.get_layer("noise"), np.full((4, 8), 0.5, "float32")
    if script is vae_vmf_keras:
        cfg = vae_vmf_keras.Config(seed=seed, table_size=1000)
    else:
        cfg = script.Config(seed=seed)
    model = script.build_models(cfg)[0]
    layer = model.get_layer("z")
    if script is vae_keras:
        return model, layer, [np.zeros((4, 2), "float32")] * 2
    if script is vae_vmf_keras:
        return model, layer, np.tile(np.eye(4, dtype="float32")[:1], (4, 1))
    return model, layer, np.zeros((4, cfg.num_latents, cfg.classes_per_latent), "float32")


@pytest.mark.quick
@pytest.mark.parametrize("script", [importlib.import_module(s.name) for s in catalog.SCRIPTS],
                         ids=lambda m: m.__name__)
def test_a_seed_sets_the_initial_weights_and_the_sampler_noise(script):
    draws = {}
    for key, seed in (("a", 0), ("again", 0), ("b", 1)):
        model, layer, x = sampler_and_input(script, seed)
        weights = np.concatenate([np.ravel(w) for w in model.get_weights()])
        noise = np.concatenate([np.ravel(layer(x, training=True)) for _ in range(2)])
        draws[key] = weights, noise
    for i, what in enumerate(("initial weights", "sampler noise")):
        assert np.array_equal(draws["a"][i], draws["again"][i]), f"{what}: same seed differs"
        assert not np.array_equal(draws["a"][i], draws["b"][i]), f"{what}: other seed equal"


def history(tmp_path, name, seed, kill=None):
    out = tmp_path / name
    argv = ["--epochs", "2", "--subset", "300", "--is-images", "10", "--seed", str(seed),
            "--out-dir", str(out)]
    if kill:
        with pytest.raises(KeyboardInterrupt):
            vae_keras.main(argv, callbacks=[kill])
    vae_keras.main(argv)
    return run.read_history(out / "history.csv")


@pytest.mark.backends
@pytest.mark.portable_slow  # JAX and PyTorch: slow tier
def test_same_seed_same_history_resumed_or_not_and_another_seed_differs(tmp_path,
                                                                      test_images_1000):
    a = history(tmp_path, "a", 0)
    again = history(tmp_path, "again", 0)
    resumed = history(tmp_path, "resumed", 0, kill=KillAt(1))
    other = history(tmp_path, "other", 1)
    for column in ("loss", "val_loss"):
        assert np.array_equal(a[column], again[column]), column
        assert np.array_equal(a[column], resumed[column]), column
        assert not np.array_equal(a[column], other[column]), column


@pytest.mark.quick
def test_summary_statistics_and_the_mixed_image_counts_note(tmp_path):
    for seed, (val, nll, images) in enumerate([(10.0, 5.0, 100), (12.0, 6.0, 20), (14.0, 7.0, 20)]):
        out = seeds.run_dir(tmp_path, "vae_keras", seed)
        out.mkdir(parents=True)
        (out / "history.csv").write_text(f"epoch,loss,val_loss\n0,{val + 9},{val + 5}\n1,{val + 1},{val}\n")
        run.write_json(out / "metrics.json", {"final_val_loss": val, "best_val_loss": val,
                                              "test_nll": nll, "is_images": images,
                                              "seconds_per_epoch": 1.0 + seed})
    summary = seeds.summarise(tmp_path, "vae_keras", [0, 1, 2], "cmd")
    val = summary["metrics"]["final_val_loss"]
    assert (val["mean"], val["sd"], val["min"], val["max"]) == (12.0, 2.0, 10.0, 14.0)
    assert val["seeds"] == [0, 1, 2] and val["values"] == [10.0, 12.0, 14.0]
    assert summary["metrics"]["test_nll"]["sd"] == pytest.approx(1.0)
    assert summary["is_images"] == {"0": 100, "1": 20, "2": 20} and "note" in summary
    assert "test_neg_elbo" not in summary["metrics"]  # no run has it
    assert json.loads((tmp_path / "vae_keras" / "seeds.json").read_text()) == summary
    assert (tmp_path / "vae_keras" / "loss_seeds.png").stat().st_size > 0


def study(tmp_path, *flags):
    return subprocess.run([sys.executable, "-m", "common.seeds", "vae_keras", "--seeds", "0", "1",
                           "--results", str(tmp_path), *flags, "--", "--epochs", "1",
                           "--subset", "200", "--is-images", "5"],
                          cwd=run.REPO, capture_output=True, text=True)


@pytest.mark.slow  # 30+ s of subprocess training; its parts run by default (the tests below too)
def test_the_study_runs_each_seed_once_and_summarises(tmp_path):
    first = study(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((tmp_path / "vae_keras" / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["command"].endswith("--is-images 5")
    assert (tmp_path / "vae_keras" / "seeds" / "1" / "metrics.json").is_file()
    again = study(tmp_path)  # everything done: nothing is trained again
    assert again.returncode == 0 and again.stdout.count(": done (") == 2
    assert "Epoch 1/1" not in again.stdout
    changed = subprocess.run([sys.executable, "-m", "common.seeds", "vae_keras", "--seeds", "0",
                              "--results", str(tmp_path), "--summary-only", "--", "--epochs", "2"],
                             cwd=run.REPO, capture_output=True, text=True)
    assert changed.returncode == 1 and "no finished run with these settings" in changed.stderr


@pytest.mark.quick
def test_a_setting_added_after_a_run_reads_as_its_default(tmp_path):
    """Runs made before a flag existed lack it in config.json: the seed study keeps them and
    --load accepts them as made with the flag's default, which is the behaviour they had; a
    different value still counts as a change."""
    cfg = run.parse_config(nice.Config, ["--epochs", "3"], prog="nice.py")
    saved = {k: v for k, v in run.settings(cfg).items() if k not in ("noise_kind", "forward")}
    assert run.changed_settings(saved, cfg) == []
    other = run.parse_config(nice.Config, ["--noise-kind", "positive"], prog="nice.py")
    assert run.changed_settings(saved, other) == [("--noise-kind", "negative", "positive")]

    out = tmp_path / "nice"
    out.mkdir()
    files = {"metrics.json": json.dumps({"final_val_loss": 1.0}),
             "config.json": json.dumps({**saved, "epochs": 3, "seed": 0}),
             "history.csv": "epoch,loss,val_loss\n0,1.0,1.0\n"}
    for name, text in files.items():
        (out / name).write_text(text)
    run.adopt(out)
    assert seeds.is_done(tmp_path / "nice", "nice", ["--epochs", "3"])
    assert not seeds.is_done(tmp_path / "nice", "nice", ["--epochs", "3", "--forward", "eq7"])


@pytest.mark.quick
def test_the_seed_study_refuses_flags_it_would_ignore(capsys):
    for flag in (["--out-dir", "X"], ["--seed", "3"], ["--load"]):
        with pytest.raises(SystemExit) as stop:
            seeds.main(["vae_keras", "--", "--epochs", "2", *flag])
        assert stop.value.code == 2 and flag[0] in capsys.readouterr().err


def test_a_seed_run_with_damaged_metrics_is_not_counted_as_done(tmp_path):
    root = tmp_path / "results"
    flags = ["--epochs", "2", "--subset", "200", "--is-images", "5", "--is-samples", "5"]
    vae_keras.main([*flags, "--out-dir", str(root / "vae_keras")])
    (root / "vae_keras" / "metrics.json").write_text("{}\n")
    with pytest.raises(SystemExit) as stop:
        seeds.main(["vae_keras", "--seeds", "0", "--results", str(root), "--summary-only",
                    "--", *flags])
    assert "[0] have no finished run" in one_line_error(stop)
    with pytest.raises(SystemExit) as stop:
        seeds.read_run(root / "vae_keras")
    assert "lacks the metrics" in one_line_error(stop)


def test_the_seed_study_interrupted_summarises_what_finished(tmp_path, capsys):
    root = tmp_path / "results"
    flags = ["--epochs", "2", "--subset", "200", "--is-images", "5", "--is-samples", "5"]
    vae_keras.main([*flags, "--out-dir", str(root / "vae_keras")])
    with pytest.raises(SystemExit) as stop:
        seeds.interrupted(root, "vae_keras", [0, 1], "python -m common.seeds vae_keras", None,
                          flags)
    assert stop.value.code == 130
    assert json.loads((root / "vae_keras" / "seeds.json").read_text())["seeds"] == [0]
    assert "runs [1]" in capsys.readouterr().err


def fake_study(root, seeds_settings):
    """Published runs of vae_keras, one per seed, each with the settings given (no training)."""
    for seed, settings in enumerate(seeds_settings):
        out = seeds.run_dir(root, "vae_keras", seed)
        out.mkdir(parents=True)
        run.write_json(out / "config.json", {**settings, "seed": seed, "out_dir": str(out)})
        run.write_json(out / "metrics.json", {"final_val_loss": 150.0 + seed, "test_loss": 150.0})
        (out / "history.csv").write_text("epoch,loss,val_loss\n0,160,155\n1,151,150\n")
        run.adopt(out, ["config.json", "metrics.json", "history.csv"])


@pytest.mark.quick
def test_the_summary_reads_only_what_the_runs_recorded_and_needs_no_keras(tmp_path):
    """--summary-only in a process where Keras and TensorFlow cannot load: it summarises runs
    made with the flags given and one set of settings, and refuses (one line, status 1) runs
    whose recorded settings differ from those flags or from each other."""
    # seed 0 made after a setting was added: the others lack it, which is not a difference
    fake_study(tmp_path, [{"epochs": 2, "latent_dim": 2, "is_samples": 9}]
               + [{"epochs": 2, "latent_dim": 2}] * 2)
    code = ("import sys; sys.modules['keras'] = None; sys.modules['tensorflow'] = None\n"
            "from common import config, seeds\n"
            "config.cli(lambda: seeds.main(['vae_keras', '--seeds', '0', '1', '2', "
            "'--summary-only', '--results', sys.argv[1], '--'] + sys.argv[2:]))")

    def summary(*flags):
        return subprocess.run([sys.executable, "-c", code, str(tmp_path), *flags], cwd=run.REPO,
                              capture_output=True, text=True, timeout=120)

    done = summary("--epochs", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads((tmp_path / "vae_keras" / "seeds.json").read_text())
    assert written["metrics"]["final_val_loss"]["values"] == [150.0, 151.0, 152.0]
    refused = summary("--epochs=3")
    assert refused.returncode == 1 and "no finished run with these settings" in refused.stderr
    fake_study(tmp_path / "mixed", [{"epochs": 2, "latent_dim": 2}] * 2 + [{"epochs": 2,
                                                                           "latent_dim": 3}])
    mixed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "mixed")], cwd=run.REPO,
                           capture_output=True, text=True, timeout=120)
    assert mixed.returncode == 1 and "seeds [2] were run with other settings" in mixed.stderr
    blocked = subprocess.run([sys.executable, "-c", code.replace("from common import config, "
                                                                 "seeds", "from common import run"),
                              str(tmp_path)], cwd=run.REPO, capture_output=True, text=True,
                             timeout=120)
    assert blocked.returncode != 0  # the block works: a module that needs Keras fails under it


@pytest.mark.quick
def test_the_summary_allows_what_the_catalog_sets_for_the_extra_seeds(tmp_path, monkeypatch):
    """A default study whose catalog row gives seeds > 0 their own flags (the Gumbel-Softmax
    VAE's --is-images 2000) is one study: --summary-only accepts those seeds, and still refuses
    a seed > 0 that lacks the flag or differs otherwise."""
    row = dataclasses.replace(catalog.get("vae_keras"), extra_seed_flags=("--is-images", "20"))
    monkeypatch.setattr(catalog, "SCRIPTS", (row,))
    fake_study(tmp_path, [{"epochs": 2, "is_images": 100}] + [{"epochs": 2, "is_images": 20}] * 2)
    assert seeds.summary_problem(tmp_path, "vae_keras", [0, 1, 2], []) is None
    assert "seeds [1, 2] have no finished run" in seeds.summary_problem(
        tmp_path, "vae_keras", [0, 1, 2], ["--is-images", "100"])  # a flag given for every seed
    fake_study(tmp_path / "other", [{"epochs": 2, "is_images": 100}, {"epochs": 2, "is_images": 20},
                                    {"epochs": 3, "is_images": 20}])
    assert "seeds [2] were run with other settings" in seeds.summary_problem(
        tmp_path / "other", "vae_keras", [0, 1, 2], [])
