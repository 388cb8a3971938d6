"""vae_vmf_keras.py: the vMF normaliser, KL and CDF against quadrature and closed forms, the
table of w samples (exact in distribution, seeded, small), the sampling layer, saving, the
parameter count, the NLL, and a short end-to-end run killed and resumed."""
import json
import math
import subprocess
import sys
import tracemalloc
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import gammaln

import vae_vmf_keras as vmf
from vmf_exact import exact_cdf, ks_distance
from common import evaluation, kernels, run
from simulate import per_image

REPO = Path(__file__).resolve().parent.parent
QUICK = ["--subset", "2000", "--epochs", "2", "--is-images", "50", "--is-samples", "100"]
DIMS = (2, 3, 4, 16, 128)
KAPPAS = (0.0, 1.0, 20.0, 1000.0, 1e5)
FAST = {(2, 0.0), (2, 1e5), (4, 20.0), (3, 1.0), (128, 1000.0)}  # the rest of the grid is slow
GRID = [pytest.param(d, k, marks=() if (d, k) in FAST else pytest.mark.slow)
        for d in DIMS for k in KAPPAS]


def scaled_integral(kappa, dims, g=lambda w: 1.0):
    """(value, log_scale) with value * exp(log_scale) = int g(w) exp(kappa w) (1 - w^2)^a dw.

    Adaptive quadrature over (-1, 1), a = (d - 3)/2. For d = 2 quad's algebraic weight takes the
    factor (1 - w^2)^(-1/2); for d >= 4 the integrand is scaled by its value at the mode, which is
    given to quad as a break point.
    """
    a = (dims - 3) / 2
    opts = dict(epsabs=1e-13, epsrel=1e-12, limit=200)  # the scaled integrands are O(1)
    if a < 0:
        return integrate.quad(lambda w: g(w) * math.exp(kappa * (w - 1)), -1, 1, weight="alg",
                              wvar=(a, a), **opts)[0], kappa
    if a == 0:
        return integrate.quad(lambda w: g(w) * math.exp(kappa * (w - 1)), -1, 1, **opts)[0], kappa
    mode = kappa / (a + math.hypot(a, kappa))  # where kappa (1 - w^2) = 2 a w
    top = kappa * mode + a * math.log1p(-mode * mode)

    def scaled(w):
        return g(w) * math.exp(kappa * w + a * math.log1p(-w * w) - top) if abs(w) < 1 else 0.0

    return integrate.quad(scaled, -1, 1, points=[mode], **opts)[0], top


# ---------------------------------------------------------------- constants


@pytest.mark.quick
def test_kl_constant_and_mean_cosine_at_the_blogs_setting():
    assert abs(vmf.vmf_kl(20.0, 4) - 3.2584) < 5e-5
    assert abs(vmf.mean_cosine(20.0, 4) - 0.925988) < 1e-6


@pytest.mark.quick
@pytest.mark.parametrize("dims", [2, 3, 4, 16, 128])
@pytest.mark.parametrize("kappa", [0.0, 1e-3, 1.0, 20.0, 1000.0])
def test_normaliser_and_mean_match_quadrature(dims, kappa):
    # 1 / C_d(kappa) = |S^(d-2)| int exp(kappa w) (1 - w^2)^((d-3)/2) dw
    log_sphere = math.log(2) + (dims - 1) / 2 * math.log(math.pi) - gammaln((dims - 1) / 2)
    mass, log_scale = scaled_integral(kappa, dims)
    expected = -(log_sphere + math.log(mass) + log_scale)
    assert abs(vmf.log_vmf_normaliser(kappa, dims) - expected) < 1e-9 * max(1, abs(expected))
    first, _ = scaled_integral(kappa, dims, lambda w: w)
    assert abs(vmf.mean_cosine(kappa, dims) - first / mass) < 1e-9


@pytest.mark.quick
@pytest.mark.parametrize("dims, kappa", [(4, 20.0), (16, 50.0), (2, 3.0)])
def test_kl_constant_matches_monte_carlo(dims, kappa):
    rng = np.random.default_rng(dims)
    n = 400_000
    mu = vmf.uniform_on_sphere(1, dims, rng)
    log_ratio = vmf.log_vmf_normaliser(kappa, dims) - vmf.log_vmf_normaliser(0.0, dims)
    kl = vmf.vmf_kl(kappa, dims)
    # E_q[log q(z|x) - log p(z)] with z from the sampler
    z = vmf.sample_vmf(np.repeat(mu, n, axis=0), kappa, rng)
    mc = kappa * (z @ mu[0]) + log_ratio
    assert abs(mc.mean() - kl) < 4 * mc.std() / math.sqrt(n)
    # the same expectation as E_p[(q/p) log(q/p)] with z uniform: no use of the vMF sampler
    r = np.exp(kappa * (vmf.uniform_on_sphere(n, dims, rng) @ mu[0]) + log_ratio)
    assert abs(r.mean() - 1) < 4 * r.std() / math.sqrt(n)  # q is normalised
    terms = r * np.log(r)
    assert abs(terms.mean() - kl) < 4 * terms.std() / math.sqrt(n)


