"""The output journal: how a run's outputs reach its folder whole, and are checked when read.

A run writes nothing over the outputs of the last finished run while it works: its new files
are staged in `pending/`, and the run is published in one step, by writing the manifest that
names every new file with its size and SHA-256; `publish` then moves the files into place, and
`recover` completes that move if a kill stopped it. Whoever reads the outputs again (`--load`,
the seed study, the report) checks each file against the manifest first. One process at a time
writes into a folder (`lock`), every file is replaced atomically (`write_bytes`), and Ctrl-C is
held while steps that must end together run (`uninterrupted`).

Imports neither Keras nor NumPy (`read_history` imports NumPy when it is called), so the tools
that only read committed results run without them.
"""
import contextlib
import csv
import hashlib
import json
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

WEIGHTS = "model.weights.h5"
PARTIAL_HISTORY = "history.partial.csv"
BACKUP = "backup"        # an unfinished run's state: what a resume needs
STATE = "state.json"     # in BACKUP: epochs done, the weights files, sampler states, settings
PENDING = "pending"      # an evaluation's outputs, until they are published
MANIFEST = "manifest.json"  # every published file's size and SHA-256 (in pending/, then in out/)


LOCK = ".lock"
_locks = {}  # output folder -> open descriptor, held until the process ends


def lock(out):
    """Make this process the only run writing into `out`, or stop with one line.

    The lock is an exclusive `flock` on the folder itself, released by the system when the
    process ends, however it ends; deleting files in the folder cannot release it. `out/.lock`
    holds the owner's process id, for the message.
    """
    import fcntl

    folder = Path(out).resolve()
    if folder in _locks:
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        try:
            owner = (folder / LOCK).read_text(errors="replace").strip()[:32] or "unknown"
        except OSError:
            owner = "unknown"
        fail(f"{out} is in use by another run (process {owner}); wait for it to end, or pass "
             "another --out-dir")
    _locks[folder] = fd
    with contextlib.suppress(OSError):  # only informative
        (folder / LOCK).write_text(str(os.getpid()))


_held = {"depth": 0, "caught": False}


