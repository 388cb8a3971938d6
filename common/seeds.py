"""Seed study: run a script at its defaults under several seeds and summarise the spread.

    python -m common.seeds nice --seeds 0 1 2
    python -m common.seeds vae_keras                 # its default seeds (0-4)
    python -m common.seeds vae_keras --summary-only  # rewrite the summary from finished runs
    python -m common.seeds vae_keras --results /tmp/r -- --epochs 5   # other settings, elsewhere

Seed 0 is the default run in results/<script>/; seed n > 0 runs in results/<script>/seeds/<n>/.
Each run is `python <script>.py --seed n --out-dir ...`, one after the other. A run whose
config.json and metrics.json already match is kept, and an interrupted one resumes from its
backup, so the command can be started again after a stop and only finishes what is missing.
It ends by writing results/<script>/seeds.json (per metric: mean, sample standard deviation,
min, max, the seeds and their values) and results/<script>/loss_seeds.png (every seed's
validation curve). `--summary-only` reads only what the runs recorded and imports no Keras.
"""
import argparse
import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import catalog, plotting
from common.config import REPO, RUN_ONLY, ArgumentParser, cli, parse_config, with_defaults
from common.journal import (BACKUP, PENDING, fail, os_error_message, read_history,
                            verify_published, write_json)

sys.path.insert(0, str(REPO))  # the model scripts, imported to read their defaults

SUMMARISED = ("final_val_loss", "best_val_loss", "best_epoch", "test_loss", "test_neg_elbo",
              "test_nll", "test_dequantised_nll", "test_dequantised_bits_per_dim",
              "test_iw_nll", "test_iw_bits_per_dim", "sample_fd_best_std",
              "seconds_per_epoch")
IGNORED = RUN_ONLY  # config fields that may differ between equal runs
NOT_COMPARED = (*IGNORED, "seed")  # and between the seeds of one study


def run_dir(root, script, seed):
    return root / script if seed == 0 else root / script / "seeds" / str(seed)


def shown(path):
    """A path relative to the repository when it lies inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path.resolve())


def seed_flags(script, seed, extra=()):
    """The catalog's flags for seeds > 0 that `extra` does not set (none for seed 0)."""
    flags, args = catalog.get(script).extra_seed_flags, []
    if seed != 0:
        for flag, value in zip(flags[::2], flags[1::2]):
            if not any(a.split("=")[0] == flag for a in extra):
                args += [flag, value]
    return args


def run_args(root, script, seed, extra=()):
    """The script's flags for one seed: `extra`, then `seed_flags`, the seed and the folder."""
    return [*extra, *seed_flags(script, seed, extra), "--seed", str(seed), "--out-dir",
            shown(run_dir(root, script, seed))]


def comparable(config):
    return {k: v for k, v in config.items() if k not in IGNORED}


def published_config(out):
    """The settings (config.json) of the run published whole in `out`, or None: absent,
    damaged (its manifest does not check out), or followed by a run that has not finished."""
    out = Path(out)
    if (out / BACKUP).exists() or (out / PENDING).exists():
        return None  # a later run in this folder has not finished: run it (it resumes)
    try:
        verify_published(out, ("metrics.json", "config.json", "history.csv"))
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def is_done(out, script, args):
    """True if the run in folder `out` is published whole and was made with exactly the
    settings of the script's flags `args`, the script's defaults included (so this imports
    the script, and with it Keras)."""
    saved = published_config(out)
    if saved is None:
        return False
    config_cls = importlib.import_module(script).Config
    wanted = dataclasses.asdict(parse_config(config_cls, args, prog=f"{script}.py"))
    return comparable(with_defaults(saved, config_cls)) == comparable(wanted)


def holds_flags(saved, args):
    """True if the recorded settings `saved` have the value of every flag in `args`
    (`--name value` or `--name=value`); needs no script, so no Keras."""
    tokens = iter(args)
    for token in tokens:
        flag, eq, value = token.partition("=")
        if not eq:
            value = next(tokens, None)
        key = flag.lstrip("-").replace("-", "_")
        if key in NOT_COMPARED:
            continue
        if key not in saved or value is None:
            return False
        recorded = saved[key]
        try:
            same = (type(recorded)(value) == recorded if isinstance(recorded, (int, float, str))
                    and not isinstance(recorded, bool) else str(recorded) == value)
        except ValueError:
            return False
        if not same:
            return False
    return True


