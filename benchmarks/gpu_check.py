"""The four scripts on a GPU, on every Keras backend that imports: speed and the same numbers.

For each backend (TensorFlow, JAX, PyTorch) that can be imported and computes on a GPU, each
script runs as a new process at its default settings for `--epochs` epochs (NICE for
`--nice-epochs`, enough to time whole epochs), into a temporary folder. Printed per run:
- seconds per epoch (the median of the epochs after the first, which compiles);
- the validation loss after those epochs beside the range of the committed CPU runs of the
  seed study (results/<script>/ and its seeds/) after the same epochs: a GPU computes the same
  model, so its loss should fall inside that spread (or near it: the seeds differ);
- the evaluation time, with the NLL on `--is-images` test images (K = 500 as on the CPU);
- for NICE, the seconds per epoch beside the blog's 11 s on a GTX 1070.
It ends with one line of key=value pairs: `<backend>_<script>_s_per_epoch`, `..._in_spread`
(1 or 0) and `..._eval_s` per run, and `runs` (how many ran). Runs that would start after
`--budget` seconds are skipped and listed, so the whole check fits in a fixed time.

Without a GPU on any importable backend it says so in one line and exits 0. `--cpu` runs it
there anyway (with `--subset N` for a short try of the check itself; the losses then do not
compare with the CPU seeds). It needs only
Keras, a backend and this repository (no TensorFlow, no network), and MNIST from `--data`,
$MNIST_NPZ or the Keras cache.

Usage: python benchmarks/gpu_check.py [--epochs 3] [--nice-epochs 3] [--is-images 1000]
                                      [--backends tensorflow jax torch] [--budget 420]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from common import catalog, journal  # noqa: E402  no Keras: its default backend may be missing here

SCRIPTS = {s.short: s.name for s in catalog.SCRIPTS}
BLOG_NICE_SECONDS = 11  # per epoch on a GTX 1070, as the NICE post states
PROBE = ("import keras, sys\n"
         "from common.run import accelerator\n"
         "print(accelerator() or '')\n")


def probe(backends):
    """{backend: (importable, accelerator name or '')}, each backend asked in its own process,
    all at once (each spends seconds importing its libraries)."""
    asked = {b: subprocess.Popen([sys.executable, "-c", PROBE], cwd=REPO, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "KERAS_BACKEND": b,
                                      "TF_CPP_MIN_LOG_LEVEL": "3"})
             for b in backends}
    found = {}
    try:
        for backend, process in asked.items():
            out, _ = process.communicate()
            found[backend] = ((True, (out.strip().splitlines() or [""])[-1])
                              if process.returncode == 0 else (False, ""))
    finally:  # Ctrl-C: none left running
        for process in asked.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return found


def column(path, name):
    """One column of a history.csv as floats (`common.journal.read_history`: this process
    imports no Keras, whose default backend may be missing on a GPU machine)."""
    return [float(v) for v in journal.read_history(path)[name]]


def cpu_spread(script, epochs):
    """(min, max, runs) of the committed CPU runs' validation loss after `epochs` epochs."""
    root = REPO / "results" / script
    values = []
    for history in [root / "history.csv", *sorted(root.glob("seeds/*/history.csv"))]:
        try:
            val = column(history, "val_loss")
        except (OSError, KeyError, ValueError):
            continue
        if len(val) >= epochs:
            values.append(float(val[epochs - 1]))
    return (min(values), max(values), len(values)) if values else (None, None, 0)


