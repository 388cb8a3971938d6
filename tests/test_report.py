"""common/report.py: the results tables and the comparison from published runs, one metric
schema, the generated blocks of both READMEs (current, and only they rewritten) and their links."""
import json
import re
import subprocess

import pytest

from common import catalog, report, run


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REPO", tmp_path)
    (tmp_path / "results").mkdir()
    return tmp_path


def write_metrics(repo, folder, **metrics):
    path = repo / "results" / folder / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"epochs": 30, "seconds_per_epoch": 12.34, "train_seconds": 370.2,
                                **metrics}))
    run.adopt(path.parent, ["metrics.json"])  # as a finished run publishes it


@pytest.mark.quick
def test_a_metrics_file_changed_after_publishing_is_refused(repo):
    write_metrics(repo, "vae_keras", test_loss=151.8, test_neg_elbo=151.8, test_nll=148.43)
    path = repo / "results" / "vae_keras" / "metrics.json"
    path.write_text(path.read_text().replace("148.43", "140.00"))
    with pytest.raises(SystemExit) as stop:
        report.main([])
    assert str(path) in str(stop.value.code) and "SHA-256 differs" in str(stop.value.code)


@pytest.mark.quick
def test_rows_come_from_metrics_and_skip_missing_runs(repo):
    write_metrics(repo, "vae_vmf_keras", test_loss=151.1234, test_neg_elbo=154.38,
                  test_nll=139.4622, eval_seconds=61.0)
    write_metrics(repo, "nice", test_loss=-1932.1952, final_val_loss=-1913.0,
                  test_neg_log_density=-1211.747, test_dequantised_nll=3120.512,
                  test_dequantised_bits_per_dim=5.74229)
    # a NICE run from before the dequantised bound: its lattice figures are not shown
    write_metrics(repo, "nice_precision/float32", test_loss=-1932.0, test_nll=-1211.5,
                  test_bits_per_dim=5.77)
    lines = report.table().splitlines()
    # header, rule and the three runs present (the others are skipped), then the note on NICE
    assert len(lines) == 7 and lines[6] == report.NICE_EPOCH
    assert lines[2] == ("| vMF-VAE, `vae_vmf_keras.py` | 30 | 1 | 151.12 | none given | 154.4 | "
                        "139.46 | — | 12.3 | 6.2 + 1.0 |")
    # NICE reports the loss of the weights it kept, with a true minus sign
    assert lines[3].startswith("| NICE, `nice.py` | 30 | 1 | −1932.20 | about −2200")
    assert lines[3].endswith("| — | 3120.51<br>(plain, bins above) | 5.742 | 12.3 | 6.2 + — |")
    assert lines[4].endswith("| — | — | — | 12.3 | 6.2 + — |")


@pytest.mark.quick
def test_write_replaces_only_the_marked_table(repo, capsys):
    write_metrics(repo, "vae_keras", test_loss=151.8, test_neg_elbo=151.8, test_nll=148.43)
    readme = repo / "README.md"
    readme.write_text(f"intro\n{report.START}\nstale table\n{report.END}\nafter\n")
    report.main(["--write"])
    text = readme.read_text()
    assert "stale table" not in text
    assert text.startswith(f"intro\n{report.START}\n| model |") and text.endswith(f"{report.END}\nafter\n")
    assert "| Gaussian VAE | 30 | 1 | 151.80 |" in text  # README.md's short table
    assert "| Gaussian VAE, `vae_keras.py` | 30 | 1 | 151.80 |" in capsys.readouterr().out


@pytest.mark.quick
def test_committed_metrics_use_one_schema():
    """Every results/**/metrics.json names its quantities from report.METRICS, and holds the
    keys every model reports."""
    files = sorted((report.REPO / "results").glob("**/metrics.json"))
    assert len(files) >= 4
    common = {"epochs", "final_loss", "final_val_loss", "best_val_loss", "best_epoch",
              "seconds_per_epoch", "train_seconds", "test_loss", "trainable_params"}
    for path in files:
        keys = set(json.loads(path.read_text()))
        assert keys <= set(report.METRICS), (path, keys - set(report.METRICS))
        assert common <= keys, (path, common - keys)
        assert keys & {"test_nll", "test_dequantised_nll"}, path


