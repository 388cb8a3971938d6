"""Faults end in one line and an exit status, and lose nothing: two runs, Ctrl-C, bad writes."""
import dataclasses
import importlib
import json
import time
import typing

import keras
import numpy as np
import pytest

import nice
import vae_keras
import vae_keras_cnn_gs
import vae_vmf_keras
from common import catalog, run
from simulate import KillAt, KillAtTrainEnd, lock_holder


def quick(out, *more):
    return ["--epochs", "2", "--subset", "200", "--is-images", "5", "--out-dir", str(out), *more]


def test_a_second_run_into_a_busy_folder_stops_and_touches_nothing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").write_text("the live run's\n")
    holder = lock_holder(out)
    try:
        before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
        with pytest.raises(SystemExit) as stop:
            vae_keras.main(quick(out))
        message = str(stop.value.code)
        assert message.startswith("error: ") and "\n" not in message
        assert str(out) in message and f"process {holder.pid}" in message
        assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before
    finally:
        holder.kill()
        holder.wait()
    # once the other run has ended, the folder is free again
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            run.lock(out)
            break
        except SystemExit:
            time.sleep(0.1)
    else:
        pytest.fail("the lock outlived its process")


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


@pytest.mark.quick
def test_a_failed_write_is_one_line_with_the_path(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "under"):
        with pytest.raises(SystemExit) as stop:
            run.cli(lambda: vae_keras.main(quick(out)))
        message = str(stop.value.code)
        assert message.startswith("error: ") and str(a_file) in message and "\n" not in message


def test_load_without_a_history_names_what_is_missing(tmp_path):
    out = tmp_path / "run"
    vae_keras.main(quick(out))
    (out / "history.csv").unlink()
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--load"))
    assert "no history.csv" in str(stop.value.code)


SCRIPTS = [importlib.import_module(s.name) for s in catalog.SCRIPTS]


@pytest.mark.quick
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__)
def test_every_number_flag_has_an_upper_bound_that_exits_2_in_one_line(script, capsys):
    hints = typing.get_type_hints(script.Config)
    numeric = [f for f in dataclasses.fields(script.Config) if hints[f.name] in (int, float)]
    assert numeric and all("le" in f.metadata for f in numeric), \
        [f.name for f in numeric if "le" not in f.metadata]
    for f in numeric:
        flag = "--" + f.name.replace("_", "-")
        for value in (f.metadata["le"] * 10 + 1, 1e20):
            text = str(hints[f.name](value))
            with pytest.raises(SystemExit) as stop:
                run.parse_config(script.Config, [flag, text], prog=script.__name__)
            assert stop.value.code == 2, (flag, text)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"{flag} must be <=" in err, err


@pytest.mark.quick
def test_flags_within_bounds_that_do_not_fit_together_exit_2():
    with pytest.raises(SystemExit) as stop:
        run.parse_config(nice.Config, ["--hidden-dim", "8192", "--hidden-layers", "32"])
    assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:
        run.parse_config(vae_keras_cnn_gs.Config, ["--num-latents", "1024",
                                                   "--classes-per-latent", "1024"])
    assert stop.value.code == 2


@pytest.mark.quick
def test_a_metric_out_of_range_is_written_said_and_exits_1(tmp_path):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    with pytest.raises(SystemExit) as stop:
        run.finish(tmp_path, model, {"test_nll": float("nan"), "test_loss": 1.0}, time.perf_counter())
    assert "test_nll came out NaN or infinite" in str(stop.value.code)
    assert "NaN" in (tmp_path / "metrics.json").read_text()


def killed_after_one_epoch(out):
    with pytest.raises(KeyboardInterrupt):
        vae_keras.main(quick(out), callbacks=[KillAt(1)])
    assert (out / run.BACKUP / run.STATE).is_file()


