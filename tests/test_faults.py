"""Faults end in one line and an exit status, and lose nothing: two runs, Ctrl-C, bad writes."""
import dataclasses
import subprocess
import sys
import time
import typing

import keras
import pytest

import nice
import vae_keras
import vae_keras_cnn_gs
import vae_vmf_keras
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


SCRIPTS = [vae_keras, vae_vmf_keras, vae_keras_cnn_gs, nice]


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


def test_flags_within_bounds_that_do_not_fit_together_exit_2():
    with pytest.raises(SystemExit) as stop:
        run.parse_config(nice.Config, ["--hidden-dim", "8192", "--hidden-layers", "32"])
    assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:
        run.parse_config(vae_keras_cnn_gs.Config, ["--num-latents", "1024",
                                                   "--classes-per-latent", "1024"])
    assert stop.value.code == 2


def test_a_metric_out_of_range_is_written_said_and_exits_1(tmp_path):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    with pytest.raises(SystemExit) as stop:
        run.finish(tmp_path, model, {"test_nll": float("nan"), "test_loss": 1.0}, time.perf_counter())
    assert "test_nll came out NaN or infinite" in str(stop.value.code)
    assert "NaN" in (tmp_path / "metrics.json").read_text()