def summary_problem(root, script, seeds, script_args):
    """Why the finished runs of `seeds` cannot be summarised as one study, or None. Reads only
    what the runs recorded: each run published whole, with the flags given, and all of them
    with the same settings but the seed, where both record the setting (one added after a run
    was made is absent from it). Whether those are still the script's defaults is checked when
    the study runs: that needs the script, and Keras."""
    configs = {s: published_config(run_dir(root, script, s)) for s in seeds}
    missing = [s for s, c in configs.items() if c is None or not holds_flags(
        c, [*script_args, *seed_flags(script, s, script_args)])]
    if missing:
        return (f"seeds {missing} have no finished run with these settings; run without "
                "--summary-only first")
    first, *others = seeds

    # the catalog's flags for seeds > 0 may set what seed 0 leaves at its default
    varies = {f.lstrip("-").replace("-", "_") for f in seed_flags(script, 1, script_args)[::2]}

    def differs(a, b):  # a setting one run lacks (added after it was made) is not compared
        return any(a[k] != b[k] for k in a.keys() & b.keys()
                   if k not in NOT_COMPARED and k not in varies)
    differ = [s for s in others if differs(configs[s], configs[first])]
    if differ:
        return (f"seeds {differ} were run with other settings than seed {first}; rerun them "
                "without --summary-only")
    return None


