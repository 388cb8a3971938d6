"""nice.py: the flow's layers (exact inverses, log-determinant, noise kinds, eq. 7, shuffles),
its parameter count, the dequantised bounds against exact discrete likelihoods, the sampling-std
sweep, the fused Adam, saving, and a short end-to-end run killed and resumed."""
import json
import math

import keras
import numpy as np
import pytest

import nice
from common import kernels, run
from simulate import per_image


def small(**kw):
    return nice.Config(hidden_dim=16, hidden_layers=2, **kw)


@pytest.fixture(scope="module")
def full_models():
    keras.utils.set_random_seed(0)
    return nice.build_models(nice.Config())


@pytest.fixture(scope="module")
def digits():
    (_, _), (x_test, _) = run.load_data(nice.Config())
    return x_test[:64].reshape(-1, 784)


@pytest.mark.quick
def test_parameter_count(full_models):
    encoder, generator = full_models
    assert encoder.count_params() == 19_158_352
    assert {id(w) for w in generator.weights} == {id(w) for w in encoder.weights}  # shared


@pytest.mark.quick
@pytest.mark.backends
def test_generator_inverts_encoder(full_models, digits):
    encoder, generator = full_models
    rng = np.random.default_rng(1)
    for x in (digits, rng.random((64, 784), dtype=np.float32)):
        z = encoder(x, training=False)
        assert np.max(np.abs(as_numpy(generator(z)) - x)) <= 1e-4
    z = rng.standard_normal((64, 784)).astype("float32")
    z_back = as_numpy(encoder(generator(z), training=False))
    assert np.max(np.abs(z_back - z)) <= 1e-4 * max(1.0, np.abs(z).max())


@pytest.mark.quick
def test_bfloat16_mode_stays_exactly_invertible():
    keras.utils.set_random_seed(0)
    encoder, generator = nice.build_models(small(precision="bfloat16"), dim=8)
    x = np.random.default_rng(2).random((32, 8), dtype=np.float32)
    z = encoder(x, training=False)
    assert z.dtype == "float32"
    assert np.max(np.abs(np.asarray(generator(z)) - x)) <= 1e-5


@pytest.mark.quick
@pytest.mark.parametrize("mode", ["reverse", "random"])
def test_shuffle_and_split_are_exact_inverses(mode):
    x = np.arange(2 * 784, dtype="float32").reshape(2, 784)
    shuffle = nice.Shuffle(784, mode, seed=3)
    y = np.asarray(shuffle(x))
    assert sorted(y[0]) == sorted(x[0]) and not np.array_equal(y, x)
    np.testing.assert_array_equal(np.asarray(shuffle(y, inverse=True)), x)
    if mode == "reverse":
        np.testing.assert_array_equal(y, x[:, ::-1])
    split = nice.SplitVector()
    a, b = split(x)
    np.testing.assert_array_equal(np.asarray(a), x[:, 0::2])
    np.testing.assert_array_equal(np.asarray(b), x[:, 1::2])
    np.testing.assert_array_equal(np.asarray(split((a, b), inverse=True)), x)


def as_numpy(t):
    return keras.ops.convert_to_numpy(t)


def value_and_jacobian(model, x):
    """model(x) and the Jacobian of each row's output by its input, on every backend."""
    if keras.backend.backend() == "jax":
        import jax

        def one(row):
            return model(row[None], training=False)[0]
        jacobian = jax.jit(jax.jacfwd(one))
        return np.asarray(model(x, training=False)), np.stack([jacobian(r) for r in x])
    if keras.backend.backend() == "torch":
        import torch

        def one(row):
            return model(row[None], training=False)[0]
        jac = [torch.autograd.functional.jacobian(one, torch.tensor(r)) for r in x]
        return as_numpy(model(x, training=False)), np.stack([as_numpy(j) for j in jac])
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = model(x, training=False)
    return np.asarray(z), np.asarray(tape.batch_jacobian(z, x))