# ---------------------------------------------------------------- the exact reference CDF


@pytest.mark.quick
@pytest.mark.parametrize("dims", [2, 3, 4, 16, 128])
def test_reference_cdf_matches_beta_at_kappa_zero(dims):
    w = np.linspace(-1, 1, 201)[1:-1]
    half = (dims - 1) / 2  # (w + 1)/2 ~ Beta((d-1)/2, (d-1)/2) when kappa = 0
    np.testing.assert_allclose(exact_cdf(0.0, dims, w), stats.beta.cdf((w + 1) / 2, half, half),
                               atol=1e-9)


@pytest.mark.quick
@pytest.mark.parametrize("kappa", [0.5, 20.0, 1000.0])
def test_reference_cdf_matches_closed_forms_for_d2_and_d3(kappa):
    w = np.sort(np.concatenate([np.linspace(-0.999, 0.999, 101), 1 - np.geomspace(1e-9, 1e-2, 30)]))
    # d = 3: density ~ exp(kappa w), F(w) = (e^{kappa w} - e^{-kappa}) / (e^{kappa} - e^{-kappa})
    f3 = np.exp(kappa * (w - 1)) * np.expm1(-kappa * (w + 1)) / np.expm1(-2 * kappa)
    np.testing.assert_allclose(exact_cdf(kappa, 3, w), f3, atol=1e-9)
    # d = 2: w = cos(theta) with theta von Mises; P(W <= w) = P(|theta| >= arccos w)
    if kappa <= 20:
        f2 = 2 * stats.vonmises.sf(np.arccos(w), kappa)
        np.testing.assert_allclose(exact_cdf(kappa, 2, w), f2, atol=1e-9)


# ---------------------------------------------------------------- the table


@pytest.mark.quick
@pytest.mark.parametrize("dims, kappa", [(d, k) for d in DIMS for k in KAPPAS])
def test_quantile_function_is_exact(dims, kappa):
    """F(Q(u)) = 1 - u (Q maps small u to w near 1), including the outermost cells.

    Exact to 1e-6 plus the probability within one float64 step of w: for d = 2 and large kappa
    a few draws in a million have 1 - w below 1.1e-16 and are stored as w = 1.
    """
    m = vmf.QUANTILE_CELLS
    edge = (np.arange(0, 100, 0.37) + 0.1) / m
    u = np.unique(np.concatenate([[0.0, 1e-12, 1.0], edge, 1 - edge, np.linspace(0, 1, 501),
                                  np.random.default_rng(0).random(300)]))
    w = vmf.w_quantile(u, kappa, dims)
    assert np.all(np.diff(w) <= 0)
    w, target = w[::-1], 1 - u[::-1]
    cdf = exact_cdf(kappa, dims, w)
    ulp = np.maximum(exact_cdf(kappa, dims, np.nextafter(w, 2)) - cdf,
                     cdf - exact_cdf(kappa, dims, np.nextafter(w, -2)))
    assert np.all(np.abs(cdf - target) < 1e-6 + ulp)
    assert np.max(np.abs(cdf - target)) < 2e-6


@pytest.mark.quick
@pytest.mark.backends
@pytest.mark.parametrize("dims, kappa", GRID)
def test_table_is_exact_in_distribution(dims, kappa):
    n = 10**6
    table = vmf.build_w_table(kappa, dims, n, seed=dims * 7 + KAPPAS.index(kappa))
    assert table.shape == (n,) and table.dtype == np.float64
    assert np.all(np.isfinite(table)) and np.all(np.abs(table) <= 1)
    _, ks_upper = ks_distance(table, kappa, dims)
    assert ks_upper < 2e-3
    assert abs(table.mean() - vmf.mean_cosine(kappa, dims)) < 4 * table.std() / math.sqrt(n)


@pytest.mark.quick
def test_table_is_reproducible_and_seeded():
    a = vmf.build_w_table(20, 4, 1000, seed=3)
    assert np.array_equal(a, vmf.build_w_table(20.0, 4, 1000, seed=3))
    assert not np.array_equal(a, vmf.build_w_table(20, 4, 1000, seed=4))
    assert vmf.build_w_table(20, 4, 1, seed=0).shape == (1,)


@pytest.mark.quick
def test_default_table_needs_little_memory():
    def build():
        vmf.w_quantile_grid.cache_clear()
        return vmf.build_w_table(20.0, 4, 10**6, seed=0)

    tracemalloc.start()
    try:
        table = build()
        extra = tracemalloc.get_traced_memory()[1] - table.nbytes
    finally:
        tracemalloc.stop()
    assert extra < 20e6


