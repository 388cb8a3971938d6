"""The output folder's journal: no kill, full disk or damaged file leaves it stuck or wrong.

Each test names the class of fault it covers (the numbers of the issue that listed them). A kill
at an exact moment is simulated by a hook that raises `Killed`, a BaseException that no handler
of the project catches, at the n-th call of an operation, leaving the files as a SIGKILL would.
The last tests check that `common.journal` imports and works with Keras, TensorFlow and NumPy
blocked, so that the tools that only read committed results need none of them.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import vae_keras
from common import backup, journal, plotting, run, seeds
from simulate import KillAt, lock_holder


class Killed(BaseException):
    pass


def quick(out, *more):
    return ["--epochs", "2", "--subset", "200", "--is-images", "5", "--is-samples", "5",
            "--out-dir", str(out), *more]


def finished(out, *more):
    metrics = vae_keras.main(quick(out, *more))
    assert (out / run.MANIFEST).is_file() and not (out / run.PENDING).exists()
    return metrics


def one_line_error(stop):
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def kill_at(monkeypatch, module, name, n, before=True, active=None):
    """Make the n-th call (from 1) of module.name raise Killed, before or after it acts;
    with `active` (a one-item list), only calls made while active[0] is true count."""
    real, calls = getattr(module, name), [0]

    def hooked(*args, **kwargs):
        if active is not None and not active[0]:
            return real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == n and before:
            raise Killed
        result = real(*args, **kwargs)
        if calls[0] == n:
            raise Killed
        return result

    monkeypatch.setattr(module, name, hooked)
    return calls


def flip_bytes(path, count=64):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# 1. a kill while the finished run deletes its backup, or a stray file of that name
@pytest.mark.parametrize("leftover", ["folder", pytest.param("file", marks=pytest.mark.slow)])
def test_a_leftover_published_backup_never_blocks_a_run(tmp_path, leftover):
    out = tmp_path / "run"
    out.mkdir()
    stray = out / f"{run.BACKUP}.published"
    if leftover == "folder":
        stray.mkdir()
        (stray / "epoch-1.weights.h5").write_bytes(b"half deleted")
    else:
        stray.write_text("stray")
    finished(out)
    assert not stray.exists()


# 2. publishing is one step: a kill between its renames is completed by the next run
@pytest.mark.parametrize("at", [pytest.param(1, marks=pytest.mark.slow),
                                pytest.param(4, marks=pytest.mark.slow), 8])
def test_a_kill_between_the_publishing_renames_is_completed_by_the_next_run(tmp_path,
                                                                          monkeypatch, at):
    out = tmp_path / "run"
    finished(out)  # seed 0 published
    publishing = [False]
    kill_at(monkeypatch, os, "replace", at, before=False, active=publishing)
    real_publish = run.publish

    def counted(folder):  # count the renames of publishing only
        publishing[0] = True
        return real_publish(folder)

    monkeypatch.setattr(run, "publish", counted)
    with pytest.raises(Killed):
        vae_keras.main(quick(out, "--seed", "1"))
    monkeypatch.undo()
    assert (out / run.PENDING / run.MANIFEST).is_file()  # the new set is journalled
    # --load of seed 1 first completes the publishing, then evaluates seed 1's weights
    metrics = vae_keras.main(quick(out, "--seed", "1", "--load"))
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    manifest = run.read_manifest(out)
    for name, expected in manifest["files"].items():
        assert journal.mismatch(out / name, expected) is None, name
    assert not (out / run.BACKUP).exists() and not (out / run.PARTIAL_HISTORY).exists()
    assert metrics["epochs"] == 2


def test_a_kill_after_the_partial_history_is_removed_does_not_lose_the_run(tmp_path,
                                                                         monkeypatch):
    out = tmp_path / "run"
    kill_at(monkeypatch, journal, "clear_backup", 1)  # just after history.partial.csv is removed
    with pytest.raises(Killed):
        vae_keras.main(quick(out))
    monkeypatch.undo()
    assert not (out / run.PARTIAL_HISTORY).exists() and (out / run.BACKUP).is_dir()
    run.recover(out)  # what the next run does first: the publishing completes
    for name, expected in run.read_manifest(out)["files"].items():
        assert journal.mismatch(out / name, expected) is None, name
    assert not (out / run.BACKUP).exists() and not (out / run.PENDING).exists()
    finished(out)  # and the same command runs (trains) as after any finished run
    assert not list(tmp_path.glob("run/backup.damaged-*"))


# 3. damaged weights are found by their digests
def test_garbled_backup_weights_are_set_aside_not_resumed(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        vae_keras.main(quick(out, "--epochs", "3"), callbacks=[KillAt(2)])
    flip_bytes(out / run.BACKUP / "epoch-2.weights.h5")
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--epochs", "3"))
    assert "SHA-256 differs" in one_line_error(stop) and "starts the run over" in str(stop.value)
    assert len(list(tmp_path.glob("run/backup.damaged-*"))) == 1


def test_garbled_published_weights_stop_load_before_any_metric_is_written(tmp_path):
    out = tmp_path / "run"
    finished(out)
    before = (out / "metrics.json").read_bytes()
    flip_bytes(out / run.WEIGHTS)
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--load"))
    assert str(out / run.WEIGHTS) in one_line_error(stop)
    assert (out / "metrics.json").read_bytes() == before


# 4. the partial history and the backup agree row for row
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


@pytest.mark.quick
def test_a_history_that_is_not_a_table_is_one_line(tmp_path):
    path = tmp_path / "history.csv"
    for text in ("", "epoch,loss,val_loss\n", "garbage\n1,2\n", "epoch,loss,val_loss\n0,x,1\n",
                 "epoch,loss\n0,1\n", "epoch,loss,val_loss\n0,1\n"):
        path.write_text(text)
        with pytest.raises(ValueError, match=str(path)):
            run.read_history(path)
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ValueError, match="not text"):
        run.read_history(path)


# 5. flags that would silently do something else
@pytest.mark.quick
def test_an_empty_out_dir_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        run.parse_config(vae_keras.Config, ["--out-dir", ""])
    assert stop.value.code == 2 and "--out-dir must name a folder" in capsys.readouterr().err


def test_load_checks_epochs_and_needs_an_existing_folder(tmp_path):
    out = tmp_path / "run"
    finished(out)
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--load", "--epochs", "50"))
    assert "--epochs 50 (saved: 2)" in one_line_error(stop)
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(tmp_path / "missing", "--load"))
    assert "no folder" in one_line_error(stop) and not (tmp_path / "missing").exists()


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


# 6. the lock is on the folder itself
def test_deleting_the_lock_file_does_not_let_a_second_run_in(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = lock_holder(out)
    try:
        (out / run.LOCK).unlink()
        with pytest.raises(SystemExit) as stop:
            run.lock(out)
        assert "in use by another run" in one_line_error(stop)
    finally:
        holder.kill()
        holder.wait()


# 7. a full disk: one line with the path, before h5py can crash
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


@pytest.mark.quick
def test_a_figure_that_cannot_be_written_names_its_file(tmp_path, monkeypatch):
    import matplotlib.figure

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.raises(OSError) as error:
        plotting.save_grid(np.zeros((4, 784)), tmp_path / "grid.png", n=2)
    assert run.os_error_message(error.value) == f"{tmp_path / 'grid.png'}: No space left on device"


# 8 and 9. a malformed state.json is set aside in one line, fast
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


def test_load_with_a_replaced_config_is_one_line(tmp_path):
    out = tmp_path / "run"
    finished(out)
    for content in ("[]", "null", "{}"):
        (out / "config.json").write_text(content)
        with pytest.raises(SystemExit) as stop:
            vae_keras.main(quick(out, "--load"))
        assert "config.json" in one_line_error(stop)


# 10. Ctrl-C while the libraries load
def test_ctrl_c_while_starting_is_one_line_and_exit_130():
    child = subprocess.Popen([sys.executable, "vae_keras.py", "--help"], cwd=run.REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # TensorFlow takes seconds to import
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err[-2000:]
    assert err.strip() == "interrupted while starting; nothing was changed"


# 11 and 12. Ctrl-C as a file lands is held until the write is whole
@pytest.mark.quick
def test_ctrl_c_during_an_atomic_write_is_held_until_it_is_done(tmp_path, monkeypatch):
    real = os.replace

    def replace_then_interrupt(src, dst):
        real(src, dst)
        os.kill(os.getpid(), signal.SIGINT)  # arrives just after the rename

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run.write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left


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


# 13. what an interrupt says matches what happened
def test_ctrl_c_after_the_last_epoch_says_the_run_evaluates_next(tmp_path, capsys):
    from simulate import KillAtTrainEnd

    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        run.cli(lambda: vae_keras.main(quick(out), callbacks=[KillAtTrainEnd()]))
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "after the last epoch (2" in last and "evaluates it without training" in last


def test_ctrl_c_during_publishing_finishes_it_and_says_so(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real = run.publish

    def interrupted_publish(folder):
        os.kill(os.getpid(), signal.SIGINT)
        real(folder)

    monkeypatch.setattr(run, "publish", interrupted_publish)
    with pytest.raises(SystemExit) as stop:
        run.cli(lambda: vae_keras.main(quick(out)))
    assert stop.value.code == 130
    assert "its outputs in" in capsys.readouterr().err and (out / run.MANIFEST).is_file()
    assert not (out / run.PENDING).exists() and not (out / run.BACKUP).exists()


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


# 14. errors are the message alone
def test_a_bad_flag_is_one_line_on_stderr_with_nothing_before_it():
    done = subprocess.run([sys.executable, "vae_keras.py", "--epochs", "0"], cwd=run.REPO,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--epochs must be >= 1" in done.stderr


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


def test_a_folder_where_a_published_file_goes_is_named(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").mkdir()
    with pytest.raises(SystemExit) as stop:
        run.cli(lambda: vae_keras.main(quick(out)))
    assert f"{out / 'metrics.json'}:" in one_line_error(stop)


@pytest.mark.quick
def test_data_that_is_a_pipe_or_a_link_loop_says_what_it_is(tmp_path):
    fifo, loop = tmp_path / "fifo", tmp_path / "loop"
    os.mkfifo(fifo)
    os.symlink(loop, loop)
    for data, said in ((fifo, "not a regular file"), ("/dev/zero", "not a regular file"),
                       (loop, "cannot be opened")):
        with pytest.raises(SystemExit) as stop:
            run.load_data(run.RunConfig(data=str(data)))
        assert said in one_line_error(stop)


# The journal without the libraries: `python -m common.report --check` and the benchmarks read
# committed results through it
BLOCKED = ("import sys; sys.modules['keras'] = None; sys.modules['tensorflow'] = None; "
           "sys.modules['numpy'] = None; ")


def blocked(code, cwd):
    """Run `code` in a new Python with Keras, TensorFlow and NumPy made unimportable."""
    return subprocess.run([sys.executable, "-c", BLOCKED + code], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(run.REPO)})


@pytest.mark.quick
def test_the_journal_needs_no_keras_tensorflow_or_numpy(tmp_path):
    child = blocked("import common.journal", run.REPO)
    assert child.returncode == 0, child.stderr[-2000:]
    # and it works so: a file written, published by a manifest, read back checked against it
    child = blocked("from common import journal; journal.write_json('metrics.json', {'x': 1}); "
                    "journal.adopt('.', ['metrics.json']); "
                    "print(journal.read_published('.', 'metrics.json'), end='')", tmp_path)
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout) == {"x": 1}


@pytest.mark.quick
def test_the_blocked_import_check_catches_a_module_that_imports_keras():
    child = blocked("import common.run", run.REPO)  # common.run imports Keras
    assert child.returncode != 0 and "ModuleNotFoundError" in child.stderr, child.stderr[-2000:]


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
def test_read_history_parses_and_drops_empty_columns(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss,tau\n0,3.5,4.0,NA\n1,2.5,NA,NA\n")
    history = run.read_history(path)
    assert set(history) == {"epoch", "loss", "val_loss"}
    np.testing.assert_array_equal(history["loss"], [3.5, 2.5])
    assert np.isnan(history["val_loss"][1])
