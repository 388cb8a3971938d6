"""Reproduce every committed result: the plan of runs behind the tables, and what is missing.

    python -m common.reproduce --dry-run     # the plan: each run's command, state and time
    python -m common.reproduce               # run what is missing or stale, then the tables
    python -m common.reproduce --only nice   # one script's runs, or one claim's or study's
    python -m common.reproduce --workers 4   # spread over a local Ray instance, 4 runs at once
    python -m common.reproduce --address HOST:6379 --results /shared/results  # a Ray cluster

The plan is built from the script catalog (each script's default seed study) and the claims
(common/claims/: every command of every row): one unit per run (a script, a seed, its flags
and its folder), each folder once. A unit is done when its folder's files verify against the
folder's manifest and its config.json matches the unit's settings (as the seed study checks),
resumes when an interrupted run left a backup, stale when a published run has other settings
or damaged files, and missing otherwise. Running starts the script for every unit not done, one
after another or as Ray tasks, each a `python <script>.py ...` in the repository, which resumes
from the run's backup by itself: so a reproduce killed and started again, or a Ray worker that
dies and whose task Ray retries, goes on from the last finished epoch. Then each seed study's
summary and the README blocks (`python -m common.report --write`) are rewritten.

On a cluster every node needs this repository at the same path and the results folder
(`--results`) on storage that all of them share: each run writes only its own folder, under a
lock that holds across processes and machines that share the filesystem.
"""
import argparse
import dataclasses
import importlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import catalog, claims, journal, report, seeds
from common.machine import accelerator, machine as this_machine
from common.config import REPO, ArgumentParser, cli, parse_config
from common.journal import BACKUP, PENDING, fail
RESULTS = REPO / "results"
DONE, RESUMES, STALE, MISSING = "done", "resumes", "stale", "missing"


@dataclasses.dataclass(frozen=True)
class Unit:
    """One run of a script: its flags beyond --seed and --out-dir, and its folder relative to
    the results folder. `study` is the seed-study command it belongs to (None for a single run)
    and `tags` the names --only matches: the script, the study's folder, the claims."""
    script: str
    seed: int
    args: tuple
    folder: str
    study: str = None
    tags: frozenset = frozenset()

    def argv(self, results):
        return [f"{self.script}.py", *self.args, "--seed", str(self.seed),
                "--out-dir", str(Path(results) / self.folder)]

    def command(self, results=RESULTS):
        shown = seeds.shown(Path(results) / self.folder)
        return " ".join(["python", f"{self.script}.py", *map(shlex.quote, self.args),
                         "--seed", str(self.seed), "--out-dir", shown])


@dataclasses.dataclass(frozen=True)
class Command:
    """A command that writes committed files but is not a model run (a benchmark): done when
    every file it writes is there."""
    line: str
    outputs: tuple
    tags: frozenset = frozenset()


# ---------------------------------------------------------------- the plan


def relative(path):
    """A folder given as results/... or inside the repository's results, as results-relative."""
    path = Path(path)
    path = path if path.is_absolute() else REPO / path
    return str(path.resolve().relative_to(RESULTS.resolve()))


def study_units(line, tags):
    """The units of one `python -m common.seeds ...` line."""
    a = seeds.parse(shlex.split(line)[3:])
    root = Path(relative(a.root))
    tags = frozenset({*tags, a.script, *([root.name] if root.name else [])})
    return [Unit(a.script, s, (*a.script_args, *seeds.seed_flags(a.script, s, a.script_args)),
                 str(seeds.run_dir(root, a.script, s)), a.command, tags) for s in a.seeds]


def script_unit(words, tags):
    """The unit of one `python <script>.py [flags]` line: seed 0 in its default folder unless
    the flags say otherwise."""
    script = words[1][:-3]
    flags = list(words[2:])
    seed, folder = 0, script
    for flag in ("--seed", "--out-dir"):
        if flag in flags:
            i = flags.index(flag)
            value = flags[i + 1]
            del flags[i:i + 2]
            seed, folder = (int(value), folder) if flag == "--seed" else (seed, relative(value))
    return Unit(script, seed, tuple(flags), folder, None, frozenset({*tags, script}))


def claim_tag(measure):
    return measure.__name__