@pytest.mark.quick
@pytest.mark.backends
def test_log_determinant_and_loss_are_exact():
    keras.utils.set_random_seed(4)
    cfg = small()
    encoder, _ = nice.build_models(cfg, dim=8)
    scale = encoder.get_layer("scale")
    scale.s.assign(np.random.default_rng(5).normal(0, 0.5, (1, 8)).astype("float32"))
    x = np.random.default_rng(6).random((5, 8)).astype("float32")
    z, jac = value_and_jacobian(encoder, x)
    _, logdet = np.linalg.slogdet(np.asarray(jac, np.float64))
    np.testing.assert_allclose(logdet, np.sum(scale.s.numpy()), rtol=1e-5)
    # exact -log p(x) under N(0, I) for z = f(x), minus the constant D/2 ln 2 pi, is the loss
    exact = (0.5 * np.sum(np.asarray(z, np.float64) ** 2, axis=1) + 4 * math.log(2 * math.pi)
             - logdet)
    loss = encoder.evaluate(x, x, batch_size=5, verbose=0)
    np.testing.assert_allclose(loss, np.mean(exact) - 4 * math.log(2 * math.pi), rtol=1e-5)


@pytest.mark.quick
def test_noise_only_in_training():
    layer = nice.TrainingNoise(0.01, seed=0)
    x = np.full((1000, 784), 0.5, "float32")
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    noisy = np.asarray(layer(x, training=True))
    assert noisy.min() >= 0.49 and noisy.max() <= 0.5
    assert abs((noisy - x).mean() + 0.005) < 1e-4
    assert nice.TrainingNoise.from_config(layer.get_config()).width == 0.01


@pytest.mark.quick
@pytest.mark.parametrize("kind, low, high, mean, sd", [
    ("negative", -0.01, 0.0, -0.005, 0.01 / math.sqrt(12)),
    ("positive", 0.0, 0.01, 0.005, 0.01 / math.sqrt(12)),
    ("centred", -0.005, 0.005, 0.0, 0.01 / math.sqrt(12)),
    ("gaussian", -np.inf, np.inf, 0.0, 0.01 / math.sqrt(12))])
def test_noise_kinds(kind, low, high, mean, sd):
    noise = np.asarray(nice.TrainingNoise(0.01, kind, seed=1)(np.zeros((200, 784), "float32"),
                                                              training=True), np.float64)
    assert noise.min() >= low and noise.max() <= high
    assert abs(noise.mean() - mean) < 2e-5 and abs(noise.std() - sd) < 2e-5


@pytest.mark.quick
def test_eq7_forward_swaps_the_coupling_signs_and_still_inverts():
    keras.utils.set_random_seed(3)
    x = np.random.default_rng(4).random((16, 8), dtype=np.float32)
    z = {}
    for forward in ("eq9", "eq7"):
        keras.utils.set_random_seed(3)  # the same weights
        encoder, generator = nice.build_models(small(forward=forward), dim=8)
        encoder.get_layer("scale").s.assign(np.zeros((1, 8), "float32"))
        z[forward] = np.asarray(encoder(x, training=False))
        assert np.max(np.abs(np.asarray(generator(z[forward])) - x)) <= 1e-5
    coupling = nice.AdditiveCoupling(4, 16, 2, forward="eq7")
    coupling.build(((None, 4), (None, 4)))
    a, b = x[:, :4], x[:, 4:]
    shift = np.asarray(coupling.shift(a))
    assert shift.max() > 0  # m is not zero, so the signs are seen
    np.testing.assert_allclose(np.asarray(coupling((a, b))[1]), b + shift, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(coupling((a, b), inverse=True)[1]), b - shift, rtol=1e-6)
    assert not np.allclose(z["eq9"], z["eq7"])


