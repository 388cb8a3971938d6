import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from common import run  # noqa: E402


@pytest.fixture
def killed_then_resumed(monkeypatch):
    """Run a script's `main(argv)` for 2 epochs, killed as its second epoch starts, then again.

    Checks that the kill left a backup, that the second run trained only the second epoch and
    kept the first epoch's history row, and that the backup is gone once done. Returns the
    second run's metrics. `before_resume()` runs between the two, if given.
    """
    def check(main, argv, out, before_resume=None):
        started, killed = [], []
        real_begin = run.StopOnNaN.on_epoch_begin

        def on_epoch_begin(self, epoch, logs=None):
            started.append(epoch)
            if epoch == 1 and not killed:  # simulate a kill once; the resumed run gets through
                killed.append(epoch)
                raise KeyboardInterrupt
            return real_begin(self, epoch, logs)

        monkeypatch.setattr(run.StopOnNaN, "on_epoch_begin", on_epoch_begin)
        with pytest.raises(KeyboardInterrupt):
            main(argv)
        assert (out / "backup").is_dir()
        # a killed run publishes nothing: its epochs wait in the partial history
        assert not (out / "history.csv").exists() and not (out / "config.json").exists()
        first_row = (out / run.PARTIAL_HISTORY).read_text().splitlines()[1]
        started.clear()
        if before_resume:
            before_resume()
        metrics = main(argv)
        assert started == [1]  # resumed: only the second epoch ran
        rows = (out / "history.csv").read_text().splitlines()
        assert len(rows) == 3 and rows[1] == first_row
        assert not (out / "backup").exists() and not (out / run.PARTIAL_HISTORY).exists()
        monkeypatch.setattr(run.StopOnNaN, "on_epoch_begin", real_begin)
        return metrics

    return check