@pytest.mark.quick
def test_a_seed_study_adds_mean_and_sd_below_the_default_run(repo):
    write_metrics(repo, "vae_keras", test_loss=151.8, test_neg_elbo=151.8, test_nll=148.43)
    seeds = [0, 1, 2, 3, 4]
    spread = {"test_loss": {"mean": 152.25, "sd": 0.456, "seeds": seeds,
                            "values": [151.8, 152.0, 152.2, 152.35, 152.9]},
              "test_nll": {"mean": 148.9, "sd": 0.3, "seeds": seeds,
                           "values": [148.43, 148.9, 149.0, 149.1, 149.07]}}
    path = repo / "results" / "vae_keras" / "seeds.json"
    path.write_text(json.dumps({"seeds": seeds, "metrics": spread}))
    line = report.table().splitlines()[2]
    assert line.startswith("| Gaussian VAE, `vae_keras.py` | 30 | 5 | 151.80<br>152.25 ± 0.46 |")
    # no spread given though the study has 5 seeds: the run's value, marked as seed 0's alone
    assert "| 151.8 (seed 0 only) | 148.43<br>148.90 ± 0.30 |" in line
    # estimates over different numbers of test images are marked, with a note below the table
    path.write_text(json.dumps({"seeds": seeds, "metrics": spread,
                                "is_images": {"0": 10000, "1": 2000}}))
    lines = report.table().splitlines()
    assert "148.43<br>148.90 ± 0.30† |" in lines[2] and lines[-1].startswith("† over seeds")
    # a study whose seed 0 is not the default run in the table is stale: its spread is left out
    spread["test_loss"]["values"][0] = 150.0
    path.write_text(json.dumps({"seeds": seeds, "metrics": spread}))
    assert "| 5 | 151.80 | none given |" in report.table().splitlines()[2]


@pytest.mark.quick
def test_comparison_says_which_references_lie_within_our_seeds(repo, monkeypatch):
    runs = {}
    for seed, loss in enumerate([-1950.0, -1940.0, -1930.0]):
        folder = repo / "results" / "nice" / "seeds" / str(seed)
        folder.mkdir(parents=True)
        rows = "".join(f"{e},0,{loss + 15 - e}\n" for e in range(16))
        (folder / "history.csv").write_text("epoch,loss,val_loss\n" + rows)
        runs[str(seed)] = str(folder.relative_to(repo))
    best = {"values": [-1950.0, -1940.0, -1930.0]}
    originals = repo / "results" / "original"
    (originals / "nice").mkdir(parents=True)
    for name, at_15 in (("run-1", -1949.1), ("run-2", -1944.3)):  # two reruns of the original
        rows = "".join(f"{e},0,{at_15 if e == 14 else -1000.0},60\n" for e in range(16))
        (originals / "nice" / f"{name}.csv").write_text("epoch,loss,val_loss,seconds\n" + rows)
        (originals / "nice" / f"{name}.json").write_text(json.dumps({"tensorflow": "2.15.1"}))
    monkeypatch.setattr(catalog, "ORIGINAL_RUNS", originals)
    (repo / "results" / "nice" / "seeds.json").write_text(
        json.dumps({"seeds": [0, 1, 2], "runs": runs, "metrics": {"best_val_loss": best}}))
    lines = {l.split(" | ")[0]: l for l in report.comparison().splitlines()[2:]}
    # best test loss: -1940 ± 10; the blog's -2200 is 26 sd away
    assert lines["| nice: best test loss"].endswith("| −2200.0 | −1940.0 ± 10.0 (−1950.0 to "
                                                   "−1930.0), 3 seeds | no: 26.0 sd from our mean |")
    # after epoch 15 the seeds read -1949, -1939, -1929: -1949.1 lies outside, -1944.3 inside
    line = lines["| nice: test loss after epoch 15"]
    assert line.endswith("| no: 1.0 sd from our mean; yes |")
    assert "| the original Keras 2 script under TensorFlow 2.15.1, 2 unseeded runs |" in line


@pytest.mark.quick
def test_benchmark_summary_keeps_each_sittings_command_backend_line_and_last_line(tmp_path):
    folder = tmp_path / "results" / "benchmarks"
    folder.mkdir(parents=True)
    (folder / "epoch_time.txt").write_text(
        "$ python benchmarks/epoch_time.py --jax vae\nmachine: test cpu\n"
        "vae: plain 2.00 s/epoch, defaults 1.00 s/epoch\njax/tensorflow: vae=0.50x\nvae=2.00x\n")
    (folder / "other.txt").write_text("no machine here\nkey=1\n")
    (folder / "roofline.txt").write_text(  # two sittings, on two backends
        "$ python benchmarks/roofline.py --backend torch\nmachine: cpu; backend: torch\n"
        "vae: step 9 ms\nvae=0.08 (torch)\n\n"
        "$ python benchmarks/roofline.py\nmachine: cpu; backend: tensorflow\n"
        "vae: step 4 ms\nvae=0.16 (tensorflow)\n")
    assert report.benchmarks(folder) == (
        "results/benchmarks/epoch_time.txt (machine: test cpu)\n"
        "    $ python benchmarks/epoch_time.py --jax vae\n"
        "    jax/tensorflow: vae=0.50x\n    vae=2.00x\n"
        "results/benchmarks/other.txt (machine: not recorded)\n    key=1\n"
        "results/benchmarks/roofline.txt (machine: cpu; backend: torch)\n"
        "    $ python benchmarks/roofline.py --backend torch\n    vae=0.08 (torch)\n"
        "    $ python benchmarks/roofline.py\n    machine: cpu; backend: tensorflow\n"
        "    vae=0.16 (tensorflow)")