DAMAGE = {
    "state.json garbled": lambda b, out: (b / run.STATE).write_bytes(b"\x00\xff{"),
    "state.json missing": lambda b, out: (b / run.STATE).unlink(),
    "weights empty": lambda b, out: (b / "epoch-1.weights.h5").write_bytes(b""),
    "weights truncated": lambda b, out: (b / "epoch-1.weights.h5").write_bytes(
        (b / "epoch-1.weights.h5").read_bytes()[:2000]),
    "weights missing": lambda b, out: (b / "epoch-1.weights.h5").unlink(),
    "history garbled": lambda b, out: (out / run.PARTIAL_HISTORY).write_bytes(b"\xff\xfe\x00"),
    "history a row short": lambda b, out: (out / run.PARTIAL_HISTORY).write_text(
        (out / run.PARTIAL_HISTORY).read_text().splitlines()[0] + "\n"),
}


REPEATED = ("state.json garbled", "weights empty", "history a row short")  # as their neighbours


@pytest.mark.quick
@pytest.mark.parametrize("damage", [pytest.param(d, marks=pytest.mark.slow) if d in REPEATED
                                    else d for d in DAMAGE])
def test_a_damaged_backup_is_set_aside_in_one_line_and_the_run_starts_over(tmp_path, damage,
                                                                           capsys):
    out = tmp_path / "run"
    killed_after_one_epoch(out)
    DAMAGE[damage](out / run.BACKUP, out)
    if damage == "state.json missing":  # nothing was loaded: it starts over at once
        kill = KillAt(5)
        vae_keras.main(quick(out), callbacks=[kill])
        assert kill.started == [0, 1] and len(list(tmp_path.glob("run/backup.damaged-*"))) == 1
        assert "starting the run over" in capsys.readouterr().out
        return
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out))
    message = str(stop.value.code)
    assert "\n" not in message and "The same command now starts the run over" in message
    aside = list(tmp_path.glob("run/backup.damaged-*"))
    assert len(aside) == 1 and not (out / run.BACKUP).exists()
    if damage == "weights missing":  # and it does: both epochs trained anew
        kill = KillAt(5)
        vae_keras.main(quick(out), callbacks=[kill])
        assert kill.started == [0, 1]
        assert list(run.read_history(out / "history.csv")["epoch"]) == [0, 1]


def test_a_backup_with_other_settings_is_named_and_kept(tmp_path):
    out = tmp_path / "run"
    killed_after_one_epoch(out)
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--intermediate-dim", "64"))
    assert "--intermediate-dim 256 (now 64)" in str(stop.value.code)
    assert (out / run.BACKUP / run.STATE).is_file()


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


def test_load_names_the_flag_that_differs_from_the_saved_run(tmp_path):
    out = tmp_path / "run"
    vae_keras.main(quick(out))
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--load", "--latent-dim", "3"))
    assert "--latent-dim 3 (saved: 2)" in str(stop.value.code)


@pytest.mark.quick
def test_data_that_is_a_folder_or_random_bytes_is_one_clear_line(tmp_path):
    noise = tmp_path / "mnist.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    for data, said in ((tmp_path, "is a folder"), (noise, "not a readable MNIST .npz file")):
        with pytest.raises(SystemExit) as stop:
            run.load_data(run.RunConfig(data=str(data)))
        message = str(stop.value.code)
        assert said in message and "\n" not in message and "allow_pickle" not in message


def test_a_cut_off_history_row_past_the_backup_is_dropped_on_resume(tmp_path):
    out = tmp_path / "run"
    killed_after_one_epoch(out)
    with open(out / run.PARTIAL_HISTORY, "a") as f:
        f.write("1,3")  # a kill in the middle of writing the next epoch's row
    kill = KillAt(5)
    vae_keras.main(quick(out), callbacks=[kill])
    assert kill.started == [1] and list(run.read_history(out / "history.csv")["epoch"]) == [0, 1]


def test_a_backup_past_a_smaller_epochs_is_not_published_as_this_run(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        vae_keras.main(["--epochs", "3", *quick(out)[2:]], callbacks=[KillAt(2)])
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(["--epochs", "1", *quick(out)[2:]])
    assert "--epochs 2 or more (now 1)" in str(stop.value.code)
    assert (out / run.BACKUP / run.STATE).is_file() and not (out / "history.csv").exists()
