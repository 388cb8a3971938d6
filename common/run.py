"""The life of a run shared by the model scripts: `setup` (settings, seed, the locked output
folder), `train_or_load` (training with its backups, or `--load`), `finish` (publishing the
outputs through the output journal, `common.journal`) and `cli` (Ctrl-C and failed writes as
one line each).

`train` wraps `Model.fit` with what every run needs: the progress bar, resume after an
interruption (`common.backup`), the batch order (`common.batches`), a per-epoch `history.csv`,
the time per epoch, optionally the weights of the best validation epoch, and a clean stop when
the loss turns NaN. The settings are `common.config`'s.
"""
import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

from common import startup  # noqa: F401  before Keras: the backend, a quiet start, Ctrl-C
import keras  # noqa: E402
import numpy as np  # noqa: E402

from common.backup import (  # noqa: E402
    Backup, KeepBest, build_optimizer, load_weights, read_state, resume)
from common import direct_calls  # noqa: E402
from common.batches import epoch_batches  # noqa: E402
from common import config  # noqa: E402
from common.config import changed_settings, load_may_change, parse_config  # noqa: E402
from common.journal import (  # noqa: E402
    BACKUP, MANIFEST, PARTIAL_HISTORY, PENDING, WEIGHTS, check_published, copy_file, digest,
    fail, lock, publish, read_history, read_manifest, recover, uninterrupted, write_json)
from common.machine import accelerator, machine  # noqa: E402
# for the callers that use them as run.X (the scripts: run.arg, run.RunConfig, ...)
from common.backup import State, save_weights, seed_states  # noqa: E402, F401
from common.batches import EpochBatches, EpochOrder  # noqa: E402, F401
from common.config import (  # noqa: E402, F401
    REPO, RUN_ONLY, ArgumentParser, RunConfig, arg, evaluation_settings, not_training, settings,
    with_defaults)
from common.journal import (  # noqa: E402, F401
    LOCK, STATE, adopt, pending, read_published, verify_published, write_bytes)


class Run:
    """One run of a script, as `setup` returns it: its settings (`cfg`) and folder (`out`),
    where it stands (`phase`, `epochs_done`: the interrupt message says how to go on), the
    weights that training leaves for `finish` to publish, and when its evaluation started.

    A script's `main` reads: `with run.setup(...) as job:`, the data and the models,
    `history = job.train_or_load(model, ...)`, the figures in `job.pending()`, the metrics, and
    `return job.finish(model, metrics)`. A Ctrl-C inside the `with` leaves it as `Interrupted`,
    which carries the line saying where the run stopped and how to go on (`cli` prints it).
    """

    def __init__(self, cfg, out):
        self.cfg, self.out = cfg, Path(out)
        self.phase, self.epochs_done = "setup", None
        self.trained = None  # (weights file, settings) that `finish` publishes after training
        self.evaluation_started = None

    def train(self, model, x, y=None, **train_kwargs):
        """`train` for this run; see there."""
        return train(model, self.cfg, self.out, x, y, job=self, **train_kwargs)

    def train_or_load(self, model, x, y=None, **train_kwargs):
        """With --load, the saved weights and history of an earlier run; otherwise `train`.

        --load checks the files against the run's manifest, and every setting but those of
        the evaluation (`load_may_change`) against its config.json. Either way the
        evaluation's clock starts when this returns.
        """
        if self.cfg.load:
            history = load(model, self.cfg, self.out)
        else:
            history = self.train(model, x, y, **train_kwargs)
        self.phase, self.evaluation_started = "evaluation", time.perf_counter()
        return history

    def pending(self):
        """An empty folder for this evaluation's figures, published with the rest by `finish`."""
        return pending(self.out)

    def finish(self, model, metrics):
        """`finish` for this run: publish its outputs; returns the metrics."""
        started = self.evaluation_started or time.perf_counter()
        return finish(self.out, model, metrics, started, self.trained, self)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None and issubclass(kind, KeyboardInterrupt) and kind is not Interrupted:
            raise Interrupted(self.interrupted_message()) from None
        return False

    def interrupted_message(self):
        out, phase, done = self.out, self.phase, self.epochs_done
        if phase == "training":
            if not done:
                return (f"interrupted in the first epoch of this run; nothing in {out} was "
                        "replaced. The same command starts it again")
            if done >= self.cfg.epochs:
                return (f"interrupted after the last epoch ({done}, backed up in "
                        f"{out / BACKUP}); earlier outputs in {out} are untouched. The same "
                        "command evaluates it without training")
            return (f"interrupted after epoch {done} (backed up in {out / BACKUP}); earlier "
                    f"outputs in {out} are untouched. The same command resumes from epoch "
                    f"{done + 1}")
        if phase == "evaluation":
            return (f"interrupted during the evaluation; earlier outputs in {out} are untouched "
                    "and the trained state is kept. The same command evaluates again without "
                    "training")
        if phase == "published":
            return f"interrupted as the run ended; its outputs in {out} are complete"
        return NOTHING_CHANGED


