"""The output journal (common/journal.py: the lock, atomic writes, the manifest, publish,
recover, read_history): no kill, full disk or damaged file leaves a folder stuck or wrong.

The lock: a second run into a busy folder stops and touches nothing, even with the lock file
deleted. Atomic writes: whole or not at all, Ctrl-C held until the file lands, a failed write
(of a file or a figure) one line with its path. Publishing: a leftover published backup never
blocks a run, a kill between the publishing renames or after the partial history is removed is
completed by the next run, Ctrl-C during publishing finishes it, a folder where a published file
goes is named. Reading back: garbled published weights or a replaced config.json stop --load in
one line (the manifest's digests), a history that is not a table is one line. A kill at an exact
moment is simulated by a hook that raises `Killed`, a BaseException that no handler of the
project catches, at the n-th call of an operation, leaving the files as a SIGKILL would. The last
tests check that `common.journal` imports and works with Keras, TensorFlow and NumPy blocked, so
that the tools that only read committed results need none of them.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import vae_keras
from common import journal, plotting, run
from simulate import finished, flip_bytes, lock_holder, one_line_error, quick


class Killed(BaseException):
    pass


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


# the lock is on the folder itself
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


# a file lands whole or not at all, and a failed write names its path
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


# Ctrl-C as a file lands is held until the write is whole
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


@pytest.mark.quick
def test_a_failed_write_is_one_line_with_the_path(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "under"):
        with pytest.raises(SystemExit) as stop:
            run.cli(lambda: vae_keras.main(quick(out)))
        message = str(stop.value.code)
        assert message.startswith("error: ") and str(a_file) in message and "\n" not in message


@pytest.mark.quick
def test_a_figure_that_cannot_be_written_names_its_file(tmp_path, monkeypatch):
    import matplotlib.figure

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.raises(OSError) as error:
        plotting.save_grid(np.zeros((4, 784)), tmp_path / "grid.png", n=2)
    assert journal.os_error_message(error.value) == f"{tmp_path / 'grid.png'}: No space left on device"


# a kill while the finished run deletes its backup, or a stray file of that name
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


# publishing is one step: a kill between its renames is completed by the next run
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


def test_a_folder_where_a_published_file_goes_is_named(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").mkdir()
    with pytest.raises(SystemExit) as stop:
        run.cli(lambda: vae_keras.main(quick(out)))
    assert f"{out / 'metrics.json'}:" in one_line_error(stop)


# what is read back is checked against the manifest
def test_garbled_published_weights_stop_load_before_any_metric_is_written(tmp_path):
    out = tmp_path / "run"
    finished(out)
    before = (out / "metrics.json").read_bytes()
    flip_bytes(out / run.WEIGHTS)
    with pytest.raises(SystemExit) as stop:
        vae_keras.main(quick(out, "--load"))
    assert str(out / run.WEIGHTS) in one_line_error(stop)
    assert (out / "metrics.json").read_bytes() == before


def test_load_with_a_replaced_config_is_one_line(tmp_path):
    out = tmp_path / "run"
    finished(out)
    for content in ("[]", "null", "{}"):
        (out / "config.json").write_text(content)
        with pytest.raises(SystemExit) as stop:
            vae_keras.main(quick(out, "--load"))
        assert "config.json" in one_line_error(stop)


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


@pytest.mark.quick
def test_read_history_parses_and_drops_empty_columns(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss,tau\n0,3.5,4.0,NA\n1,2.5,NA,NA\n")
    history = run.read_history(path)
    assert set(history) == {"epoch", "loss", "val_loss"}
    np.testing.assert_array_equal(history["loss"], [3.5, 2.5])
    assert np.isnan(history["val_loss"][1])


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
