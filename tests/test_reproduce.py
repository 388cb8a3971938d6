"""The reproduce command (common/reproduce.py): the plan built from the catalog and the claims,
the state of each run, --only, and a small plan spread over a local Ray instance with a worker
killed mid-run."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from common import catalog, claims, reproduce, run
from test_report import uncommitted_results

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def planned():
    return reproduce.plan()


@pytest.mark.quick
def test_every_command_of_the_tables_is_in_the_plan_once(planned):
    """Each seed study of the catalog and every command of every claims row (and departure) has
    its runs in the plan; no folder appears twice."""
    units, commands = planned
    folders = [u.folder for u in units]
    assert len(folders) == len(set(folders))
    by_folder = {u.folder: u for u in units}
    lines = [line for c in claims.CLAIMS for line in c.commands]
    lines += [line for *_, commands_, _ in claims.DEPARTURES for line in commands_.split("<br>")]
    lines += [f"python -m common.seeds {s.name}" for s in catalog.SCRIPTS]
    for line in lines:
        if line.startswith("python -m common.seeds"):
            for u in reproduce.study_units(line, set()):
                assert by_folder[u.folder].args == u.args, line
        elif line.split()[1] in [s.file for s in catalog.SCRIPTS]:
            assert reproduce.script_unit(line.split(), set()).folder in by_folder, line
        else:
            assert line in [c.line for c in commands], line
    # the default studies: every seed of every script
    for s in catalog.SCRIPTS:
        assert sum(1 for u in units if u.study == f"python -m common.seeds {s.name} --seeds "
                   + " ".join(map(str, range(s.seeds)))) == s.seeds


@pytest.mark.quick
def test_only_picks_a_claims_or_a_studys_runs(planned):
    units, commands = reproduce.select(*planned, ["nice_positive"])
    assert sorted(u.folder for u in units) == [
        "claims/nice_positive/nice", "claims/nice_positive/nice/seeds/1",
        "claims/nice_positive/nice/seeds/2"] and not commands
    units, commands = reproduce.select(*planned, ["kappa_thousands"])
    assert not units and [c.line for c in commands] == ["python benchmarks/vmf_table.py"]
    with pytest.raises(SystemExit) as stop:
        reproduce.select(*planned, ["no_such_claim"])
    assert "--only no_such_claim" in str(stop.value.code)


@pytest.mark.quick
def test_committed_results_are_all_done(planned):
    """`--dry-run` on the committed results finds nothing to run (skipped while results/
    differs from the last commit, as after a run of one's own)."""
    changed = uncommitted_results()
    if changed:
        pytest.skip(f"results/ differs from the last commit ({changed.strip()})")
    units, commands = planned
    states = reproduce.main(["--dry-run"])
    assert {u.folder: s for u, s in states.items() if s != reproduce.DONE} == {}
    assert all(reproduce.command_state(c) == reproduce.DONE for c in commands)


@pytest.mark.quick
def test_states_of_a_run_folder(tmp_path):
    """A committed run copied elsewhere is done there; with a file changed it is stale; with a
    backup beside it, it resumes; an empty folder is missing."""
    unit = reproduce.Unit("vae_vmf_keras", 0, ("--kappa", "5"), "run")
    shutil.copytree(REPO / "results" / "claims" / "vmf_kappa5" / "vae_vmf_keras", tmp_path / "run",
                    ignore=shutil.ignore_patterns("seeds"))
    assert reproduce.state(unit, tmp_path) == reproduce.DONE
    other = reproduce.Unit("vae_vmf_keras", 0, ("--kappa", "6"), "run")
    assert reproduce.state(other, tmp_path) == reproduce.STALE  # other settings
    (tmp_path / "run" / "metrics.json").write_text("{}")
    assert reproduce.state(unit, tmp_path) == reproduce.STALE  # damaged
    (tmp_path / "run" / run.BACKUP).mkdir()
    assert reproduce.state(unit, tmp_path) == reproduce.RESUMES
    assert reproduce.state(reproduce.Unit("nice", 0, (), "nothing"), tmp_path) == reproduce.MISSING


TINY = ("--subset", "6000", "--epochs", "4", "--is-images", "2", "--is-samples", "10")
DRIVER = """
import sys
from pathlib import Path
from common import reproduce
units = [reproduce.Unit("vae_keras", s, {tiny!r}, f"tiny/{{s}}") for s in (0, 1, 2)]
results = Path(sys.argv[1])
progress = reproduce.Progress(3, 0, {{}})
if sys.argv[2] == "ray":
    failed = reproduce.with_ray(units, results, progress, 2, None, 1, 0)
else:
    failed = reproduce.sequential(units, results, progress)
sys.exit(len(failed))
"""
TIMINGS = ("epoch_seconds", "seconds_per_epoch", "train_seconds", "eval_seconds", "machine")


def outputs(folder):
    """A finished run's history and metrics without its timings."""
    history = [line.split(",") for line in (folder / "history.csv").read_text().splitlines()]
    keep = [i for i, name in enumerate(history[0]) if name not in TIMINGS]
    metrics = json.loads((folder / "metrics.json").read_text())
    return ([[row[i] for i in keep] for row in history],
            {k: v for k, v in metrics.items() if k not in TIMINGS})


def kill_worker_when_backed_up(folder, killed, deadline):
    """Once the run in `folder` has backed up its first epoch, SIGKILL the Ray worker that runs
    it (the parent of the process that holds the folder's lock), as a machine failing would."""
    while time.time() < deadline:
        if (folder / run.BACKUP / "state.json").exists() and (folder / ".lock").exists():
            pid = int((folder / ".lock").read_text())
            stat = Path(f"/proc/{pid}/stat").read_text()
            worker = int(stat.rsplit(")", 1)[1].split()[1])
            os.kill(worker, signal.SIGKILL)
            killed.append((worker, pid))
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_a_small_plan_through_ray_with_a_worker_killed_ends_as_a_sequential_run(tmp_path):
    pytest.importorskip("ray")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tiny=TINY))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(driver), str(tmp_path / "seq"), "seq"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    killed = []
    watcher = threading.Thread(target=kill_worker_when_backed_up,
                               args=(tmp_path / "ray" / "tiny" / "1", killed, time.time() + 600))
    watcher.start()
    done = subprocess.run([sys.executable, str(driver), str(tmp_path / "ray"), "ray"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    watcher.join()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert killed, "the run was never caught mid-way"
    history = (tmp_path / "ray" / "tiny" / "1" / "history.csv").read_text()
    assert len(history.splitlines()) == 1 + 4
    for s in (0, 1, 2):
        assert outputs(tmp_path / "ray" / "tiny" / str(s)) == outputs(tmp_path / "seq" / "tiny" / str(s))
        assert not (tmp_path / "ray" / "tiny" / str(s) / run.BACKUP).exists()