def run_one(backend, name, epochs, is_images, data, folder, subset=0):
    script = SCRIPTS[name]
    out = folder / f"{backend}_{name}"
    cmd = [sys.executable, str(REPO / f"{script}.py"), "--epochs", str(epochs),
           "--out-dir", str(out), *(["--data", data] if data else []),
           *(["--subset", str(subset)] if subset else [])]
    if name != "nice":
        cmd += ["--is-images", str(is_images)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        return None, tail
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = column(out / "history.csv", "epoch_seconds")
    return {"s_per_epoch": statistics.median(seconds[1:] or seconds),
            "val_loss": column(out / "history.csv", "val_loss")[-1], "eval_s": metrics["eval_seconds"],
            "machine": metrics["machine"], "test_nll": metrics.get("test_nll")}, None


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each VAE run (>= 2)")
    parser.add_argument("--nice-epochs", type=int, default=3, help="epochs of the NICE run (>= 2)")
    parser.add_argument("--is-images", type=int, default=1000,
                        help="test images of the VAEs' NLL (timed; 10,000 in a full run)")
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"],
                        choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--scripts", nargs="+", default=list(SCRIPTS), choices=list(SCRIPTS))
    parser.add_argument("--budget", type=float, default=420,
                        help="seconds after which no new run starts (default: 420, i.e. 7 min)")
    parser.add_argument("--cpu", action="store_true",
                        help="run on the backends' CPU when they have no GPU (to try the check)")
    parser.add_argument("--subset", type=int, default=0,
                        help="train on the first N images only (0: all; for a short try)")
    parser.add_argument("--data", default="", help="MNIST file (default: $MNIST_NPZ, the Keras cache)")
    args = parser.parse_args()
    if args.epochs < 2 or args.nice_epochs < 2:
        parser.error("--epochs and --nice-epochs must be >= 2 (the first epoch is not timed)")
    if not 1 <= args.is_images <= 10000:
        parser.error("--is-images must be between 1 and 10000")
    if not 0 <= args.subset <= 60000:
        parser.error("--subset must be between 0 and 60000")
    started = time.perf_counter()
    found = probe(args.backends)
    gpus = {b: name or "CPU (--cpu)" for b, (ok, name) in found.items()
            if ok and (name or args.cpu)}
    if not gpus:
        seen = ", ".join(f"{b}: {'CPU only' if ok else 'not importable'}"
                         for b, (ok, _) in found.items())
        print(f"no GPU: no importable Keras backend computes on an accelerator ({seen}); "
              "nothing to check")
        return
    for b, (ok, name) in found.items():
        print(f"{b}: {gpus.get(b) or ('CPU only, skipped' if ok else 'not importable, skipped')}",
              flush=True)
    keys, skipped, runs = {}, [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for backend in gpus:
            for name in args.scripts:
                if time.perf_counter() - started > args.budget:
                    skipped.append(f"{backend}/{name}")
                    continue
                epochs = args.nice_epochs if name == "nice" else args.epochs
                result, problem = run_one(backend, name, epochs, args.is_images, args.data,
                                          Path(tmp), args.subset)
                key = f"{backend}_{name}"
                if result is None:
                    print(f"{key}: failed: {problem}", flush=True)
                    keys[f"{key}_failed"] = 1
                    continue
                runs += 1
                low, high, n = cpu_spread(SCRIPTS[name], epochs)
                inside = low is not None and low <= result["val_loss"] <= high
                spread = (f"CPU seeds {low:.2f} to {high:.2f} ({n} runs): "
                          f"{'inside' if inside else 'outside'}" if n else "no CPU runs to compare")
                blog = (f"; the blog: {BLOG_NICE_SECONDS} s/epoch on a GTX 1070"
                        if name == "nice" else "")
                nll = (f", test NLL {result['test_nll']:.2f} on {args.is_images} images"
                       if result["test_nll"] is not None and name != "nice" else "")
                print(f"{key}: {result['s_per_epoch']:.2f} s/epoch{blog}; val_loss after "
                      f"{epochs} epochs {result['val_loss']:.2f} ({spread}); evaluation "
                      f"{result['eval_s']:.1f} s{nll} [{result['machine']}]", flush=True)
                keys[f"{key}_s_per_epoch"] = f"{result['s_per_epoch']:.2f}"
                keys[f"{key}_in_spread"] = int(inside)
                keys[f"{key}_eval_s"] = f"{result['eval_s']:.1f}"
    if skipped:
        print(f"skipped after the {args.budget:g} s budget: {' '.join(skipped)}")
    keys["runs"] = runs
    keys["seconds"] = f"{time.perf_counter() - started:.0f}"
    print(" ".join(f"{k}={v}" for k, v in keys.items()))


if __name__ == "__main__":
    main()