NOTHING_CHANGED = "interrupted before training; nothing was changed"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; its text says where the run stopped and how to go on."""


def set_random_seed(seed):
    """`keras.utils.set_random_seed` (Python's, NumPy's, the backend's and Keras' own seeds),
    without importing TensorFlow on JAX and PyTorch. Keras also seeds TensorFlow whenever it is
    installed, for `tf.data`, which only the TensorFlow path uses; importing it for that took
    several seconds at every start of a JAX or PyTorch run (tests/test_run.py). Where
    TensorFlow is already loaded, Keras' call seeds it as before."""
    from keras.src.utils import rng_utils

    lazy = getattr(rng_utils, "tf", None)
    # the lazy module's own attribute: getattr would import TensorFlow to look the name up
    unchecked = lazy is not None and "_available" in vars(lazy) and lazy._available is None
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules or not unchecked:
        return keras.utils.set_random_seed(seed)  # checked already, or another Keras
    lazy._available = False  # Keras' check of `tf.available` then imports nothing
    try:
        keras.utils.set_random_seed(seed)
    finally:
        lazy._available = None


def setup(cls, argv, name, description=None):
    """Parse the command line, seed everything, create and lock the output folder, and finish
    whatever an earlier run left half done there (`recover`). Returns the `Run`."""
    cfg = parse_config(cls, argv, prog=f"{name}.py", description=description)
    set_random_seed(cfg.seed)
    out = Path(cfg.out_dir) if cfg.out_dir else REPO / "results" / name
    if cfg.load and not out.is_dir():
        fail(f"no folder {out}: --load needs a finished run's outputs; train first (run without "
             "--load) or pass its --out-dir")
    out.mkdir(parents=True, exist_ok=True)
    lock(out)
    job = Run(cfg, out)
    recover(out)
    return job


class Progress(keras.callbacks.Callback):
    """Last among `fit`'s callbacks: records each epoch as done once it is backed up."""

    def __init__(self, job):
        super().__init__()
        self.job = job

    def on_epoch_end(self, epoch, logs=None):
        self.job.epochs_done = epoch + 1


def cli(main):
    """Run a script's `main()` as a command (`common.config.cli`): Ctrl-C prints one line saying
    where the run stopped and how to go on, exit status 130; a failed write one line with the
    path and the cause, exit status 1. The line comes with `Interrupted` from the run's `with`;
    before it, nothing was changed."""
    config.cli(main, lambda: NOTHING_CHANGED)


def compile_model(model, cfg, optimizer, plain_optimizer=None, jit_compile=False,
                  steps_per_execution=1, **compile_kwargs):
    """`model.compile` with a script's speed settings, or Keras' defaults with --plain-keras.

    The speed settings change how a step is executed (XLA, several steps per call, a fused
    optimizer kernel, on PyTorch the layers called directly: common/direct_calls.py), not what
    it computes; `plain_optimizer` is the stock optimizer that `optimizer` stands in for, and is
    used on backends other than its `BACKENDS` (by default TensorFlow alone).
    """
    backends = getattr(optimizer, "BACKENDS", ("tensorflow",))
    if plain_optimizer is not None and keras.backend.backend() not in backends:
        optimizer = plain_optimizer  # kernels of other backends; the same update in Keras ops
    if keras.backend.backend() == "jax":
        # JAX compiles only through XLA: without it Keras' JAX trainer runs the step one
        # operation at a time (NICE's step: 458 ms against 103 ms compiled, roofline.py)
        jit_compile = True
    if keras.backend.backend() == "torch":
        # Keras runs PyTorch one step per call, and `jit_compile` would mean torch.compile,
        # whose tracing of these small models costs more than it saves (eager is the default)
        jit_compile, steps_per_execution = False, 1
    if cfg.plain_keras:
        model.compile(optimizer=plain_optimizer or optimizer, **compile_kwargs)
    else:
        model.compile(optimizer=optimizer, jit_compile=jit_compile,
                      steps_per_execution=steps_per_execution, **compile_kwargs)
        # PyTorch: the layers' `call` without Keras' per-call Python (same arithmetic)
        direct_calls.install(model)


