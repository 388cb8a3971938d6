"""Run one of the blog's original Keras 2 scripts, unchanged, and log its test loss per epoch.

The tables set our seeds beside the original scripts' own runs. Those scripts are not part of
this project: get them from GitHub at the commits below (`nice.py` of bojone/flow,
`vae_keras_cnn_gs.py` of bojone/vae). They were written for Keras 2.2 under TensorFlow 1; they
still run under TensorFlow 2.15 with its Keras 2.15, in an environment of their own (Keras 3
cannot run them):

    python -m venv original-env
    original-env/bin/pip install -r benchmarks/original_requirements.txt
    original-env/bin/python benchmarks/original.py nice PATH/TO/nice.py --epochs 16 \\
        --out results/original/nice/run-1

The script's file is executed as it is (its SHA-256 is checked against the commit's). This
runner changes three things from outside it, and nothing else:
  - data: `keras.datasets.mnist.load_data` returns the same arrays from the project's offline
    loader (`common/data.py`, digests checked), since there is no internet here;
  - epochs: `Model.fit` is called with `--epochs` instead of the script's 30;
  - a callback added to that `fit` call writes each epoch's loss, test loss and seconds.
The run stops when `fit` returns: what the script does after training (loading its checkpoint,
drawing samples) is not run. NICE's script also needs `np`, which Keras 2.2's
`from keras.layers import *` used to provide; the runner puts numpy in its namespace as `np`.
The script's own random state is left alone (the runs are unseeded, as the blog's were).

Writes OUT.csv (epoch, counted from 0 as in every run's history.csv, loss, val_loss, seconds),
renamed into place when training ends, and OUT.json: the command, the script's repository,
commit and digest, the Python, TensorFlow and Keras versions and the machine. The report and
the seed curves read every `results/original/<script>/run-*.csv` (common/catalog.py).
"""
import argparse
import csv
import hashlib
import json
import os
import platform
import runpy
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# script: (repository, commit, file, SHA-256 of the file at that commit)
ORIGINALS = {
    "nice": ("https://github.com/bojone/flow", "360def8bec6ee24cbbd6df36cf9c9fcb2e6b3dc9",
             "nice.py", "d0f4ea7c2e7aaa94ad25619acccd14fbd17c77588c9db6c8e091b59dade5b7d6"),
    "vae_keras_cnn_gs": ("https://github.com/bojone/vae",
                         "69931f5380c62124c35821b2b7d4186b14654073", "vae_keras_cnn_gs.py",
                         "bda4bb2eddf47261ccb8d515f2628f3b0f8960f876fe9373e44a392b32cbd04d"),
}


class TrainingDone(Exception):
    """Raised when the script's `fit` returns, to end the run there."""


def epoch_logger(path):
    """A Keras 2 callback that writes one CSV row per epoch as soon as it ends."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.file = open(path, "w", newline="")
            self.writer = csv.writer(self.file)
            self.writer.writerow(["epoch", "loss", "val_loss", "seconds"])

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.writer.writerow([epoch, f"{logs['loss']:.6f}", f"{logs['val_loss']:.6f}",
                                  f"{time.perf_counter() - self.start:.2f}"])
            self.file.flush()

        def on_train_end(self, logs=None):
            self.file.close()

    return EpochLog()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("script", choices=sorted(ORIGINALS), help="which original script this is")
    p.add_argument("file", help="the original script's file, as fetched from its repository")
    p.add_argument("--epochs", type=int, required=True, help="epochs to train (the script's 30 "
                   "otherwise)")
    p.add_argument("--out", required=True, help="OUT.csv and OUT.json are written")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    repo, commit, name, digest = ORIGINALS[args.script]
    try:
        source = Path(args.file).read_bytes()
    except OSError as e:
        p.error(f"cannot read {args.file}: {e.strerror}")
    if hashlib.sha256(source).hexdigest() != digest:
        p.error(f"{args.file} is not {name} of {repo} at {commit} (SHA-256 differs)")

    import numpy as np
    import keras
    import tensorflow as tf
    from common import data, machine

    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".csv.partial")
    keras.datasets.mnist.load_data = data.load_mnist
    fit = keras.Model.fit

    def fit_logged(self, *a, **kw):
        kw["epochs"] = args.epochs
        kw["callbacks"] = [*kw.get("callbacks", []), epoch_logger(partial)]
        fit(self, *a, **kw)
        raise TrainingDone

    keras.Model.fit = fit_logged
    info = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
            "script": {"repository": repo, "commit": commit, "file": name, "sha256": digest},
            "epochs": args.epochs, "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "machine": machine.machine()}
    started = time.time()
    script, here = Path(args.file).resolve(), os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)  # the script's checkpoint and other files go there, then away
        try:
            runpy.run_path(str(script), init_globals={"np": np}, run_name="__main__")
        except TrainingDone:
            pass
        else:
            sys.exit("the script ended without calling fit")
        finally:
            os.chdir(here)
    info["minutes"] = round((time.time() - started) / 60, 1)
    os.replace(partial, out.with_suffix(".csv"))
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
