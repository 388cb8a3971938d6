"""Backups and resume: after every epoch the state a resume needs, written so that a kill at
any moment leaves the previous backup or the new one whole, and its checks when a run resumes.

The backup folder (`<out-dir>/backup/`) holds `state.json` and the weights files it names;
`State` is the file's one type: `Backup` writes it after every epoch, `resume` reads it back
and checks the files it names.
"""
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import warnings
from pathlib import Path

import keras
import numpy as np

from common.config import changed_settings, settings
from common.journal import (BACKUP, PARTIAL_HISTORY, STATE, _is_digest, _plain_name, _set_aside,
                            digest, fail, mismatch, remove, uninterrupted, write_bytes,
                            write_json)


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
            State(epochs_done=epoch + 1, weights=weights, best=best,
                  best_val_loss=self.keep_best.best if self.keep_best else None, files=files,
                  history=digest(self.folder.parent / PARTIAL_HISTORY),
                  seed_states=[np.asarray(v).tolist() for v in seed_states(self.model)],
                  settings=settings(self.cfg)).write(self.folder)
            for f in self.folder.glob("*.weights.h5"):
                if f.name not in files:
                    f.unlink()


@dataclasses.dataclass
class State:
    """A backup's `state.json`: what a resume needs. `write` and `read` are the only way in
    or out of the file, and `read` checks every field, so a State in hand is well formed.

    `files` maps each weights file the backup holds (the last epoch's, `weights`, and the best
    one's, `best`) to its size and SHA-256; `history` is the size and digest of the partial
    history as it stood (its header and one row per epoch done); `seed_states` the samplers'
    noise states; `settings` the run's (`common.config.settings`).
    """
    epochs_done: int
    weights: str
    best: str | None
    best_val_loss: float | None
    files: dict
    history: dict
    seed_states: list
    settings: dict

    def write(self, folder):
        write_json(Path(folder) / STATE, dataclasses.asdict(self))

    @classmethod
    def read(cls, folder, max_epochs=10_000):
        """The state in `folder`; a missing file raises OSError, a malformed one ValueError
        saying what is wrong with it."""
        try:
            raw = json.loads((Path(folder) / STATE).read_text())
        except ValueError as e:
            raise ValueError(f"cannot be read ({type(e).__name__})") from None
        problem = cls.problem(raw, max_epochs)
        if problem:
            raise ValueError(problem)
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls)})

    @staticmethod
    def problem(raw, max_epochs=10_000):
        """What makes a parsed state.json unusable, or None: checks every field's type."""
        if not isinstance(raw, dict):
            return f"is a JSON {type(raw).__name__}, not an object"
        done = raw.get("epochs_done")
        if not isinstance(done, int) or isinstance(done, bool) or not 1 <= done <= max_epochs:
            return f"has epochs_done {str(done)[:40]!r}, not a whole number from 1 to {max_epochs}"
        if not isinstance(raw.get("settings"), dict):
            return "has no settings"
        files = raw.get("files")
        if not isinstance(files, dict) or not all(_plain_name(k) and _is_digest(v)
                                                  for k, v in files.items()):
            return "has no digests of its weights (files)"
        if raw.get("weights") not in files:
            return "does not name its weights among its files"
        if raw.get("best") is not None and raw.get("best") not in files:
            return "names best weights that are not among its files"
        best_val = raw.get("best_val_loss")
        if best_val is not None and not isinstance(best_val, (int, float)):
            return "has a best_val_loss that is not a number"
        if not _is_digest(raw.get("history")):
            return "has no digest of the partial history"
        if not isinstance(raw.get("seed_states"), list):
            return "has no sampler states"
        return None

    def trained_weights(self, keep_best):
        """The weights file a finished run publishes: the best epoch's or the last one's."""
        return self.best if keep_best and self.best else self.weights


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
        state = State.read(folder)
    except OSError as e:
        return _set_aside(out, f"has a state.json that cannot be read ({type(e).__name__})")
    except ValueError as e:
        return _set_aside(out, f"has a state.json that {e}")
    if keep_best and state.best is not None and state.best_val_loss is None:
        return _set_aside(out, "has a state.json that names best weights without their "
                               "best_val_loss")
    done = state.epochs_done
    changed = [f"{flag} {then!r} (now {now!r})"
               for flag, then, now in changed_settings(state.settings, cfg)]
    if done > cfg.epochs:
        changed.append(f"--epochs {done} or more (now {cfg.epochs})")
    if changed:
        fail(f"{folder} holds an interrupted run with other settings: {', '.join(changed)}. "
             f"Rerun with those to resume it, or move the folder away to start over")
    for name, expected in state.files.items():
        problem = mismatch(folder / name, expected)
        if problem:
            return _set_aside(out, f"is damaged: {problem}")
    expected = state.history
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
            model.load_weights(str(folder / state.weights))
        states = seed_states(model)
        if len(states) != len(state.seed_states):
            raise ValueError("sampler states do not match the model")
        for variable, value in zip(states, state.seed_states):
            variable.assign(np.array(value, dtype=variable.dtype))
    except Exception as e:  # any unreadable or mismatched weights file
        return _set_aside(out, f"has weights that cannot be loaded ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:120] if str(e) else ''})")
    if partial.stat().st_size != len(rows):  # rows past the backup: epochs it lost
        write_bytes(partial, rows)
    print(f"resuming from the backup in {folder}: {done} epoch(s) already done")
    return state


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



def read_state(out):
    """The `State` of the backup in `out`, which `resume` checked or `Backup` just wrote."""
    return State.read(Path(out) / BACKUP)
