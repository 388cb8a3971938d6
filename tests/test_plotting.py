"""common/plotting.py: image grids and the loss curves' cut-off axis."""
import numpy as np
import pytest

from common import plotting


@pytest.mark.quick
def test_grid_tiles_rows_then_columns(tmp_path):
    images = np.arange(4)[:, None, None] * np.ones((4, 28, 28)) / 3
    grid = plotting.tile(images, 2)
    assert grid.shape == (56, 56)
    assert grid[0, 0] == 0 and grid[0, 28] == pytest.approx(1 / 3) and grid[28, 0] == pytest.approx(2 / 3)
    plotting.save_grid(images, tmp_path / "g.png", n=2)
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.quick
def test_grid_refuses_too_few_images():
    with pytest.raises(ValueError, match="need 9 images"):
        plotting.tile(np.zeros((8, 28, 28)), 3)


@pytest.mark.quick
@pytest.mark.parametrize("blow_up, cut", [(5.0, False), (1e6, True)])
def test_curves_cut_the_axis_only_above_top(tmp_path, monkeypatch, blow_up, cut):
    figures = []
    real_close = plotting.plt.close
    monkeypatch.setattr(plotting.plt, "close", lambda fig: figures.append(fig) or real_close(fig))
    history = {"epoch": np.arange(3.0), "loss": np.array([10.0, 4.0, 3.0]),
               "val_loss": np.array([12.0, 6.0, blow_up])}
    plotting.save_curves(history, tmp_path / "loss.png", top=20.0)
    assert (tmp_path / "loss.png").is_file()
    bottom, top = figures[0].axes[0].get_ylim()
    if cut:  # the cut keeps the rest of the curves in view: the axis spans about 3..20
        assert top == 20.0 and 2.0 < bottom < 3.0
    else:
        assert top < 20.0 and bottom < 3.0