def lines_to_plan():
    """(line, tags) for every command the tables rest on: each script's default seed study,
    every command of every claim and departure, the commands of the report's other rows and
    the bfloat16 runs of benchmarks/precision.py."""
    out = [(f"python -m common.seeds {s.name}", {s.name}) for s in catalog.SCRIPTS]
    for c in claims.CLAIMS:
        out += [(line, {claim_tag(c.measure)}) for line in c.commands]
    for _, _, commands, measure in claims.DEPARTURES:
        out += [(line, {claim_tag(measure)}) for line in commands.split("<br>")]
    out += [(line, {"report"}) for line in report.COMMAND_OUTPUTS]
    out += [(line, {"precision"}) for line in report.PRECISION_STUDIES]
    return out


def plan():
    """(units, commands): every run the tables rest on, each folder once (the tags of a unit
    named by several lines merged), and the other commands."""
    units, commands = {}, {}
    for line, tags in lines_to_plan():
        words = shlex.split(line)
        if words[:3] == ["python", "-m", "common.seeds"]:
            found = study_units(line, tags)
        elif words[1] in [s.file for s in catalog.SCRIPTS]:
            found = [script_unit(words, tags)]
        else:
            outputs = report.COMMAND_OUTPUTS.get(line) or claims.COMMAND_OUTPUTS.get(line)
            if outputs is None:
                raise ValueError(f"no outputs known for the command {line!r}: add them to "
                                 "COMMAND_OUTPUTS beside it")
            old = commands.get(line)
            commands[line] = Command(line, tuple(outputs),
                                     frozenset(tags) | (old.tags if old else frozenset()))
            continue
        for u in found:
            old = units.get(u.folder)
            if old is None:
                units[u.folder] = u
                continue
            if (old.script, old.seed, old.args) != (u.script, u.seed, u.args):
                raise ValueError(f"two plans for results/{u.folder}: {old.command()} and "
                                 f"{u.command()}")
            units[u.folder] = dataclasses.replace(old, study=old.study or u.study,
                                                  tags=old.tags | u.tags)
    return list(units.values()), list(commands.values())


# ---------------------------------------------------------------- states and times


def state(unit, results=RESULTS):
    out = Path(results) / unit.folder
    if seeds.is_done(out, unit.script, [*unit.args, "--seed", str(unit.seed), "--out-dir",
                                        str(out)]):
        return DONE
    if (out / BACKUP).exists() or (out / PENDING).exists():
        return RESUMES
    if (out / journal.MANIFEST).exists():
        return STALE
    return MISSING


def command_state(command, results=RESULTS):
    return DONE if all((Path(results) / p).exists() for p in command.outputs) else MISSING


def epochs_of(unit):
    cfg = parse_config(importlib.import_module(unit.script).Config, list(unit.args),
                       prog=f"{unit.script}.py")
    return cfg.epochs


def timings(units, results=RESULTS):
    """{(script, machine): [seconds per epoch of training, evaluation seconds]} of every
    committed run of the plan."""
    seen = {}
    for u in units:
        path = Path(results) / u.folder / "metrics.json"
        try:
            m = json.loads(path.read_text())
            per_epoch = m["train_seconds"] / m["epochs"]
            seen.setdefault((u.script, m.get("machine")), []).append((per_epoch, m["eval_seconds"]))
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
            continue
    return seen


def expected_seconds(unit, seen, machine):
    """(seconds, note): the committed runs of this script on this kind of machine, scaled to
    the unit's epochs; any machine's (noted) where none ran here; (None, '') if none ran."""
    here = seen.get((unit.script, machine))
    note = ""
    if not here:
        here = [t for (script, _), ts in seen.items() if script == unit.script for t in ts]
        note = " (timed on other CPUs)"
    if not here:
        return None, ""
    per_epoch = statistics.median(t[0] for t in here)
    evaluation = statistics.median(t[1] for t in here)
    return per_epoch * epochs_of(unit) + evaluation, note


def duration(seconds):
    if seconds is None:
        return "?"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


# ---------------------------------------------------------------- running


def thread_env(cpus):
    """Environment for a run given `cpus` cores: the thread pools of every backend sized to it."""
    if not cpus:
        return dict(os.environ)
    n = str(cpus)
    return {**os.environ, "OMP_NUM_THREADS": n, "TF_NUM_INTRAOP_THREADS": n,
            "TF_NUM_INTEROP_THREADS": "1", "MKL_NUM_THREADS": n}


