"""The script catalog (common/catalog.py): every script has a row, and a sixth script registered
by one row goes through the seed study and the report with no other change."""
import dataclasses
import importlib
import json
import shutil
from pathlib import Path

import pytest

from common import catalog, report, run, seeds
from common.claims import committed

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.quick
def test_every_script_has_one_row_and_each_row_a_script():
    files = sorted(p.stem for p in REPO.glob("*.py"))
    assert sorted(catalog.names()) == files
    for s in catalog.SCRIPTS:
        assert catalog.get(s.short) is s and s.seeds >= 3
        assert hasattr(importlib.import_module(s.name), "Config")
    with pytest.raises(KeyError, match="known: vae_keras"):
        catalog.get("sixth")


def test_a_sixth_script_needs_one_file_and_one_row(tmp_path, monkeypatch):
    """tests/fixtures/tiny.py stands for a new script: its file in a repository root and its row
    in the catalog. The seed study runs its seeds and summarises them; the report's table gets
    its row with the seeds' spread."""
    shutil.copy(REPO / "tests" / "fixtures" / "tiny.py", tmp_path / "tiny.py")
    shutil.copytree(REPO / "common", tmp_path / "common")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(run, "REPO", tmp_path)
    monkeypatch.setattr(seeds, "REPO", tmp_path)
    monkeypatch.setattr(report, "REPO", tmp_path)
    monkeypatch.setattr(committed, "REPO", tmp_path)
    row = catalog.Script("tiny", "tiny", "https://example.org/a-sixth-post", "Tiny AE", seeds=2,
                         extra_seed_flags=("--subset", "300"))
    monkeypatch.setattr(catalog, "SCRIPTS", (*catalog.SCRIPTS, row))
    summary = seeds.main(["tiny", "--results", str(tmp_path / "results"), "--", "--epochs", "1"])
    assert summary["seeds"] == [0, 1]
    assert json.loads((tmp_path / "results" / "tiny" / "seeds" / "1" / "config.json").read_text())[
        "subset"] == 300  # the row's flags for the extra seeds
    assert (tmp_path / "results" / "tiny" / "loss_seeds.png").is_file()
    line = next(l for l in report.table().splitlines() if l.startswith("| Tiny AE"))
    spread = summary["metrics"]["test_loss"]
    assert f"| Tiny AE, `tiny.py` | 1 | 2 | {report.fmt(spread['values'][0], 2)}<br>" in line


@pytest.mark.quick
def test_the_original_scripts_reruns_are_read_from_their_logs(tmp_path, monkeypatch):
    """benchmarks/original.py's logs give the table its reference figures: each rerun's test loss
    after the catalog's epochs that every rerun reached, and what the reruns were."""
    folder = tmp_path / "nice"
    folder.mkdir()
    for run_name, losses in (("run-1", [-1000.0, -1500.0, -1700.0]), ("run-2", [-990.0, -1490.0])):
        rows = [f"{e},{-l / 10},{l},50.0" for e, l in enumerate(losses)]
        (folder / f"{run_name}.csv").write_text("\n".join(["epoch,loss,val_loss,seconds", *rows]))
        (folder / f"{run_name}.json").write_text(json.dumps({"tensorflow": "2.15.1"}))
    nice = catalog.get("nice")
    monkeypatch.setattr(catalog, "SCRIPTS", (dataclasses.replace(nice, original_epochs=(2, 3)),))
    monkeypatch.setattr(catalog, "ORIGINAL_RUNS", tmp_path)
    losses, what = catalog.original_losses("nice")
    assert losses == {2: [-1500.0, -1490.0]}  # epoch 3: run-2 stopped before it
    assert what == "the original Keras 2 script under TensorFlow 2.15.1, 2 unseeded runs"
    assert report.references()[-1] == ("nice", "test loss after epoch 2", 2, "val_loss", what,
                                       [-1500.0, -1490.0], True)
    assert catalog.original_losses("vae_keras_cnn_gs") == ({}, None)
