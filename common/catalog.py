"""The model scripts, one row each: everything the seed study, the report, the claims, the
reproduce command, the benchmarks and the tests need to know about a script. No Keras.

Adding a fifth script: write `<name>.py` after the four (a `Config(run.RunConfig)`, a
`main(argv=None, callbacks=())` that ends in `run.finish`, `run.cli(main)` at the bottom), then add
its row here. The seed study, the report's tables and `python -m common.reproduce` pick it up.
"""
import dataclasses
import json
from pathlib import Path

from common.config import REPO
from common.journal import read_history

# the reruns of the blog's own scripts by benchmarks/original.py: <folder>/<name>/run-*.csv, .json
ORIGINAL_RUNS = REPO / "results" / "original"


@dataclasses.dataclass(frozen=True)
class Script:
    name: str  # the script's module, `<name>.py`, and its results folder, results/<name>/
    short: str  # its name in the benchmarks' flags
    post: str  # the blog post it reproduces
    label: str  # its name in the tables
    seeds: int  # the default seed study's size: seeds 0 .. seeds - 1
    blog: str = "none given"  # the blog's own figure for its loss, as the post states it
    extra_seed_flags: tuple = ()  # flags for seeds > 0 of the default study only
    quick_eval_flags: tuple = ()  # flags that cut the evaluation short (benchmarks, tests)
    loss_label: str = "validation loss"  # the y axis of the seed study's curves
    zoom_from_epoch: int = 2  # the seed curves' y axis starts from this epoch's worst value
    zoom_margin: float = 0.1  # ... plus this fraction of it (or, if above 1, these nats)
    original_epochs: tuple = ()  # the epochs at which the original script's reruns are compared

    @property
    def file(self):
        return f"{self.name}.py"


SCRIPTS = (
    Script("vae_keras", "vae", "https://kexue.fm/archives/7725", "Gaussian VAE", seeds=5,
           quick_eval_flags=("--is-images", "2", "--is-samples", "10")),
    Script("vae_vmf_keras", "vmf", "https://kexue.fm/archives/8404", "vMF-VAE", seeds=5,
           quick_eval_flags=("--is-images", "2", "--is-samples", "10")),
    # the Gumbel-Softmax NLL takes longer than training: the extra seeds use fewer images
    Script("vae_keras_cnn_gs", "gs", "https://kexue.fm/archives/6705", "Gumbel-Softmax VAE",
           seeds=3, extra_seed_flags=("--is-images", "2000"),
           quick_eval_flags=("--is-images", "2", "--is-samples", "10"),
           original_epochs=(30,)),
    Script("nice", "nice", "https://kexue.fm/archives/5776", "NICE", seeds=3,
           blog="about −2200 within 20 epochs; 11 s/epoch on a GTX 1070",
           loss_label="validation loss (nats, without 720.448)", zoom_from_epoch=10,
           zoom_margin=50.0, quick_eval_flags=("--iw-draws", "0", "--dequantisation-draws", "2"),
           original_epochs=(5, 8, 10, 12, 15, 16)),
)


def names():
    return [s.name for s in SCRIPTS]


def get(name):
    """The row of a script by its name or short name; KeyError naming the known ones."""
    for s in SCRIPTS:
        if name in (s.name, s.short):
            return s
    raise KeyError(f"no script {name!r} in common/catalog.py (known: {', '.join(names())})")


def original_runs(name, folder=None):
    """The committed reruns of a script's original (benchmarks/original.py), in file order: a
    list of (what the run recorded, its history as read_history gives it)."""
    runs = []
    for log in sorted(Path(folder or ORIGINAL_RUNS, name).glob("run-*.csv")):
        runs.append((json.loads(log.with_suffix(".json").read_text()), read_history(log)))
    return runs


def original_losses(name, folder=None):
    """{epoch: [each rerun's test loss after it]} at the script's `original_epochs` that every
    rerun reached, and a phrase saying what the reruns are; ({}, None) when there are none."""
    runs = original_runs(name, folder)
    if not runs:
        return {}, None
    versions = sorted({info["tensorflow"] for info, _ in runs})
    what = (f"the original Keras 2 script under TensorFlow {', '.join(versions)}, "
            f"{len(runs)} unseeded run{'s' if len(runs) > 1 else ''}")
    losses = {e: [float(h["val_loss"][e - 1]) for _, h in runs]
              for e in get(name).original_epochs if all(len(h["val_loss"]) >= e for _, h in runs)}
    return losses, what