@pytest.mark.quick
def test_shuffle_none_keeps_the_order():
    x = np.arange(2 * 784, dtype="float32").reshape(2, 784)
    shuffle = nice.Shuffle(784, "none")
    np.testing.assert_array_equal(np.asarray(shuffle(x)), x)
    np.testing.assert_array_equal(np.asarray(shuffle(x, inverse=True)), x)


@pytest.mark.quick
def test_dequantised_nll_bounds_the_exact_discrete_nll():
    """On a 2-pixel flow with 4 levels (bins of width 1/3), the probability of each of the 16
    discrete images is the density's integral over its bin, computed by quadrature. The
    dequantised figure, estimated by the project's function, is never below the exact discrete
    NLL, and matches the same expectation computed by quadrature."""
    keras.utils.set_random_seed(9)
    encoder, _ = nice.build_models(small(num_blocks=2), dim=2)
    encoder.get_layer("scale").s.assign(np.array([[0.7, -0.4]], "float32"))
    levels, grid, copies, draws = 3, 120, 500, 8
    pixels = np.array([(a, b) for a in range(levels + 1) for b in range(levels + 1)], np.float64)
    mid = (np.arange(grid) + 0.5) / grid  # midpoints of the bin, in units of its width
    offsets = np.stack(np.meshgrid(mid, mid, indexing="ij"), axis=-1).reshape(-1, 2)
    points = ((pixels[:, None] + offsets) / levels).reshape(-1, 2).astype("float32")
    nld = nice.neg_log_density(encoder, points, batch_size=len(points)).reshape(len(pixels), -1)
    exact_nll = -np.log(np.mean(np.exp(-nld), axis=1) / levels ** 2)  # -log of the integral
    quadrature_bound = np.mean(nld, axis=1) + 2 * math.log(levels)
    assert np.sum(np.exp(-exact_nll)) <= 1.0  # probabilities of disjoint bins
    assert np.all(quadrature_bound >= exact_nll)  # Jensen, to quadrature accuracy
    assert np.mean(quadrature_bound - exact_nll) > 0.01  # a gap the check can see
    # each discrete image `copies` times, so that one call scores many draws at once
    bound, se = nice.dequantised_nll(
        lambda x: nice.neg_log_density(encoder, x, batch_size=len(x)),
        np.tile(pixels, (copies, 1)), levels, draws, np.random.default_rng(10))
    assert 0 < se < 0.01
    per_image = bound.reshape(copies, len(pixels))
    se_each = per_image.std(0, ddof=1) / np.sqrt(copies)
    assert np.all(per_image.mean(0) >= exact_nll - 5 * se_each)
    assert abs(bound.mean() - quadrature_bound.mean()) < 5 * se


@pytest.mark.quick
def test_importance_weighted_bound_tends_to_the_exact_discrete_nll():
    """A density of 3 independent normal pixels has exactly computable bin masses (differences
    of the normal CDF) for each placement of the bins. The importance-weighted bound at K = 1 is
    the plain (Jensen) bound, above the exact NLL; with many draws it comes within its stated
    Monte Carlo error of the exact NLL, for every placement, and it falls with K."""
    from scipy.stats import norm
    levels = 3
    mu, sd = np.array([0.2, 0.5, 0.9]), np.array([0.3, 0.15, 0.4])

    def nld(x):
        return -np.sum(norm.logpdf(np.asarray(x, np.float64), mu, sd), axis=1)

    pixels = np.array([(a, b, c) for a in range(levels + 1) for b in range(levels + 1)
                       for c in range(levels + 1)], np.float64)
    iw, images = nice.iw_dequantised_nll(nld, pixels, levels, 4096, np.random.default_rng(3))
    for name, offset in nice.BIN_OFFSETS.items():
        lo, hi = (pixels + offset) / levels, (pixels + offset + 1) / levels
        exact = -np.sum(np.log(norm.cdf(hi, mu, sd) - norm.cdf(lo, mu, sd)), axis=1).mean()
        got = iw[name]
        assert 0 < got["mc_se"] < 0.01 and got["image_se"] > 0
        assert got["by_draws"]["1"] > exact + 0.05  # the plain bound, visibly above
        assert abs(got["nll"] - exact) < 4 * got["mc_se"] + 1e-3, name
        assert got["by_draws"]["1"] > got["by_draws"]["64"] > got["nll"] - 4 * got["mc_se"]
        assert images[name].shape == (len(pixels),)
        assert images[name].mean() == pytest.approx(got["nll"], abs=1e-9)
        assert images[name].std(ddof=1) / len(pixels) ** 0.5 == pytest.approx(got["image_se"])
    # the placements differ: the bound names which discrete likelihood it bounds
    assert abs(iw["above"]["nll"] - iw["below"]["nll"]) > 0.1