@pytest.mark.quick
@pytest.mark.parametrize("args, needle", [
    ((-1.0, 4, 10), "kappa must be a finite number >= 0"),
    ((float("nan"), 4, 10), "kappa must be a finite number >= 0"),
    ((float("inf"), 4, 10), "kappa must be a finite number >= 0"),
    (("20", 4, 10), "kappa must be a finite number >= 0"),
    ((20.0, 1, 10), "dims (the latent dimension) must be an integer >= 2"),
    ((20.0, 2.5, 10), "dims (the latent dimension) must be an integer >= 2"),
    ((20.0, 4, 0), "size (the table size) must be an integer >= 1"),
    ((20.0, 4, 1.5), "size (the table size) must be an integer >= 1"),
])
def test_bad_table_arguments_raise(args, needle):
    with pytest.raises(ValueError) as e:
        vmf.build_w_table(*args, seed=0)
    assert needle in str(e.value)


@pytest.mark.quick
@pytest.mark.parametrize("argv, needle", [
    (["--kappa", "-1"], "--kappa must be >= 0.0 (got -1.0)"),
    (["--kappa", "nan"], "--kappa must be finite"),
    (["--latent-dim", "1"], "--latent-dim must be >= 2 (got 1)"),
    (["--table-size", "0"], "--table-size must be >= 1 (got 0)"),
])
def test_cli_rejects_bad_values_with_status_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        vmf.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_script_cli_exits_2_without_traceback():
    done = subprocess.run([sys.executable, str(REPO / "vae_vmf_keras.py"), "--kappa", "inf"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "vae_vmf_keras.py: error: --kappa must be finite (got inf)" in done.stderr


# ---------------------------------------------------------------- the sampler


def unit_rows(n, d, seed):
    return vmf.uniform_on_sphere(n, d, np.random.default_rng(seed)).astype("float32")


@pytest.mark.quick
@pytest.mark.backends
@pytest.mark.parametrize("dims, kappa", [(4, 20.0), (2, 5.0), (16, 1000.0)])
def test_layer_parts_are_unit_orthogonal_and_from_the_table(dims, kappa):
    layer = vmf.VMFSampling(kappa, table_size=5000, seed=1)
    mu = unit_rows(20_000, dims, 0)
    z = np.asarray(layer(mu))
    w, nu = (np.asarray(a) for a in layer.sample_parts(mu))
    assert z.dtype == np.float32 and w.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(nu, axis=1), 1, atol=1e-12)
    assert np.max(np.abs(np.sum(nu * mu, axis=1))) < 1e-9  # mu is unit to float32 precision
    assert np.all(np.isin(w[:, 0], np.asarray(layer.w_table)))
    # the indices are uniform over the whole table (5000 entries, 20,000 draws)
    assert len(np.unique(w)) > 4000


@pytest.mark.quick
@pytest.mark.parametrize("sampler", ["layer", "numpy"])
@pytest.mark.parametrize("dims, kappa", [(4, 20.0), (3, 2.0), (128, 50.0)])
def test_mean_of_z_is_a_d_kappa_times_mu(sampler, dims, kappa):
    n = 200_000
    mu = np.tile(unit_rows(1, dims, dims), (n, 1))
    if sampler == "layer":
        z = np.asarray(vmf.VMFSampling(kappa, seed=2)(mu), np.float64)
    else:
        z = vmf.sample_vmf(mu.astype(np.float64), kappa, np.random.default_rng(2))
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    err = z.mean(0) - vmf.mean_cosine(kappa, dims) * mu[0]
    assert np.all(np.abs(err) < 4 * z.std(0) / math.sqrt(n))


@pytest.mark.quick
def test_kappa_zero_is_uniform_on_the_sphere():
    n, d = 100_000, 4
    mu = np.tile(unit_rows(1, d, 5), (n, 1))
    z = np.asarray(vmf.VMFSampling(0.0, seed=3)(mu), np.float64)
    other = np.linalg.qr(np.c_[mu[0], np.eye(d)[:, :3]])[0][:, 1]  # a direction orthogonal to mu
    for direction in (mu[0], other, np.eye(d)[0]):
        # each coordinate of a uniform point on S^(d-1) satisfies (c + 1)/2 ~ Beta((d-1)/2, (d-1)/2)
        c = z @ direction
        assert stats.kstest((c + 1) / 2, stats.beta((d - 1) / 2, (d - 1) / 2).cdf).pvalue > 1e-3
    np.testing.assert_allclose(np.cov(z.T), np.eye(d) / d, atol=0.005)


@pytest.mark.quick
def test_layer_round_trips_through_config_and_saving(tmp_path):
    layer = vmf.VMFSampling(7.5, table_size=1000, seed=4, name="z")
    model = keras.Sequential([keras.Input((5,)), layer])
    config = layer.get_config()
    assert (config["kappa"], config["table_size"], config["seed"]) == (7.5, 1000, 4)
    assert len(json.dumps(keras.layers.serialize(layer))) < 2000  # the table is not in the config
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(again, vmf.VMFSampling) and again.get_config() == config
    again.build((None, 5))
    assert np.array_equal(np.asarray(again.w_table), np.asarray(layer.w_table))

    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    restored = loaded.layers[-1]
    assert isinstance(restored, vmf.VMFSampling) and restored.get_config() == config
    assert np.array_equal(np.asarray(restored.w_table), vmf.build_w_table(7.5, 5, 1000, seed=4))
    z = np.asarray(loaded(unit_rows(64, 5, 6)))
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)


