"""Seconds per training epoch of every script: plain Keras 3 against the scripts' defaults.

Each script runs as a new process at its blog settings for a few epochs, once the plain Keras 3
way (`--plain-keras`: compile defaults, stock optimizer, one step per execution, i.e. what the
scripts did before their speed settings) and once with its defaults (XLA, several steps per
execution, NICE's fused Adam), alternating the two so that the shared machine's noise hits both
alike; round r uses `--seed r` for both. The time of an epoch is `epoch_seconds` in history.csv
(validation included); the first epoch of each run, which traces and compiles, is left out, and
each configuration's figure is the median over its runs. The evaluation after training is cut
to a few images (it is not timed here).

The losses of the two configurations after the last epoch are printed beside the spread between
seeds, so one can see that the speed settings change how a step is executed, not what it computes.
With `--jax` (and `--torch`), another configuration runs the defaults on Keras' JAX (PyTorch)
backend, in the same alternation, and a line `jax/tensorflow: vae=...x ...` (`torch/tensorflow:`)
gives TensorFlow's seconds per epoch over that backend's for the defaults (above 1: the other
backend is faster). `--bfloat16` likewise adds the defaults with `--precision bfloat16` on
TensorFlow, and a line `bfloat16/tensorflow:` (above 1: bfloat16 is faster); its losses beside
float32's, seed by seed, show what the precision changes. `--jax vae nice` adds it for those scripts only. `--subset N` trains every run on the first N images (the epoch is then shorter but
the configurations still compare like for like; the Gumbel-Softmax CNN's epoch on JAX takes
minutes).
Ends with one line:
    vae=...x vmf=...x gs=...x nice=...x
the speed-up of the defaults over plain Keras 3 (plain seconds per epoch / default).

Usage: python benchmarks/epoch_time.py [--epochs 3] [--rounds 2] [--scripts vae vmf gs nice]
                                       [--jax [SCRIPT ...]] [--torch [SCRIPT ...]]
                                       [--bfloat16 [SCRIPT ...]] [--subset N]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # this process only reads histories
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import catalog  # noqa: E402

# short name: (script, flags that cut the evaluation after training short)
SCRIPTS = {s.short: (s.file, list(s.quick_eval_flags)) for s in catalog.SCRIPTS}
CONFIGS = {"plain": ["--plain-keras"], "defaults": []}
OTHER_BACKENDS = ("jax", "torch")  # each a configuration: the defaults on that Keras backend
BACKEND = {"plain": "tensorflow", "defaults": "tensorflow", **{b: b for b in OTHER_BACKENDS}}
# the defaults with bfloat16 products, on TensorFlow
CONFIGS["bfloat16"], BACKEND["bfloat16"] = ["--precision", "bfloat16"], "tensorflow"
VARIANTS = (*OTHER_BACKENDS, "bfloat16")  # each timed against the defaults when asked for


def run_once(name, config, epochs, seed, root, subset=0):
    from common.run import read_history

    script, eval_flags = SCRIPTS[name]
    out = root / f"{name}_{config}_{seed}"
    cmd = [sys.executable, str(REPO / script), "--epochs", str(epochs), "--seed", str(seed),
           "--out-dir", str(out), *eval_flags, *CONFIGS.get(config, []),
           *(["--subset", str(subset)] if subset else [])]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": BACKEND[config]})
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    history = read_history(out / "history.csv")
    return list(history["epoch_seconds"][1:]), float(history["val_loss"][-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each configuration, alternating (round r uses --seed r)")
    parser.add_argument("--scripts", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    for variant, what in (("jax", "on the JAX backend"), ("torch", "on the PyTorch backend"),
                          ("bfloat16", "with --precision bfloat16 (TensorFlow)")):
        parser.add_argument(f"--{variant}", nargs="*", choices=list(SCRIPTS), metavar="SCRIPT",
                            help=f"also time the defaults {what}: for the scripts named, or for "
                                 "all when none is named")
    parser.add_argument("--subset", type=int, default=0,
                        help="train on the first N training images only (0: all 60,000)")
    args = parser.parse_args()
    on = {b: [] if getattr(args, b) is None else (getattr(args, b) or list(SCRIPTS))
          for b in VARIANTS}
    if args.epochs < 2 or args.rounds < 1:
        parser.error("--epochs must be >= 2 and --rounds >= 1")
    if not 0 <= args.subset <= 60_000:
        parser.error("--subset must be between 0 and 60000")
    from common.run import machine

    print(f"machine: {machine()}", flush=True)
    if args.subset:
        print(f"every run trains on the first {args.subset} training images", flush=True)
    speedups, ratios = {}, {b: {} for b in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scripts:
            configs = ["plain", "defaults", *(b for b in VARIANTS if name in on[b])]
            seconds = {c: [] for c in configs}
            losses = {c: [] for c in configs}
            for r in range(args.rounds):
                order = configs if r % 2 == 0 else configs[::-1]
                for config in order:
                    s, loss = run_once(name, config, args.epochs, r, Path(tmp), args.subset)
                    seconds[config] += s
                    losses[config].append(loss)
            median = {c: statistics.median(v) for c, v in seconds.items()}
            speedups[name] = median["plain"] / median["defaults"]
            loss_text = "; ".join(f"{c} " + " ".join(f"{v:.2f}" for v in losses[c]) for c in configs)
            others = ""
            for b in VARIANTS:
                if b in median:
                    ratios[b][name] = median["defaults"] / median[b]
                    others += f", {b} {median[b]:.2f} s/epoch"
            print(f"{name}: plain {median['plain']:.2f} s/epoch, defaults {median['defaults']:.2f} "
                  f"s/epoch{others} (medians of {len(seconds['plain'])} epochs each): "
                  f"{speedups[name]:.2f}x; val_loss after {args.epochs} epochs by seed: {loss_text}",
                  flush=True)
    for b in VARIANTS:
        if ratios[b]:
            print(f"{b}/tensorflow: " + " ".join(f"{n}={s:.2f}x" for n, s in ratios[b].items()))
    print(" ".join(f"{name}={s:.2f}x" for name, s in speedups.items()))


if __name__ == "__main__":
    main()
