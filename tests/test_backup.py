"""common/backup.py (State, Backup, resume, save_weights, load_weights): a resume restores the
weights and the optimizer's state; the backup state file reads back as written and names what is
malformed; a damaged backup (garbled or missing state, weights or partial history, a state that
claims fewer epochs than its history, a malformed field) is set aside in one line and the run
starts over; a backup made with other settings, or past a smaller --epochs, is named and kept; a
history row cut off past the backup is dropped on resume; Ctrl-C while a backup is written
leaves it whole; no room for the weights, unreadable weights and weights of another model are
one line each."""
import json
import os
import shutil
import signal
import time

import numpy as np
import pytest

import vae_keras
from common import backup, run
from simulate import KillAt, finished, flip_bytes, one_line_error, quick


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
def test_a_state_reads_back_as_written_and_each_malformed_field_is_named(tmp_path):
    state = run.State(epochs_done=2, weights="epoch-2.weights.h5", best=None, best_val_loss=None,
                      files={"epoch-2.weights.h5": {"size": 3, "sha256": "0" * 64}},
                      history={"size": 10, "sha256": "1" * 64}, seed_states=[[0, 1]],
                      settings={"epochs": 2})
    state.write(tmp_path)
    assert run.State.read(tmp_path) == state
    raw = json.loads((tmp_path / run.STATE).read_text())
    for field, value, words in [("epochs_done", 0, "epochs_done"), ("settings", None, "settings"),
                                ("weights", "x.h5", "its weights"), ("best", "y.h5", "best"),
                                ("best_val_loss", "low", "best_val_loss"),
                                ("history", {}, "partial history"),
                                ("seed_states", None, "sampler states")]:
        (tmp_path / run.STATE).write_text(json.dumps({**raw, field: value}))
        with pytest.raises(ValueError, match=words):
            run.State.read(tmp_path)
    (tmp_path / run.STATE).write_text("{")
    with pytest.raises(ValueError, match="cannot be read"):
        run.State.read(tmp_path)


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


# not in the quick tier: each case trains and resumes a small run (4 to 11 s each here)
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


# damaged weights are found by their digests
def test_garbled_backup_weights_are_set_aside_not_resumed(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        vae_keras.main(quick(out, "--epochs", "3"), callbacks=[KillAt(2)])
    flip_bytes(out / run.BACKUP / "epoch-2.weights.h5")
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--epochs", "3"))
    assert "SHA-256 differs" in one_line_error(stop) and "starts the run over" in str(stop.value)
    assert len(list(tmp_path.glob("run/backup.damaged-*"))) == 1


# the partial history and the backup agree row for row
def test_a_state_that_claims_fewer_epochs_than_its_history_is_set_aside(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        vae_keras.main(quick(out, "--epochs", "3"), callbacks=[KillAt(2)])
    state = json.loads((out / run.BACKUP / run.STATE).read_text())
    state["epochs_done"] = 1
    (out / run.BACKUP / run.STATE).write_text(json.dumps(state))
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--epochs", "3"))
    assert "does not hold their rows" in one_line_error(stop)


# a malformed state.json is set aside in one line, fast
MALFORMED = [("settings", None), ("settings", []), ("settings", "x"), ("epochs_done", 10**30),
             ("epochs_done", "2"), ("best_val_loss", "low"), ("files", None)]


def test_a_malformed_state_is_set_aside(tmp_path):
    first = tmp_path / "first"
    with pytest.raises(KeyboardInterrupt):
        vae_keras.main(quick(first), callbacks=[KillAt(1)])
    for i, (field, value) in enumerate(MALFORMED):
        out = tmp_path / f"run{i}"
        shutil.copytree(first, out)
        state = json.loads((out / run.BACKUP / run.STATE).read_text())
        state[field] = value
        (out / run.BACKUP / run.STATE).write_text(json.dumps(state))
        started = time.perf_counter()
        with pytest.raises(SystemExit) as stop:
            vae_keras.main(quick(out))
        assert "state.json that" in one_line_error(stop), (field, value)
        assert time.perf_counter() - started < 60
        assert len(list(out.glob("backup.damaged-*"))) == 1


# Ctrl-C as the backup's state file lands is held until the backup is whole
def test_ctrl_c_while_a_backup_is_written_leaves_that_backup_whole(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = backup.write_json

    def state_then_interrupt(path, obj):
        if path.name == run.STATE:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C just as the state lands
        real(path, obj)

    monkeypatch.setattr(backup, "write_json", state_then_interrupt)  # the backup's writer
    with pytest.raises(SystemExit) as stop:
        run.cli(lambda: vae_keras.main(quick(out)))
    assert stop.value.code == 130
    state = json.loads((out / run.BACKUP / run.STATE).read_text())
    assert state["epochs_done"] == 1 and run.State.problem(state) is None


# a full disk: one line with the path, before h5py can crash
def test_no_room_for_the_weights_is_one_line_with_the_path(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: real(p)._replace(free=1000))
    with pytest.raises(SystemExit) as stop:
        run.cli(lambda: vae_keras.main(quick(out)))
    message = one_line_error(stop)
    assert "No space left on device" in message and str(out / run.BACKUP) in message
    assert not list((out / run.BACKUP).glob("*.tmp.weights.h5"))


def test_weights_of_another_model_are_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    finished(out)
    other = tmp_path / "other"
    finished(other, "--intermediate-dim", "64")
    os.replace(other / run.WEIGHTS, out / run.WEIGHTS)
    cfg = vae_keras.Config()
    vae, _, _ = vae_keras.build_models(cfg)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        run.load_weights(vae, out / run.WEIGHTS)
    assert "do not fit this model" in one_line_error(stop)
    assert capsys.readouterr().err == ""
