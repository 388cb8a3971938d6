"""Faults simulated for the tests."""
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
