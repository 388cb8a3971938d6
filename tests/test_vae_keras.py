"""vae_keras.py: the KL and the sampling layer, the regularisers and reconstructions of the
claims, the latent metrics, the parameter count, the importance-sampled NLL, and a short
end-to-end run killed and resumed."""
import json

import keras
import numpy as np
import pytest

import vae_keras
from common import evaluation, run
from simulate import per_image

QUICK = ["--subset", "2000", "--epochs", "2", "--is-images", "50", "--is-samples", "100"]


@pytest.mark.quick
def test_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(0)
    z_mean = np.array([[0.3, -1.2]], "float32")
    z_log_var = np.array([[-0.7, 0.4]], "float32")
    kl = float(vae_keras.gaussian_kl(z_mean, z_log_var)[0])
    std = np.exp(z_log_var / 2)
    z = z_mean + std * rng.standard_normal((400_000, 2))
    log_q = np.sum(-0.5 * ((z - z_mean) / std) ** 2 - np.log(std), axis=1)
    log_p = np.sum(-0.5 * z**2, axis=1)
    mc = log_q - log_p
    assert abs(mc.mean() - kl) < 4 * mc.std() / np.sqrt(len(mc))


@pytest.mark.quick
@pytest.mark.backends
def test_sampling_layer_mean_and_variance():
    layer = vae_keras.Sampling(seed=1)
    n = 200_000
    z_mean = np.tile(np.array([[1.5, -2.0]], "float32"), (n, 1))
    z_log_var = np.tile(np.array([[np.log(0.25), np.log(4.0)]], "float32"), (n, 1))
    z = np.asarray(layer([z_mean, z_log_var]))
    np.testing.assert_allclose(z.mean(0), [1.5, -2.0], atol=4 * 2 / np.sqrt(n))
    np.testing.assert_allclose(z.var(0), [0.25, 4.0], rtol=0.02)
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(again, vae_keras.Sampling) and again.seed == 1


@pytest.mark.quick
def test_eq3_regulariser_and_none():
    z_mean = np.array([[0.3, -1.2], [2.0, 0.0]], "float32")
    z_log_var = np.array([[-0.7, 0.4], [0.0, 1.0]], "float32")
    sigma = np.exp(z_log_var / 2)
    np.testing.assert_allclose(np.asarray(vae_keras.regulariser_term(z_mean, z_log_var, "eq3")),
                               np.sum(z_mean**2 + (sigma - 1) ** 2, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(vae_keras.regulariser_term(z_mean, z_log_var, "none")),
                                  [0, 0])
    np.testing.assert_allclose(np.asarray(vae_keras.regulariser_term(z_mean, z_log_var, "kl")),
                               np.asarray(vae_keras.gaussian_kl(z_mean, z_log_var)))


@pytest.mark.quick
def test_squared_error_reconstruction():
    rng = np.random.default_rng(1)
    x = rng.random((3, 784)).astype("float32")
    logits = rng.normal(size=(3, 784)).astype("float32")
    mean = 1 / (1 + np.exp(-logits.astype(np.float64)))
    np.testing.assert_allclose(np.asarray(evaluation.reconstruction_loss(x, logits, "mse")),
                               np.sum((x - mean) ** 2, axis=1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(evaluation.reconstruction_loss(x, logits, "bce")),
                               -np.asarray(evaluation.bernoulli_log_likelihood(x, logits)))


@pytest.mark.quick
def test_empty_cells_sees_holes():
    rng = np.random.default_rng(2)
    assert vae_keras.empty_cells(rng.standard_normal((10000, 2))) < 0.05
    clusters = rng.choice([-3.0, 3.0], size=(10000, 2)) + 0.1 * rng.standard_normal((10000, 2))
    assert vae_keras.empty_cells(clusters) > 0.8


@pytest.mark.quick
def test_parameter_count():
    vae, _, _ = vae_keras.build_models(vae_keras.Config())
    assert vae.count_params() == 404_244


def test_importance_sampling_bounds_on_a_trained_toy_model():
    keras.utils.set_random_seed(0)
    cfg = vae_keras.Config(subset=2000)
    (x_train, _), (x_test, _) = run.load_data(cfg)
    x_train, x = x_train.reshape(-1, 784), x_test[:64].reshape(-1, 784)
    vae, encoder, decoder = vae_keras.build_models(cfg)
    vae.fit(x_train, epochs=2, batch_size=100, verbose=0)
    rng = np.random.default_rng(0)
    decoder_logits = evaluation.logits_model(decoder)
    lw = vae_keras.log_importance_weights(encoder, decoder_logits, x, 2000, rng)
    # E_q[log w] is the ELBO, so its mean must agree with the training loss (BCE + closed-form KL)
    neg_elbo = -lw.mean(1)
    loss_estimate = np.mean([float(vae.evaluate(x, verbose=0, batch_size=64)) for _ in range(20)])
    assert abs(neg_elbo.mean() - loss_estimate) < 1.0
    nll = evaluation.importance_sampled_nll(
        lambda xb, k: vae_keras.log_importance_weights(encoder, decoder_logits, xb, k, rng),
        x, 500)[0]["test_nll"]
    assert nll <= neg_elbo.mean()
    assert nll > neg_elbo.mean() - 30  # a sane gap, not a broken weight


@pytest.mark.backends
def test_end_to_end_quick_run_resume_and_load(tmp_path, monkeypatch, killed_then_resumed):
    out = tmp_path / "run"
    argv = QUICK + ["--out-dir", str(out)]
    metrics = killed_then_resumed(vae_keras.main, argv, out)
    for name in ("latent_scatter.png", "manifold.png", "loss.png", "metrics.json", "history.csv",
                 "config.json", "model.weights.h5"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert metrics["epochs"] == 2 and np.isfinite(metrics["test_nll"])
    assert metrics["test_loss"] == metrics["test_neg_elbo"] == metrics["final_val_loss"]
    per_image(out, metrics, {"nll": "test_nll", "neg_elbo_sampled": "test_neg_elbo_sampled"})
    losses = run.read_history(out / "history.csv")["loss"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
    assert json.loads((out / "config.json").read_text())["epochs"] == 2

    for name in ("latent_scatter.png", "manifold.png", "loss.png"):
        (out / name).unlink()
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: pytest.fail("--load must not train"))
    again = vae_keras.main(argv + ["--load"])
    assert (out / "manifold.png").is_file() and (out / "latent_scatter.png").is_file()
    assert again["final_val_loss"] == metrics["final_val_loss"]


def test_nan_stop_works_with_the_scripts_compiled_step(tmp_path):
    """XLA and 20 steps per call: a NaN in the data still stops training with the message."""
    cfg = vae_keras.Config(epochs=2)
    vae, _, _ = vae_keras.build_models(cfg)
    assert vae.steps_per_execution == 20
    x = np.random.default_rng(0).random((4000, 784)).astype("float32")
    x[2345, 17] = np.nan
    with pytest.raises(SystemExit, match="loss became nan"):
        run.train(vae, cfg, tmp_path, x)
    assert not (tmp_path / "history.csv").exists()
