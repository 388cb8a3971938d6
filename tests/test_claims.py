"""The claims table (common/claims.py): verdicts from the committed runs, by fixed rules."""
import json

import pytest

from common import claims, run


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "REPO", tmp_path)
    return tmp_path


def publish(repo, folder, history=None, **metrics):
    path = repo / "results" / folder
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(metrics))
    names = ["metrics.json"]
    if history is not None:
        rows = "".join(f"{e},0,{v}\n" for e, v in enumerate(history))
        (path / "history.csv").write_text("epoch,loss,val_loss\n" + rows)
        names.append("history.csv")
    run.adopt(path, names)


def seed_study(repo, folder, histories, **per_seed):
    runs = {}
    for seed, h in enumerate(histories):
        sub = folder if seed == 0 else f"{folder}/seeds/{seed}"
        publish(repo, sub, h, **{k: v[seed] for k, v in per_seed.items()})
        runs[str(seed)] = f"results/{sub}"
    (repo / "results" / folder / "seeds.json").write_text(json.dumps({"runs": runs}))


def row(claim_start):
    return next(l for l in claims.table().splitlines() if l.startswith(f"| {claim_start}"))


def test_missing_runs_say_so_and_a_run_without_the_metric_counts_as_missing(repo):
    assert row("Without the KL term").endswith("| not run yet (results/vae_keras is missing). | — |")
    publish(repo, "vae_keras", test_nll=100.0)  # from before latent_empty_cells existed
    publish(repo, "claims/vae_no_kl", latent_empty_cells=0.3)
    assert "not run yet (latent_empty_cells of results/vae_keras is missing)" in row("Without")


@pytest.mark.parametrize("ae, vae, verdict", [(0.30, 0.10, "supported"), (0.12, 0.10, "mixed"),
                                              (0.08, 0.10, "not supported")])
def test_holes_rule(repo, ae, vae, verdict):
    extra = {"latent_code_sd": [1.0, 1.0], "latent_mean_sigma": 0.1}
    publish(repo, "vae_keras", latent_empty_cells=vae, **extra)
    publish(repo, "claims/vae_no_kl", latent_empty_cells=ae, **extra)
    line = row("Without the KL term")
    assert line.endswith(f"| {verdict} |") and "](claims/vae_no_kl/latent_scatter.png)" in line


@pytest.mark.parametrize("nll, verdict", [(101.0, "supported"), (102.5, "mixed"),
                                          (110.0, "not supported")])
def test_close_to_rule_uses_the_seed_spread(repo, nll, verdict):
    seed_study(repo, "vae_keras", [None] * 3, test_nll=[100.0, 100.5, 101.0],
               latent_empty_cells=[0.1] * 3, latent_mean_sigma=[0.1] * 3)
    publish(repo, "claims/vae_eq3", test_nll=nll, latent_empty_cells=0.1, latent_mean_sigma=0.01)
    assert row("The simple regulariser").endswith(f"| {verdict} |")


def test_noise_kinds_against_the_blog_noise_within_ten_epochs(repo):
    # the default seeds' first 10 epochs: best -1900, -1905, -1910; later epochs do not count
    seed_study(repo, "nice", [[-1800 - 10 * e - s for e in range(10)] + [-3000]
                              for s in (10, 15, 20)], best_epoch=[11, 11, 11])
    for folder, best in (("positive", -1903.0), ("centred", -1906.0), ("gaussian", -1950.0)):
        publish(repo, f"claims/nice_{folder}/nice", [0.0] * 9 + [best])
    line = row("Noise on")
    assert "[−0.01, 0] (the blog's) −1905.0 ± 5.0 (3 seeds)" in line
    assert line.endswith("| mixed |")  # the Gaussian run lies 9 sd away