@pytest.mark.quick
def test_frechet_distance_of_normal_samples():
    """For N(m, a^2 I) against N(0, b^2 I) in d dimensions the distance is |m|^2 + d (a - b)^2."""
    rng = np.random.default_rng(4)
    d, n = 5, 200_000
    m = np.array([0.3, 0, 0, -0.2, 0])
    a = rng.standard_normal((n, d)) * 0.5 + m
    b = rng.standard_normal((n, d)) * 0.8
    assert nice.frechet_distance(a, b) == pytest.approx(0.13 + d * 0.09, rel=0.02)
    assert nice.frechet_distance(b, b) == pytest.approx(0, abs=1e-9)


@pytest.mark.quick
def test_std_sweep_prefers_the_std_of_the_data_not_the_smallest():
    """With a generator that is the identity, samples at std s are N(0, s^2 I) clipped; against
    test images drawn at std 0.9 the sweep's best std is 0.9, neither end of the grid."""
    identity = keras.Sequential([keras.Input((784,)), keras.layers.Identity()])
    rng = np.random.default_rng(5)
    x_test = np.clip(rng.standard_normal((4000, 784)) * 0.9, 0, 1)
    sweep = nice.std_sweep(identity, x_test, rng)
    assert list(sweep["sample_fd_by_std"]) == [f"{s:g}" for s in nice.SWEEP_STDS]
    assert sweep["sample_fd_best_std"] == 0.9


@pytest.mark.quick
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # never stepped
@pytest.mark.parametrize("shuffle", ["reverse", "random"])
def test_flow_round_trips_through_saving(tmp_path, shuffle):
    """Every flow layer serialises: a saved and reloaded encoder computes the same z, and the
    generator rebuilt from the reloaded layers inverts it."""
    keras.utils.set_random_seed(7)
    cfg = small(shuffle=shuffle, seed=11)
    encoder, _ = nice.build_models(cfg, dim=8)
    x = np.random.default_rng(8).random((16, 8), dtype=np.float32)
    encoder.save(tmp_path / "flow.keras")
    loaded = keras.saving.load_model(tmp_path / "flow.keras")
    z = np.asarray(encoder(x, training=False))
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), z, rtol=1e-6, atol=1e-6)
    blocks = [tuple(loaded.get_layer(f"{kind}_{i}") for kind in ("shuffle", "split", "coupling"))
              for i in range(cfg.num_blocks)]
    x_back = nice.decode(blocks, loaded.get_layer("scale"), keras.ops.convert_to_tensor(z))
    np.testing.assert_allclose(np.asarray(x_back), x, atol=1e-5)
    assert loaded.get_layer("noise").width == cfg.noise