def precision_note(cfg):
    """With --precision bfloat16 on a CPU without bfloat16 units: one line saying it runs slower."""
    if cfg.precision != "bfloat16" or accelerator():
        return
    cpu = machine()
    if "BF16" not in cpu:
        print(f"note: this CPU ({cpu}) has no bfloat16 matrix units; --precision bfloat16 will "
              "run slower than float32 here")


@contextlib.contextmanager
def precision(cfg):
    """Build the layers of a model inside this: they compute in `cfg.precision`, float32 or, for
    'bfloat16', Keras' mixed_bfloat16 policy (float32 weights and optimizer state, bfloat16
    products). A script names `dtype="float32"` on the layers whose maths must stay float32:
    its samplers, its loss, the small heads that feed a sampler and the outputs it reads back.
    Says so when this machine has no bfloat16 units (`precision_note`)."""
    precision_note(cfg)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if cfg.precision == "bfloat16" else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


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


def train(model, cfg, out, x, y=None, validation_data=None, callbacks=(), keep_best=False,
          job=None):
    """`model.fit` with resume, a per-epoch history, epoch timing and a NaN guard.

    Killed and started again with the same command, a run continues after its last finished
    epoch (the `Backup` in `out/backup/`), and a run killed after training, during its
    evaluation, does not train again. The epochs go to `history.partial.csv`; nothing in `out`
    is replaced until `finish` publishes the weights, history, config, figures and metrics
    together, so a run that is killed or diverges leaves the earlier outputs whole. With
    `keep_best`, the weights left in the model (and published) are those of the epoch with the
    lowest validation loss; otherwise the last epoch's. Returns the full history as a dict of
    arrays, resumed epochs included. `job` is the `Run` it belongs to (a new one if not given):
    it learns the epochs done and the weights to publish.
    """
    job = job or Run(cfg, out)
    build_optimizer(model)  # so that a resume restores the optimizer's state too
    folder, partial = out / BACKUP, out / PARTIAL_HISTORY
    state = resume(model, cfg, out, keep_best)
    done = state.epochs_done if state else 0
    job.phase, job.epochs_done = "training", done or None
    keeper = None
    if keep_best:
        best_val = state.best_val_loss if state and state.best else math.inf
        keeper = KeepBest(folder, best_val, state.best if state else None)
    if done < cfg.epochs:
        batches, order = epoch_batches(x, y, cfg.batch_size, cfg.seed)
        cbs = [order, EpochTimer(), *callbacks, *([keeper] if keeper else []),
               StopOnNaN(), keras.callbacks.CSVLogger(str(partial), append=True),
               Backup(folder, cfg, keeper), Progress(job)]  # last: done once backed up
        try:
            model.fit(batches, epochs=cfg.epochs, initial_epoch=done, shuffle=False,
                      validation_data=validation_data, validation_batch_size=cfg.batch_size,
                      callbacks=cbs, verbose=1)
        except TrainingDiverged as e:
            fail(f"{e}; training stopped. Earlier outputs in {out} are untouched; this run's "
                 f"finished epochs are in {folder} and {partial.name} (lower the learning rate "
                 "or change --seed)")
    weights = folder / read_state(out).trained_weights(keep_best)
    if keep_best:
        load_weights(model, weights)
    job.trained = (weights, cfg)
    job.phase = "evaluation"
    return read_history(partial)


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


def load(model, cfg, out):
    """--load: the weights and history of the finished run in `out`, its files checked against
    its manifest and every setting but the evaluation's (`load_may_change`) against its
    config.json."""
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
    return history


def finish(out, model, metrics, evaluation_started, trained=None, job=None):
    """Add the evaluation time, parameter count and machine, and publish the run; return metrics.

    `evaluation_started` is the `time.perf_counter()` at which training (or loading) ended;
    `trained` the (weights file, settings) a training run leaves (None after --load); `job`,
    the `Run`, is marked published as the publishing ends (before a held Ctrl-C lands).
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
        if job:
            job.phase = "published"
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        fail(f"{', '.join(bad)} came out NaN or infinite (written as such to "
             f"{out / 'metrics.json'}); the settings leave the model's numbers out of range")
    return metrics