def read_run(out):
    """A finished run's metrics and history, or stop with one line naming the file."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
        if not isinstance(metrics, dict) or "final_val_loss" not in metrics:
            raise ValueError(f"{out / 'metrics.json'} lacks the metrics a finished run writes")
        return metrics, read_history(out / "history.csv")
    except (OSError, ValueError) as e:
        fail(f"{e if isinstance(e, ValueError) else os_error_message(e)}; move that "
             "run's folder away and run the same command again to redo it")


def spread(values):
    values = np.asarray(values, dtype=float)
    return {"mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "min": float(np.min(values)), "max": float(np.max(values))}


def summarise(root, script, seeds, command):
    """Write seeds.json and loss_seeds.png from the finished runs of `seeds`; return the summary."""
    metrics, histories = {}, {}
    for seed in seeds:
        metrics[seed], histories[seed] = read_run(run_dir(root, script, seed))
    summary = {"script": script, "command": command, "seeds": list(seeds),
               "runs": {str(s): shown(run_dir(root, script, s)) for s in seeds},
               "metrics": {}}
    for key in SUMMARISED:
        have = [s for s in seeds if metrics[s].get(key) is not None]
        if len(have) == len(seeds):
            summary["metrics"][key] = {**spread([metrics[s][key] for s in have]), "seeds": have,
                                       "values": [metrics[s][key] for s in have]}
    images = {str(s): metrics[s]["is_images"] for s in seeds if "is_images" in metrics[s]}
    if images:
        summary["is_images"] = images
        if len(set(images.values())) > 1:
            summary["note"] = ("test_nll and test_neg_elbo are estimated on the first is_images "
                               "test images of each run, which differ between seeds (is_images)")
    summary["machines"] = sorted({metrics[s].get("machine", "not recorded") for s in seeds})
    base = root / script
    write_json(base / "seeds.json", summary)
    # the y axis from the catalog's epoch down (NICE: the tenth, where the runs level off)
    row = catalog.get(script)
    at = row.zoom_from_epoch - 1
    start = max(h["val_loss"][min(at, len(h["val_loss"]) - 1)] for h in histories.values())
    margin = row.zoom_margin if row.zoom_margin > 1 else row.zoom_margin * abs(start)
    plotting.save_seed_curves(histories, base / "loss_seeds.png", ylabel=row.loss_label,
                              top=start + margin,
                              title=f"{script}: validation loss of {len(seeds)} seeds",
                              marks=catalog.original_losses(script)[0] or None,
                              marks_label="original Keras 2 script")
    return summary


def interrupted(root, script, seeds, command, stopped, script_args):
    """After Ctrl-C: summarise the seeds that are finished, say which are not, exit 130."""
    finished = [s for s in seeds if run_dir(root, script, s).is_dir()
                and is_done(run_dir(root, script, s), script,
                            run_args(root, script, s, script_args))]
    if finished:
        summarise(root, script, finished, command + f"  (interrupted: seeds {finished} only)")
    left = [s for s in seeds if s not in finished]
    where = f"seed {stopped} stopped where its line above says; " if stopped is not None else ""
    print(f"interrupted: {where}finished seeds {finished or 'none'} are summarised in "
          f"{shown(root / script / 'seeds.json')}; the same command runs {left or 'nothing more'}",
          file=sys.stderr)
    raise SystemExit(130)


def parse(argv=None):
    """A seed-study command line as a namespace: script, seeds (the catalog's default if not
    given), root (the results folder), script_args, summary_only and command (the line as the
    study records it); errors exit 2 in one line."""
    parser = ArgumentParser(  # errors in one line, exit status 2
        prog="python -m common.seeds", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", choices=catalog.names(), help="the model script to study")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="N",
                        help="seeds to run (default: 0-4 for the MLP VAEs, 0-2 for the others)")
    parser.add_argument("--summary-only", action="store_true",
                        help="train nothing: summarise the runs already finished")
    parser.add_argument("--results", default=str(REPO / "results"), metavar="DIR",
                        help="folder holding <script>/ and <script>/seeds/<n>/ "
                             "(default: results/ in the repository)")
    parser.add_argument("script_args", nargs="*", metavar="-- FLAG",
                        help="after --: settings passed to every run of the script (default: "
                             "none, the blog's settings)")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    a = parser.parse_args(argv[:cut])
    if a.script_args:
        parser.error(f"unexpected {' '.join(a.script_args)}: the script's own flags go after --")
    a.script_args = argv[cut + 1:]
    owned = [f for f in a.script_args
             if f.split("=")[0] in ("--seed", "--out-dir", "--load", "--no-load")]
    if owned:
        parser.error(f"{' '.join(owned)}: the seed study sets --seed and --out-dir for each run "
                     "itself (--results moves them) and always trains; leave these out")
    root = Path(a.results)
    seeds = a.seeds if a.seeds is not None else list(range(catalog.get(a.script).seeds))
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        parser.error("--seeds must be distinct and >= 0")
    a.command = " ".join(["python -m common.seeds", a.script, "--seeds", *map(str, seeds),
                          *(["--results", shown(root)] if a.results != parser.get_default("results")
                            else []), *(["--", *a.script_args] if a.script_args else [])])
    a.root, a.seeds = root, seeds
    return a


def main(argv=None):
    a = parse(argv)
    root, seeds, command = a.root, a.seeds, a.command
    if a.summary_only:
        problem = summary_problem(root, a.script, seeds, a.script_args)
        if problem:
            fail(problem)
    for seed in seeds if not a.summary_only else ():
        args = run_args(root, a.script, seed, a.script_args)
        if is_done(run_dir(root, a.script, seed), a.script, args):
            print(f"seed {seed}: done ({shown(run_dir(root, a.script, seed))})")
            continue
        print(f"seed {seed}: python {a.script}.py {' '.join(args)}", flush=True)
        child = subprocess.Popen([sys.executable, f"{a.script}.py", *args], cwd=REPO)
        try:
            code = child.wait()
        except KeyboardInterrupt:  # the run got the interrupt too: let it save and say where
            code = child.wait()
            interrupted(root, a.script, seeds, command, seed if code != 0 else None,
                        a.script_args)
        if code != 0:
            fail(f"seed {seed} failed (exit status {code}); its log is above. Finished seeds "
                 "are kept: run the same command again to continue")
    summary = summarise(root, a.script, seeds, command)
    for key, s in summary["metrics"].items():
        sd = "—" if s["sd"] is None else f"{s['sd']:.3g}"
        print(f"{key}: {s['mean']:.6g} ± {sd} (min {s['min']:.6g}, max {s['max']:.6g}, "
              f"{len(s['seeds'])} seeds)")
    return summary


if __name__ == "__main__":
    cli(main)