def die_with_parent():
    """In the child, before the script starts: on Linux, a SIGTERM when the process that
    started it dies (a Ray worker killed mid-run), so that the retried run finds the folder's
    lock free instead of an orphan still training in it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except (OSError, AttributeError):
        pass  # elsewhere the orphan ends on its own and the retry waits on its lock


def run_unit(unit, results, cpus=None):
    """Run one unit's script to the end (it resumes from its backup); return its exit status."""
    return subprocess.run([sys.executable, *unit.argv(results)], cwd=REPO, env=thread_env(cpus),
                          preexec_fn=die_with_parent if sys.platform == "linux" else None
                          ).returncode


def sequential(todo, results, progress):
    failed = []
    for u in todo:
        progress.start(u)
        code = run_unit(u, results)
        progress.end(u, code)
        if code == 130:
            raise KeyboardInterrupt
        if code:
            failed.append(u)
    return failed


def with_ray(todo, results, progress, workers, address, cpus, gpus):
    """Each unit a Ray task asking for `cpus` CPUs (and `gpus` GPUs); Ray retries a task whose
    worker dies, and the retried run resumes from its backup."""
    import ray

    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=workers * cpus, include_dashboard=False, log_to_driver=True)
    task = ray.remote(run_unit).options(num_cpus=cpus, num_gpus=gpus, max_retries=3,
                                        retry_exceptions=True)
    pending = {}
    for u in todo:
        pending[task.remote(u, str(results), cpus)] = u
        progress.start(u, queued=True)
    failed = []
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            u = pending.pop(ready[0])
            try:
                code = ray.get(ready[0])
            except (ray.exceptions.RayError, OSError) as e:
                print(f"{u.folder}: {type(e).__name__}: {str(e).splitlines()[0]}")
                code = 1
            progress.end(u, code)
            if code:
                failed.append(u)
    finally:
        ray.shutdown()
    return failed


class Progress:
    """One line as each run starts and ends, with the runs done and the time left."""

    def __init__(self, total, done, expected):
        self.total, self.done, self.expected = total, done, expected
        self.started, self.finished = time.time(), set()

    def left(self):
        return sum(s or 0 for u, s in self.expected.items() if u not in self.finished)

    def start(self, u, queued=False):
        what = "queued" if queued else "running"
        print(f"[{self.done}/{self.total}] {what} {u.command()} (expected "
              f"{duration(self.expected.get(u))})", flush=True)

    def end(self, u, code):
        self.finished.add(u)
        if code == 0:
            self.done += 1
        left = duration(self.left())
        print(f"[{self.done}/{self.total}] {'finished' if code == 0 else f'failed ({code})'} "
              f"results/{u.folder}; about {left} of runs left "
              f"({duration(time.time() - self.started)} so far)", flush=True)


def summarise_studies(units, results):
    """Rewrite the summary (seeds.json, loss_seeds.png) of each seed study whose runs are all
    done; return the studies left out."""
    left = []
    for study in sorted({u.study for u in units if u.study}):
        mine = [u for u in units if u.study == study]
        if any(state(u, results) != DONE for u in mine):
            left.append(study)
            continue
        a = seeds.parse(shlex.split(study)[3:])
        seeds.summarise(Path(results) / relative(a.root), a.script, a.seeds, a.command)
    return left


# ---------------------------------------------------------------- the command


def select(units, commands, only):
    if not only:
        return units, commands
    known = set().union(*[u.tags for u in units], *[c.tags for c in commands])
    unknown = [o for o in only if o not in known]
    if unknown:
        fail(f"--only {' '.join(unknown)}: not a script, claim or study of the plan (known: "
             f"{', '.join(sorted(known))})")
    pick = lambda x: bool(x.tags & set(only))  # noqa: E731
    return [u for u in units if pick(u)], [c for c in commands if pick(c)]


