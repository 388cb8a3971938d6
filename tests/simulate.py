"""Faults simulated for the tests, and the helpers the fault tests of several files share: the
flags of a run of seconds (`quick`), a finished run (`finished`), the one-line error check
(`one_line_error`), garbled bytes (`flip_bytes`), and the per-image file's check (`per_image`)."""
import keras


class KillAt(keras.callbacks.Callback):
    """Simulates a kill (KeyboardInterrupt) as epoch `epoch` (from 0) starts, once.

    `started` lists every epoch that began while the callback was attached.
    """

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.fired, self.started = epoch, False, []

    def on_epoch_begin(self, epoch, logs=None):
        self.started.append(epoch)
        if epoch == self.epoch and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


class KillAtTrainEnd(keras.callbacks.Callback):
    """Simulates a kill once training is over and backed up, before the evaluation publishes."""

    def on_train_end(self, logs=None):
        raise KeyboardInterrupt


def lock_holder(out):
    """Another process holding the lock of `out` (it sleeps a minute); kill it when done."""
    import subprocess
    import sys

    from common import run

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from common import run; run.lock(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(60)", str(out)],
        cwd=run.REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def quick(out, *more):
    """A script's flags for a run of seconds into `out` (2 epochs on 200 images, 5 test images
    with 5 importance samples each, Keras' plain step: the runs that use these test the journal,
    backups and resumes, not the compiled step, and compiling it would take a third of each
    run), then `more`."""
    return ["--epochs", "2", "--subset", "200", "--is-images", "5", "--is-samples", "5",
            "--plain-keras", "--out-dir", str(out), *more]


def finished(out, *more):
    """A finished (published) `quick` run of vae_keras in `out`; returns its metrics."""
    import vae_keras
    from common import run

    metrics = vae_keras.main(quick(out, *more))
    assert (out / run.MANIFEST).is_file() and not (out / run.PENDING).exists()
    return metrics


def one_line_error(stop):
    """The message of a `pytest.raises(SystemExit)`, checked to be one line starting 'error: '."""
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def flip_bytes(path, count=64):
    """Garble `count` bytes in the middle of the file `path`, keeping its size."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def per_image(out, metrics, means, test_images=10000):
    """The run's test_per_image.npy as {column: values}, after checking that it holds one row
    per scored test image (its `is_images`, else all `test_images`) and that each column of
    `means` ({column: metric}) averages to that metric of `metrics`."""
    import numpy as np
    import pytest

    entry = metrics["test_per_image"]
    table = np.load(out / entry["file"])
    columns = dict(zip(entry["columns"], table.T))
    assert table.dtype == np.float32 and table.shape[1] == len(entry["columns"])
    assert table.shape[0] == metrics.get("is_images", test_images)
    for column, key in means.items():
        assert columns[column].mean() == pytest.approx(metrics[key], rel=1e-5), column
    return columns
