"""A script's settings (common/config.py): defaults and overrides, bounds and bad values in one
line, --help, and evaluation-only settings declared on their fields; every number flag of every
script has an upper bound, flags within their bounds that do not fit together exit 2, an empty
--out-dir is refused, and a bad flag at a script's command line is one line on stderr with
nothing before it."""
import dataclasses
import importlib
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import nice
import vae_keras
import vae_keras_cnn_gs
from common import catalog, run

REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Toy(run.RunConfig):
    rate: float = run.arg(0.5, "a rate in (0, 1]", gt=0.0, le=1.0)
    mode: str = run.arg("a", "a mode", choices=["a", "b"])

    def validate(self):
        if self.mode == "b" and self.rate > 0.9:
            raise ValueError("--rate must be <= 0.9 in mode b")


@dataclasses.dataclass(frozen=True)
class ToyWithEvaluation(Toy):
    probes: int = run.arg(4, "draws for an evaluation-only figure", ge=1, le=9, evaluation=True)


@pytest.mark.quick
def test_an_evaluation_flag_is_declared_on_its_field_alone():
    """A new evaluation-only setting needs nothing in common/: resume ignores it (with the
    epochs), --load ignores it (not the epochs), the training settings leave it out, and --help
    says so."""
    assert run.not_training(ToyWithEvaluation) == (*run.RUN_ONLY, "epochs", "probes")
    assert run.load_may_change(ToyWithEvaluation) == (*run.RUN_ONLY, "probes")
    cfg = run.parse_config(ToyWithEvaluation, ["--probes", "7"])
    assert "probes" not in run.settings(cfg) and "rate" in run.settings(cfg)
    saved = dataclasses.asdict(run.parse_config(ToyWithEvaluation, ["--epochs", "9"]))
    assert run.changed_settings(saved, cfg) == []
    assert run.changed_settings(saved, cfg, run.load_may_change(ToyWithEvaluation)) == [
        ("--epochs", 9, 50)]
    with pytest.raises(SystemExit):
        run.parse_config(ToyWithEvaluation, ["--help"])


@pytest.mark.quick
def test_common_names_no_field_of_a_particular_script():
    """The scripts' own settings are theirs: the run's plumbing names none (the seed study reads
    metrics.json keys, one of which, is_images, shares a setting's name)."""
    import importlib

    from common import catalog
    base = {f.name for f in dataclasses.fields(run.RunConfig)}
    own = set()
    for s in catalog.SCRIPTS:
        own |= {f.name for f in dataclasses.fields(importlib.import_module(s.name).Config)} - base
    for module in ("run.py", "journal.py", "catalog.py"):
        text = (REPO / "common" / module).read_text()
        assert not [n for n in own if f'"{n}"' in text], module


@pytest.mark.quick
def test_defaults_and_overrides():
    cfg = run.parse_config(Toy, [])
    assert cfg == Toy()
    cfg = run.parse_config(Toy, ["--epochs", "3", "--batch-size", "7", "--rate", "1", "--load"])
    assert (cfg.epochs, cfg.batch_size, cfg.rate, cfg.load) == (3, 7, 1.0, True)


@pytest.mark.quick
@pytest.mark.parametrize("argv, needle", [
    (["--epochs", "-1"], "--epochs must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--rate", "0"], "--rate must be > 0.0"),
    (["--rate", "nan"], "--rate must be finite"),
    (["--mode", "c"], "invalid choice"),
    (["--epochs", "two"], "invalid int value"),
    (["--bogus"], "unrecognized arguments"),
    (["--mode", "b", "--rate", "1"], "--rate must be <= 0.9 in mode b"),
])
def test_bad_values_exit_2_with_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        run.parse_config(Toy, argv, prog="toy.py")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and err.startswith("toy.py: error:")


@pytest.mark.quick
def test_help_documents_every_field(capsys):
    with pytest.raises(SystemExit) as e:
        run.parse_config(Toy, ["--help"], prog="toy.py")
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(Toy):
        assert "--" + f.name.replace("_", "-") in text
        assert " ".join(f.metadata["help"].split()) in text


SCRIPTS = [importlib.import_module(s.name) for s in catalog.SCRIPTS]


@pytest.mark.quick
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__)
def test_every_number_flag_has_an_upper_bound_that_exits_2_in_one_line(script, capsys):
    hints = typing.get_type_hints(script.Config)
    numeric = [f for f in dataclasses.fields(script.Config) if hints[f.name] in (int, float)]
    assert numeric and all("le" in f.metadata for f in numeric), \
        [f.name for f in numeric if "le" not in f.metadata]
    for f in numeric:
        flag = "--" + f.name.replace("_", "-")
        for value in (f.metadata["le"] * 10 + 1, 1e20):
            text = str(hints[f.name](value))
            with pytest.raises(SystemExit) as stop:
                run.parse_config(script.Config, [flag, text], prog=script.__name__)
            assert stop.value.code == 2, (flag, text)
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"{flag} must be <=" in err, err


@pytest.mark.quick
def test_flags_within_bounds_that_do_not_fit_together_exit_2():
    with pytest.raises(SystemExit) as stop:
        run.parse_config(nice.Config, ["--hidden-dim", "8192", "--hidden-layers", "32"])
    assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:
        run.parse_config(vae_keras_cnn_gs.Config, ["--num-latents", "1024",
                                                   "--classes-per-latent", "1024"])
    assert stop.value.code == 2


# flags that would silently do something else
@pytest.mark.quick
def test_an_empty_out_dir_is_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        run.parse_config(vae_keras.Config, ["--out-dir", ""])
    assert stop.value.code == 2 and "--out-dir must name a folder" in capsys.readouterr().err


# errors are the message alone
def test_a_bad_flag_is_one_line_on_stderr_with_nothing_before_it():
    done = subprocess.run([sys.executable, "vae_keras.py", "--epochs", "0"], cwd=run.REPO,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--epochs must be >= 1" in done.stderr