# ---------------------------------------------------------------- the model


@pytest.mark.quick
def test_parameter_count():
    vae, _, _ = vmf.build_models(vmf.Config())
    assert vae.count_params() == 404_756
    assert sum(int(np.prod(w.shape)) for w in vae.trainable_weights) == 404_756


def test_importance_sampling_bounds_on_a_trained_toy_model():
    keras.utils.set_random_seed(0)
    cfg = vmf.Config(subset=2000)
    (x_train, _), (x_test, _) = run.load_data(cfg)
    x_train, x = x_train.reshape(-1, 784), x_test[:64].reshape(-1, 784)
    vae, encoder, decoder = vmf.build_models(cfg)
    vae.fit(x_train, epochs=2, batch_size=100, verbose=0)
    rng = np.random.default_rng(0)
    decoder_logits = evaluation.logits_model(decoder)
    lw = vmf.log_importance_weights(encoder, decoder_logits, x, 2000, rng, cfg.kappa)
    # E_q[log w] is the ELBO: it must agree with the training loss plus the KL constant
    neg_elbo = -lw.mean(1)
    loss = np.mean([float(vae.evaluate(x, verbose=0, batch_size=64)) for _ in range(20)])
    assert abs(neg_elbo.mean() - (loss + vmf.vmf_kl(cfg.kappa, cfg.latent_dim))) < 1.0
    nll = evaluation.importance_sampled_nll(
        lambda xb, k: vmf.log_importance_weights(encoder, decoder_logits, xb, k, rng, cfg.kappa),
        x, 500)[0]["test_nll"]
    assert nll <= neg_elbo.mean()
    assert nll > neg_elbo.mean() - 30  # a sane gap, not a broken weight


@pytest.mark.backends
def test_end_to_end_quick_run_resume_and_load(tmp_path, monkeypatch, killed_then_resumed):
    out = tmp_path / "run"
    argv = QUICK + ["--out-dir", str(out)]
    metrics = killed_then_resumed(vmf.main, argv, out)
    figures = ("samples.png", "reconstructions.png", "loss.png")
    for name in figures + ("metrics.json", "history.csv", "config.json", "model.weights.h5"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["epochs"] == 2 and np.isfinite(metrics["test_nll"])
    assert metrics["kl_constant"] == pytest.approx(3.2584, abs=5e-5)
    assert metrics["test_neg_elbo"] == pytest.approx(metrics["final_val_loss"] + 3.2584, abs=1e-4)
    assert metrics["trainable_params"] == 404_756
    per_image(out, metrics, {"nll": "test_nll", "neg_elbo_sampled": "test_neg_elbo_sampled"})
    losses = run.read_history(out / "history.csv")["loss"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
    config = json.loads((out / "config.json").read_text())
    assert (config["epochs"], config["kappa"], config["latent_dim"]) == (2, 20.0, 4)

    for name in figures:
        (out / name).unlink()
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: pytest.fail("--load must not train"))
    again = vmf.main(argv + ["--load"])
    assert all((out / name).is_file() for name in figures)
    assert again["final_val_loss"] == metrics["final_val_loss"]


@pytest.mark.quick
@pytest.mark.backends
def test_adam_is_pytorchs_fused_kernel_on_pytorch_and_keras_own_elsewhere():
    """The fused update only where it is faster; TensorFlow's and JAX's runs keep Keras' Adam
    (which XLA fuses), and --plain-keras keeps it everywhere."""
    fused = keras.backend.backend() == "torch"
    optimizer = vmf.build_models(vmf.Config())[0].optimizer
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert isinstance(optimizer, kernels.FusedAdam) == fused
    plain = vmf.build_models(vmf.Config(plain_keras=True))[0].optimizer
    assert isinstance(plain, keras.optimizers.Adam) and not isinstance(plain, kernels.FusedAdam)
