"""The run's life (common/run.py): a bad flag at the command line is one line without a
traceback, and a NaN loss stops training with one line. (Settings: test_config.py; backups:
test_backup.py and test_faults.py; the output folder: test_journal.py.)"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import run

REPO = Path(__file__).resolve().parent.parent


def test_script_cli_rejects_bad_value_without_traceback():
    done = subprocess.run([sys.executable, str(REPO / "vae_keras.py"), "--batch-size", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "vae_keras.py: error: --batch-size must be >= 1 (got 0)" in done.stderr


@pytest.mark.quick
def test_nan_loss_stops_with_clear_message(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.full((20, 3), np.nan, "float32")
    cfg = run.RunConfig(epochs=2, batch_size=10)
    earlier = {"model.weights.h5": "earlier weights", "history.csv": "epoch,loss\n0,1.5\n",
               "config.json": '{"epochs": 50}\n'}
    for name, text in earlier.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(SystemExit) as e:
        run.train(model, cfg, tmp_path, x, np.zeros((20, 1), "float32"))
    assert "loss became nan" in str(e.value)
    for name, text in earlier.items():  # the earlier run's outputs are whole
        assert (tmp_path / name).read_text() == text


