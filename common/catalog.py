"""The model scripts, one row each: everything the seed study, the report, the claims, the
reproduce command, the benchmarks and the tests need to know about a script. No Keras.

Adding a fifth script: write `<name>.py` after the four (a `Config(run.RunConfig)`, a
`main(argv=None, callbacks=())` that ends in `run.finish`, `run.cli(main)` at the bottom), then add
its row here. The seed study, the report's tables and `python -m common.reproduce` pick it up.
"""
import dataclasses

# the original Keras 2 scripts' test loss, two unseeded runs each (results/README.md says how
# they were run): NICE's after these epochs, the Gumbel-Softmax VAE's after its 30th and last
ORIGINAL = "the original Keras 2 script under TensorFlow 2.15, two unseeded runs"


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
    original: dict = dataclasses.field(default_factory=dict)  # epoch: the original's test losses

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
           original={30: [61.55, 62.81]}),
    Script("nice", "nice", "https://kexue.fm/archives/5776", "NICE", seeds=3,
           blog="about −2200 within 20 epochs; 11 s/epoch on a GTX 1070",
           loss_label="validation loss (nats, without 720.448)", zoom_from_epoch=10,
           zoom_margin=50.0, quick_eval_flags=("--iw-draws", "0", "--dequantisation-draws", "2"),
           original={5: [-1381.9, -1379.8], 8: [-1737.8, -1732.5], 10: [-1872.7, -1871.8],
                     12: [-1937.8, -1934.1], 15: [-1949.1, -1944.3], 16: [-1948.7, -1946.6]}),
)


def names():
    return [s.name for s in SCRIPTS]


def get(name):
    """The row of a script by its name or short name; KeyError naming the known ones."""
    for s in SCRIPTS:
        if name in (s.name, s.short):
            return s
    raise KeyError(f"no script {name!r} in common/catalog.py (known: {', '.join(names())})")