@pytest.mark.quick
def test_comparison_takes_the_best_loss_within_the_reference_epochs(repo):
    runs = {}
    for seed, start in enumerate([-2000.0, -2010.0, -2020.0]):
        folder = repo / "results" / "claims" / "noiseless" / "nice" / "seeds" / str(seed)
        folder.mkdir(parents=True)
        # falls 10 nats an epoch for 20 epochs, then diverges: the best counts only up to epoch 20
        losses = [start - 10 * e for e in range(20)] + [5000.0] * 5
        (folder / "history.csv").write_text(
            "epoch,loss,val_loss\n" + "".join(f"{e},0,{v}\n" for e, v in enumerate(losses)))
        runs[str(seed)] = str(folder.relative_to(repo))
    (repo / "results" / "claims" / "noiseless" / "nice" / "seeds.json").write_text(
        json.dumps({"seeds": [0, 1, 2], "runs": runs, "metrics": {}}))
    line = next(l for l in report.comparison().splitlines() if "within 20 epochs, trained" in l)
    assert "−2200.0 | −2200.0 ± 10.0 (−2210.0 to −2190.0), 3 seeds | yes |" in line


@pytest.mark.quick
def test_check_names_a_document_whose_generated_block_is_stale(repo):
    write_metrics(repo, "vae_keras", test_loss=151.8, test_neg_elbo=151.8, test_nll=148.43)
    for name in ("README.md", "results/README.md"):
        (repo / name).write_text(f"intro\n{report.START}\nstale\n{report.END}\n")
    with pytest.raises(SystemExit) as stop:
        report.main(["--check"])
    assert "README.md, results/README.md" in str(stop.value.code)
    report.main(["--write"])
    report.main(["--check"])  # current now: no exit
    # README.md gets the short table, results/README.md the full one
    assert "| Gaussian VAE | 30 | 1 | 151.80 |" in (repo / "README.md").read_text()
    assert "| Gaussian VAE, `vae_keras.py` | 30 | 1 | 151.80 |" in \
        (repo / "results" / "README.md").read_text()


def uncommitted_results():
    """Files under results/ that differ from the last commit (a run made since), or None
    outside a git checkout."""
    try:
        changed = subprocess.run(["git", "status", "--porcelain", "--", "results"],
                                 cwd=report.REPO, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return changed.stdout.split("\n")[0] if changed.returncode == 0 else None


@pytest.mark.quick
def test_committed_generated_blocks_are_current():
    """README.md and results/README.md hold what `python -m common.report --write` writes.

    After a run of one's own (say `python vae_keras.py`) the tables describe the committed runs,
    not the new one: the check is for the committed state and skips, naming the first change."""
    changed = uncommitted_results()
    if changed:
        pytest.skip(f"results/ differs from the last commit ({changed.strip()}): the READMEs "
                    "describe the committed runs; `python -m common.report --write` updates them")
    stale = [name for name, (old, new) in report.rendered().items() if old != new]
    assert not stale, f"run python -m common.report --write: {stale}"


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def links(text):
    """The targets of the Markdown links and images outside code."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)


@pytest.mark.quick
@pytest.mark.parametrize("name", ["README.md", "results/README.md"])
def test_every_image_and_relative_link_resolves(name):
    doc = report.REPO / name
    targets = [t for t in links(doc.read_text()) if not re.match(r"[a-z]+:", t)]
    assert len(targets) >= 10
    for target in targets:
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.exists(), f"{name}: {target} does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)
            assert anchor in {slug(h) for h in headings}, f"{name}: no heading for {target}"


@pytest.mark.quick
def test_the_link_check_sees_a_broken_link_and_anchor():
    assert links("![a](x.png) [b](y.md#z) `[c](code.md)`\n```\n[d](e.md)\n```") == ["x.png",
                                                                                     "y.md#z"]
    assert slug("The posts' claims") == "the-posts-claims"
    assert slug("How a script is built, and what a run writes") == \
        "how-a-script-is-built-and-what-a-run-writes"
