"""Figures: image grids and per-epoch curves, saved as PNG with matplotlib's Agg backend."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path, **kwargs):
    """fig.savefig(path), closing the figure; a failed write (a full disk) names the file."""
    try:
        fig.savefig(path, **kwargs)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        plt.close(fig)


def tile(images, n, size=28):
    """Tile the first n*n images (each size x size, any leading shape) into one square array."""
    images = np.asarray(images, dtype=np.float32).reshape(-1, size, size)[: n * n]
    if len(images) < n * n:
        raise ValueError(f"need {n * n} images for an {n}x{n} grid, got {len(images)}")
    return images.reshape(n, n, size, size).transpose(0, 2, 1, 3).reshape(n * size, n * size)


def save_grid(images, path, n=15, title=None):
    """Save an n x n grid of 28x28 images as a grey-scale PNG, as in the blog's figures."""
    fig = plt.figure(figsize=(10, 10))
    plt.imshow(tile(images, n), cmap="Greys_r", vmin=0, vmax=1)
    plt.axis("off")
    if title:
        plt.title(title)
    _save(fig, path, bbox_inches="tight")


def save_pairs(originals, reconstructions, path, n=10, title="test digits (odd columns) and reconstructions (even)"):
    """Save n rows of n/2 originals each followed by its reconstruction."""
    half = n * n // 2
    a = np.asarray(originals, np.float32).reshape(-1, 28, 28)[:half]
    b = np.asarray(reconstructions, np.float32).reshape(-1, 28, 28)[:half]
    save_grid(np.stack([a, b], axis=1).reshape(-1, 28, 28), path, n=n, title=title)


def save_curves(history, path, keys=("loss", "val_loss"), ylabel="loss", twin=None, title=None,
                top=None):
    """Plot history columns against epoch; `twin` names a column for a second y axis.

    `top` caps the y axis so that a late blow-up does not flatten the rest of the curves; the
    cut is written on the figure.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = history["epoch"] + 1
    for k in keys:
        if k in history:
            ax.plot(epochs, history[k], marker=".", label=k)
    shown = [history[k] for k in keys if k in history]
    if top is not None and max(np.max(v) for v in shown) > top:
        bottom = min(np.min(v) for v in shown)
        ax.set_ylim(bottom - 0.05 * (top - bottom), top)
        ax.text(0.98, 0.98, f"axis cut at {top:g}", transform=ax.transAxes, ha="right", va="top")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    lines, labels = ax.get_legend_handles_labels()
    if twin and twin in history:
        ax2 = ax.twinx()
        ax2.plot(epochs, history[twin], color="tab:red", marker=".", label=twin)
        ax2.set_ylabel(twin)
        ax2.set_yscale("log")
        more = ax2.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    ax.legend(lines, labels)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def save_scatter(points, labels, path, title=None):
    """Scatter 2-D points coloured by digit label, with a colour bar (the blog's latent plot)."""
    fig = plt.figure(figsize=(6, 6))
    plt.scatter(points[:, 0], points[:, 1], c=labels, s=2, cmap="tab10")
    plt.colorbar()
    if title:
        plt.title(title)
    _save(fig, path, bbox_inches="tight")


def save_seed_curves(histories, path, ylabel="loss", title=None, top=None, marks=None,
                     marks_label=None):
    """Validation loss of several runs against epoch: one thin line per seed, the mean in bold.

    `histories` maps seed -> history dict; `top` caps the y axis as in `save_curves`; `marks`
    (epoch -> values) draws other runs' figures as crosses, labelled `marks_label`.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for seed, h in sorted(histories.items()):
        ax.plot(h["epoch"] + 1, h["val_loss"], lw=0.8, alpha=0.7, label=f"seed {seed}")
    if marks:
        points = [(e, v) for e, values in marks.items() for v in values]
        ax.plot(*zip(*points), "kx", ms=6, label=marks_label)
    lengths = {len(h["val_loss"]) for h in histories.values()}
    if len(lengths) == 1:  # the mean only where every run has the same epochs
        mean = np.mean([h["val_loss"] for h in histories.values()], axis=0)
        ax.plot(np.arange(1, len(mean) + 1), mean, color="black", lw=2,
                label=f"mean of {len(histories)}")
    values = np.concatenate([h["val_loss"] for h in histories.values()])
    if top is not None and np.max(values) > top:
        bottom = np.min(values)
        ax.set_ylim(bottom - 0.05 * (top - bottom), top)
        ax.text(0.98, 0.98, f"axis cut at {top:g}", transform=ax.transAxes, ha="right", va="top")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


def save_map(values, path, title=None, label=None, size=28):
    """Save a size x size map of one value per pixel, with a colour bar (log scale if positive)."""
    values = np.asarray(values, np.float64).reshape(size, size)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    norm = matplotlib.colors.LogNorm() if np.all(values > 0) else None
    image = ax.imshow(values, cmap="viridis", norm=norm)
    ax.axis("off")
    fig.colorbar(image, ax=ax, label=label)
    if title:
        ax.set_title(title, fontsize=9)
    _save(fig, path, bbox_inches="tight")