def parse_args(argv=None):
    parser = ArgumentParser(prog="python -m common.reproduce", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (each run's command, state and expected time) and "
                             "run nothing")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="only the runs of these scripts (vae_keras, nice, ...), claims "
                             "(their function in common/claims/, e.g. noise_same_loss) or "
                             "studies (a folder of results/claims/, e.g. nice_positive)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="run N runs at once as tasks of a local Ray instance (default: one "
                             "after another, without Ray)")
    parser.add_argument("--address", metavar="ADDR",
                        help="join the Ray cluster at ADDR (e.g. HOST:6379 or 'auto') instead")
    parser.add_argument("--cpus-per-run", type=int, default=0, metavar="C",
                        help="CPUs each Ray task asks for (default: this machine's cores / N)")
    parser.add_argument("--gpus-per-run", type=float, default=None, metavar="G",
                        help="GPUs each Ray task asks for (default: 1 where the cluster has GPUs)")
    parser.add_argument("--results", default=str(RESULTS), metavar="DIR",
                        help="the results folder (default: results/ in the repository); on a "
                             "cluster, a path every node shares")
    a = parser.parse_args(argv)
    if a.workers < 0 or a.cpus_per_run < 0 or (a.gpus_per_run or 0) < 0:
        parser.error("--workers, --cpus-per-run and --gpus-per-run must be >= 0")
    if a.address and a.workers:
        parser.error("--address joins a cluster that has its own workers; leave out --workers")
    return a


def main(argv=None):
    a = parse_args(argv)
    results = Path(a.results).resolve()
    everything = plan()
    seen = timings(everything[0], results)  # every committed run's timing, whatever --only picks
    units, commands = select(*everything, a.only)
    states = {u: state(u, results) for u in units}
    machine = this_machine()
    expected = {}
    print(f"The plan: {len(units)} runs and {len(commands)} other commands (results: "
          f"{seeds.shown(results)}; times from the committed runs on {machine})")
    for u in units:
        seconds, note = expected_seconds(u, seen, machine)
        expected[u] = None if states[u] == DONE else seconds
        print(f"  {states[u]:8} {u.command(results)}  ~{duration(seconds)}{note}")
    for c in commands:
        print(f"  {command_state(c, results):8} {c.line}")
    todo = [u for u in units if states[u] != DONE]
    todo_commands = [c for c in commands if command_state(c, results) != DONE]
    total = sum(s or 0 for s in expected.values())
    unknown = sum(1 for u in todo if expected[u] is None)
    print(f"{len(units) - len(todo)} of {len(units)} runs done; {len(todo)} to run, about "
          f"{duration(total)} on this machine one after another"
          + (f" ({unknown} of them with no timing to go by)" if unknown else ""))
    print("Not run by this command: the original scripts' reruns in results/original/, which "
          "need an environment of their own (benchmarks/original.py says how)")
    if a.dry_run:
        return {u: states[u] for u in units}
    before = report.rendered() if results == RESULTS.resolve() else None
    progress = Progress(len(units), len(units) - len(todo), expected)
    if a.workers or a.address:
        cpus = a.cpus_per_run or max(1, (os.cpu_count() or 1) // max(a.workers, 1))
        gpus = a.gpus_per_run if a.gpus_per_run is not None else (1 if has_gpu(a.address) else 0)
        failed = with_ray(todo, results, progress, a.workers, a.address, cpus, gpus)
    else:
        failed = sequential(todo, results, progress)
    for c in todo_commands:
        print(f"running {c.line}", flush=True)
        if subprocess.run(shlex.split(c.line), cwd=REPO).returncode:
            failed.append(c)
    # the summaries of the studies that got a new run (one with a failed run waits)
    ran = {u.study for u in todo}
    summarise_studies([u for u in units if u.study in ran], results)
    if failed:
        fail(f"{len(failed)} runs failed (their logs are above); the same command runs them "
             "again and keeps every finished one")
    if before is not None:
        report.main(["--write"])
        changes(before, report.rendered())
    return {u: state(u, results) for u in units}


def has_gpu(address):
    """Whether the cluster (or this machine) has a GPU, asked of Ray only where one is used."""
    if address:
        import ray

        ray.init(address=address)
        try:
            return ray.cluster_resources().get("GPU", 0) > 0
        finally:
            ray.shutdown()
    return bool(accelerator())


def changes(before, after):
    """Print the lines of the generated blocks that the new runs changed."""
    for name, (_, old) in before.items():
        new = after[name][1]
        gone = [line for line in old.splitlines() if line not in new.splitlines()]
        came = [line for line in new.splitlines() if line not in old.splitlines()]
        if not gone and not came:
            print(f"{name}: no change")
            continue
        print(f"{name}: {len(came)} lines changed")
        for line in came:
            print(f"  + {line[:200]}")


if __name__ == "__main__":
    cli(main)