@contextlib.contextmanager
def uninterrupted():
    """Hold Ctrl-C until the block ends, then raise it: for steps that must end together (an
    atomic write and its rename, a backup, publishing). Nested blocks hold until the outermost
    ends; outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread() or _held["depth"]:
        _held["depth"] += 1
        try:
            yield
        finally:
            _held["depth"] -= 1
        return

    def hold(signum, frame):
        _held["caught"] = True

    previous = signal.signal(signal.SIGINT, hold)
    _held.update(depth=1, caught=False)

    def release():
        caught = _held["caught"]
        _held.update(depth=0, caught=False)
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        return caught

    try:
        yield
    except BaseException:
        release()
        raise
    if release():
        raise KeyboardInterrupt


def os_error_message(e):
    """An OSError as one line with the path it concerns."""
    where = e.filename2 if getattr(e, "filename2", None) else e.filename
    return f"{where}: {e.strerror or e}" if where else f"{e.strerror or e}"


def write_json(path, obj):
    """Write JSON atomically (`write_bytes`)."""
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n").encode())


def write_bytes(path, data):
    """Replace a file's contents atomically: a temporary file in the same folder, flushed to
    disk, then a rename, with Ctrl-C held until it is done; a failed write names `path`."""
    path = Path(path)
    with uninterrupted():
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(path)) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(e, OSError):
                raise OSError(e.errno, e.strerror, str(path)) from None
            raise


def digest(path):
    """{"size": bytes, "sha256": hex digest} of a file."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def _is_digest(d):
    return (isinstance(d, dict) and isinstance(d.get("size"), int) and d["size"] >= 0
            and isinstance(d.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", d["sha256"]))


def mismatch(path, expected):
    """Why the file at `path` is not the one `expected` describes, or None if it is."""
    path = Path(path)
    if not path.is_file():
        return f"{path} is missing" if not path.exists() else f"{path} is not a file"
    if path.stat().st_size != expected["size"]:
        return f"{path} has {path.stat().st_size} bytes, not {expected['size']}"
    if digest(path)["sha256"] != expected["sha256"]:
        return f"{path} has other contents than were written (SHA-256 differs)"
    return None


def _plain_name(name):
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) is not None


def remove(path):
    """Delete a file or a folder tree, whichever `path` is (nothing if it is absent)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fail(message):
    """Stop the script with a one-line message and exit status 1."""
    raise SystemExit(f"error: {message}")


HISTORY_COLUMNS = ("epoch", "loss", "val_loss")  # what every run's history has, at least


def read_history(path):
    """history.csv (Keras' CSVLogger) as a dict of column name -> float array.

    Raises ValueError (with the path) for a history that is not a complete table of numbers
    with the columns every run writes.
    """
    import numpy as np  # here, not at the top: reading manifests and writing files needs none

    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not text") from None
    table = list(csv.reader(lines))
    if not table or not table[0]:
        raise ValueError(f"{path} is empty")
    header, body = table[0], table[1:]
    missing = [c for c in HISTORY_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(missing)}")
    if not body:
        raise ValueError(f"{path} has no rows")
    values = []
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path} line {i} has {len(row)} fields, not {len(header)}")
        try:
            values.append([math.nan if v == "NA" else float(v) for v in row])
        except ValueError:
            raise ValueError(f"{path} line {i} holds something other than numbers") from None
    array = np.array(values, dtype=np.float64).T
    columns = dict(zip(header, array))
    if not np.array_equal(columns["epoch"], np.arange(len(body))):
        raise ValueError(f"{path} does not list the epochs 0, 1, 2, ... in order")
    return {k: v for k, v in columns.items() if not np.all(np.isnan(v))}  # drop NA-only columns


def _set_aside(out, problem, go_on=None, what=BACKUP, again="starts the run over"):
    """Move a damaged backup (or `what`, another entry of `out`) aside, never deleting it, and
    say so in one line. Without `go_on`, stop (weights may be half loaded into the model) and
    say what the same command then does; with it, print it and carry on."""
    aside = out / f"{what}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    os.replace(out / what, aside)
    if what == BACKUP and (out / PARTIAL_HISTORY).exists():
        os.replace(out / PARTIAL_HISTORY, aside / PARTIAL_HISTORY if aside.is_dir() else
                   aside.with_name(f"{aside.name}.{PARTIAL_HISTORY}"))
    message = f"{out / what} {problem}; it is moved to {aside} (nothing deleted)"
    if go_on is None:
        fail(f"{message}. The same command now {again}")
    print(f"{message}; {go_on}")


def read_manifest(folder):
    """A manifest's {"files": {name: digest}, "clears_backup": bool}; ValueError if malformed."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{Path(folder) / MANIFEST} is not JSON") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(_plain_name(k) and _is_digest(v)
                                              for k, v in files.items()):
        raise ValueError(f"{Path(folder) / MANIFEST} does not list files with their digests")
    return {"files": files, "clears_backup": bool(manifest.get("clears_backup"))}


class NotPublished(ValueError):
    """A file is absent from a folder or its manifest (as opposed to present but changed)."""


def verify_published(out, names):
    """Raise ValueError (one line, with the path) unless `names` in `out` are exactly the files
    its manifest lists; NotPublished where a file or the manifest is missing."""
    out = Path(out)
    try:
        manifest = read_manifest(out)
    except FileNotFoundError:
        raise NotPublished(f"no {MANIFEST} in {out}: its outputs were not published by a "
                           "finished run") from None
    for name in names:
        if name not in manifest["files"] or not (out / name).exists():
            raise NotPublished(f"no {name} in {out}")
        problem = mismatch(out / name, manifest["files"][name])
        if problem:
            raise ValueError(f"{problem} (damaged or replaced since the run published it)")
    return manifest


def read_published(out, name, binary=False):
    """The text (or with `binary`, the bytes) of `name` in `out`, checked against the folder's
    manifest (`verify_published`)."""
    verify_published(out, [name])
    path = Path(out) / name
    return path.read_bytes() if binary else path.read_text()


def check_published(out, names):
    """Stop with one line unless `names` in `out` are exactly the files its manifest lists."""
    try:
        verify_published(out, names)
    except NotPublished as e:
        fail(f"{e}: --load needs a finished run's outputs; train first (run without --load) or "
             "pass its --out-dir")
    except (OSError, ValueError) as e:
        fail(f"{e}: train again (run without --load), or restore the file")


def pending(out):
    """An empty folder for this evaluation's figures; `common.run.finish` publishes them with
    the rest."""
    folder = Path(out) / PENDING
    remove(folder)  # figures of an interrupted evaluation, all made again
    folder.mkdir()
    return folder


def copy_file(src, dst):
    try:
        shutil.copyfile(src, dst)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(dst)) from None