@pytest.mark.backends
def test_end_to_end_quick_run_resume_and_load(tmp_path, monkeypatch, killed_then_resumed,
                                               test_images_1000):
    out = tmp_path / "run"
    argv = ["--subset", "1024", "--epochs", "2", "--hidden-dim", "64", "--out-dir", str(out),
            "--dequantisation-draws", "2", "--iw-draws", "4"]
    # the best-so-far loss must survive the kill: best_val_loss is checked against history below
    metrics = killed_then_resumed(nice.main, argv, out)
    for name in ("samples.png", "samples_std1.png", "interpolations.png", "scale.png", "loss.png",
                 "metrics.json", "history.csv", "config.json", "model.weights.h5"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["epochs"] == 2 and metrics["best_epoch"] in (1, 2)
    assert metrics["test_dequantised_bits_per_dim_mc_se"] < 0.01
    assert metrics["test_dequantised_bits_per_dim"] == pytest.approx(
        metrics["test_dequantised_nll"] / (784 * math.log(2)))
    # the bound adds 784 ln 255 to a density at dequantised points
    assert (metrics["test_dequantised_nll"] > metrics["test_neg_log_density"]
            > metrics["test_loss"])
    assert "test_nll" not in metrics and "test_bits_per_dim" not in metrics
    assert metrics["iw_draws"] == 4 and set(metrics["test_iw_nll_by_bins"]) == {
        "above", "centred", "below"}
    assert metrics["test_iw_nll"] == metrics["test_iw_nll_by_bins"]["above"]["nll"]
    assert list(metrics["test_iw_nll_by_bins"]["below"]["by_draws"]) == ["1", "2", "4"]
    columns = per_image(out, metrics, {"neg_log_density": "test_neg_log_density"}, 1000)
    assert list(columns) == ["neg_log_density", "iw_nll_above", "iw_nll_centred", "iw_nll_below"]
    for name, bound in metrics["test_iw_nll_by_bins"].items():
        assert columns[f"iw_nll_{name}"].mean() == pytest.approx(bound["nll"], rel=1e-6)
    assert metrics["sample_fd_best_std"] in nice.SWEEP_STDS
    for key in ("sample_below_zero", "sample_above_one", "sample_std1_below_zero"):
        assert 0 <= metrics[key] <= 1
    assert 0 <= metrics["sample_background"] < 0.5 and metrics["scale_black_pixels"] > 0
    hist = run.read_history(out / "history.csv")
    assert hist["loss"][1] < hist["loss"][0]
    assert metrics["best_val_loss"] == hist["val_loss"].min()
    # the kept weights are the best epoch's: evaluated again, they give its loss
    assert metrics["test_loss"] == pytest.approx(metrics["best_val_loss"], rel=1e-4)

    (out / "samples.png").unlink()
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: pytest.fail("--load must not train"))
    again = nice.main(argv + ["--load"])
    assert (out / "samples.png").is_file()
    assert again["test_loss"] == pytest.approx(metrics["test_loss"], rel=1e-6)


def test_several_steps_per_call_train_the_same_flow_and_still_stop_on_nan(tmp_path):
    """The script's steps per compiled call change how the steps run, not what they compute:
    the same seed gives the same losses as one step per call; a NaN still stops the run."""
    x = np.random.default_rng(0).random((1000, 784)).astype("float32")
    histories = []
    for steps in (1, nice.STEPS_PER_EXECUTION):
        cfg = small(epochs=2, seed=3)
        keras.utils.set_random_seed(cfg.seed)
        encoder, _ = nice.build_models(cfg)
        assert encoder.steps_per_execution == nice.STEPS_PER_EXECUTION
        if steps == 1:
            encoder.compile(optimizer=kernels.FusedAdam(cfg.learning_rate),
                            loss=nice.gaussian_loss)
        (tmp_path / str(steps)).mkdir()
        histories.append(run.train(encoder, cfg, tmp_path / str(steps), x, x))
    assert nice.STEPS_PER_EXECUTION > 1 and histories[0]["loss"][1] < histories[0]["loss"][0]
    np.testing.assert_allclose(histories[1]["loss"], histories[0]["loss"], rtol=1e-6)
    x[567, 89] = np.nan
    (tmp_path / "nan").mkdir()
    with pytest.raises(SystemExit, match="loss became nan"):
        run.train(encoder, small(epochs=2), tmp_path / "nan", x, x)
    assert not (tmp_path / "nan" / "history.csv").exists()
