"""common/backup.py: a resume restores the weights and the optimizer's state; weights that do
not fit are one line; the backup state file reads back as written and names what is malformed.
(The faults of damaged backups: tests/test_faults.py.)"""
import json

import numpy as np
import pytest

from common import run
from simulate import KillAt


@pytest.mark.quick
def test_resume_restores_weights_and_optimizer_state(tmp_path):
    import keras

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        m.compile(optimizer="adam", loss="mse")
        return m

    x = np.random.default_rng(0).random((40, 3)).astype("float32")
    y = x.sum(1, keepdims=True)
    cfg = run.RunConfig(epochs=3, batch_size=10)
    kill = KillAt(2)
    with pytest.raises(KeyboardInterrupt):
        run.train(model(), cfg, tmp_path, x, y, callbacks=[kill])
    resumed = model()
    history = run.train(resumed, cfg, tmp_path, x, y, callbacks=[kill])
    assert kill.started == [0, 1, 2, 2]
    assert int(resumed.optimizer.iterations.numpy()) == 12  # 3 epochs x 4 batches, not 4
    assert len(history["loss"]) == 3 and np.all(np.isfinite(history["loss"]))


@pytest.mark.quick
def test_unreadable_weights_give_clear_error(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    bad = tmp_path / "model.weights.h5"
    bad.write_bytes(b"garbage")
    with pytest.raises(SystemExit, match="cannot read the weights"):
        run.load_weights(model, bad)
    with pytest.raises(SystemExit, match="no weights"):
        run.load_weights(model, tmp_path / "absent.weights.h5")


@pytest.mark.quick
def test_a_state_reads_back_as_written_and_each_malformed_field_is_named(tmp_path):
    state = run.State(epochs_done=2, weights="epoch-2.weights.h5", best=None, best_val_loss=None,
                      files={"epoch-2.weights.h5": {"size": 3, "sha256": "0" * 64}},
                      history={"size": 10, "sha256": "1" * 64}, seed_states=[[0, 1]],
                      settings={"epochs": 2})
    state.write(tmp_path)
    assert run.State.read(tmp_path) == state
    raw = json.loads((tmp_path / run.STATE).read_text())
    for field, value, words in [("epochs_done", 0, "epochs_done"), ("settings", None, "settings"),
                                ("weights", "x.h5", "its weights"), ("best", "y.h5", "best"),
                                ("best_val_loss", "low", "best_val_loss"),
                                ("history", {}, "partial history"),
                                ("seed_states", None, "sampler states")]:
        (tmp_path / run.STATE).write_text(json.dumps({**raw, field: value}))
        with pytest.raises(ValueError, match=words):
            run.State.read(tmp_path)
    (tmp_path / run.STATE).write_text("{")
    with pytest.raises(ValueError, match="cannot be read"):
        run.State.read(tmp_path)