class PublishDamaged(Exception):
    pass


def publish(out):
    """Complete the publishing that `out/pending/manifest.json` describes (again, if a kill
    stopped it): each file moves from pending/ into `out` after its digest is checked (one
    already moved must match it), then the backup and partial history of the training it
    publishes are removed, and last the manifest moves to `out/manifest.json`."""
    out, stage = Path(out), Path(out) / PENDING
    manifest = read_manifest(stage)
    with uninterrupted():
        for name, expected in manifest["files"].items():
            src, dst = stage / name, out / name
            if src.exists():
                problem = mismatch(src, expected)
                if problem:
                    raise PublishDamaged(problem)
                if dst.is_dir() and not dst.is_symlink():
                    raise OSError(21, "Is a directory (it must be a file: move it away)", str(dst))
                try:
                    os.replace(src, dst)
                except OSError as e:
                    raise OSError(e.errno, e.strerror, str(dst)) from None
            else:
                problem = mismatch(dst, expected)
                if problem:
                    raise PublishDamaged(problem)
        if manifest["clears_backup"]:
            remove(out / PARTIAL_HISTORY)
            clear_backup(out)
        os.replace(stage / MANIFEST, out / MANIFEST)
        remove(stage)


def clear_backup(out):
    """Remove the backup of a published run: renamed first, so a kill while deleting leaves no
    half backup under its name."""
    done = Path(out) / f"{BACKUP}.published"
    remove(done)  # left by a kill while deleting, or a stray file of that name
    if (Path(out) / BACKUP).exists() or (Path(out) / BACKUP).is_symlink():
        os.replace(Path(out) / BACKUP, done)
        remove(done)


def recover(out):
    """Bring `out` to a whole state before a run uses it: finish a publishing that a kill
    interrupted (its manifest was written), drop what a kill left while deleting a backup, and
    set aside (never delete) a staged publishing that turns out damaged."""
    out = Path(out)
    remove(out / f"{BACKUP}.published")
    stage = out / PENDING
    if stage.is_dir() and (stage / MANIFEST).exists():
        try:
            publish(out)
            print(f"completed the publishing of the run that was interrupted in {out}")
        except (ValueError, PublishDamaged) as e:
            _set_aside(out, f"holds a publishing that cannot be completed ({e})",
                       go_on="evaluating again", what=PENDING)
    elif stage.exists() and not stage.is_dir():
        _set_aside(out, "is not a folder", go_on="going on", what=PENDING)


def adopt(out, names=None):
    """Write `out/manifest.json` for a finished run published before manifests existed, from
    the files as they are now (by default every file the run publishes that is present)."""
    out = Path(out)
    names = names or sorted(f.name for f in out.iterdir() if f.is_file()
                            and f.suffix in (".png", ".json", ".csv", ".h5")
                            and f.name not in (MANIFEST, "seeds.json", "loss_seeds.png"))
    write_json(out / MANIFEST, {"files": {n: digest(out / n) for n in names},
                                "clears_backup": False})
