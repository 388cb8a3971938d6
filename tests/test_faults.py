"""Faults end in one line and an exit status, and lose nothing: two runs, Ctrl-C, bad writes."""
import subprocess
import sys
import time

import pytest

import vae_keras
from common import run
from simulate import KillAt


def quick(out, *more):
    return ["--epochs", "2", "--subset", "200", "--is-images", "5", "--out-dir", str(out), *more]


def test_a_second_run_into_a_busy_folder_stops_and_touches_nothing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").write_text("the live run's\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from common import run; run.lock(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(60)", str(out)],
        cwd=run.REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
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
