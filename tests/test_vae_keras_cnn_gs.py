"""vae_keras_cnn_gs.py: the Gumbel-Softmax layer and its tau schedule inside compiled steps,
the loss, the discrete -ELBO and NLL against exact enumeration, the gradient estimators and
their norms per tau, bad flags, and a short end-to-end run killed and resumed."""
import json
import math

import keras
import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from scipy.stats import chisquare, entropy

import vae_keras_cnn_gs as gs
from common import evaluation, run
from simulate import per_image

QUICK = ["--subset", "1000", "--epochs", "2", "--is-images", "20", "--is-samples", "50"]
KL_CONSTANT = 32 * math.log(10)


def tau_at(t):
    """The blog's schedule: tau before the t-th training batch (t from 0)."""
    return 0.01 + 0.99 * 0.999**t


def binary_images(n, seed=0):
    return (np.random.default_rng(seed).random((n, 28, 28, 1)) < 0.2).astype("float32")


# ---------------------------------------------------------------- the Gumbel-Softmax layer


@pytest.mark.quick
@pytest.mark.backends
def test_gumbel_max_picks_each_class_with_softmax_probability():
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0, 0.3, 1.5, -0.5, 0.8], "float32")
    layer = gs.GumbelSoftmax(tau=1.0, seed=3)
    draws = np.asarray(layer(np.tile(logits, (20000, 10, 1))))  # 200,000 draws
    # softmax is monotonic, so the argmax of the relaxed sample is argmax(logits + g)
    counts = np.bincount(draws.argmax(-1).ravel(), minlength=10)
    n = counts.sum()
    assert chisquare(counts, n * softmax(logits.astype(np.float64))).pvalue > 1e-3
    # the test has power: a slightly different distribution is rejected
    assert chisquare(counts, n * softmax(logits.astype(np.float64) * 0.95)).pvalue < 1e-6


@pytest.mark.quick
def test_gumbel_softmax_lies_on_the_simplex_and_tends_to_one_hot():
    logits = np.random.default_rng(1).normal(0, 1, (2000, 32, 10)).astype("float32")
    mean_max = []
    for tau in (10.0, 1.0, 0.1, 0.01):
        y = np.asarray(gs.GumbelSoftmax(tau=tau, seed=5)(logits))
        assert y.min() >= 0
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
        mean_max.append(y.max(-1).mean())
    assert np.all(np.diff(mean_max) > 0)
    assert mean_max[0] < 0.2 and mean_max[-1] > 0.97


@pytest.mark.quick
def test_gumbel_softmax_layer_is_serialisable_and_tau_is_a_saved_weight(tmp_path):
    layer = gs.GumbelSoftmax(tau=0.7, seed=11, name="z")
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(again, gs.GumbelSoftmax)
    assert (again.seed, again.initial_tau, float(again.tau.numpy())) == (11, 0.7, pytest.approx(0.7))
    assert layer.trainable_weights == []
    assert [w.name for w in layer.non_trainable_weights] == ["tau", "step"]

    x = keras.Input((4, 3))
    model = keras.Model(x, gs.GumbelSoftmax(tau=1.0, seed=2, name="z")(x))
    model.get_layer("z").tau.assign(0.125)
    model.get_layer("z").step.assign(42)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert float(loaded.get_layer("z").tau.numpy()) == 0.125
    assert int(loaded.get_layer("z").step.numpy()) == 42  # a resume continues the schedule


@pytest.mark.quick
def test_parameter_count():
    vae, encoder, decoder = gs.build_models(gs.Config())
    # 299,201 trainable weights plus tau: the blog's 299,202; plus the layer's batch counter
    assert sum(int(np.prod(w.shape)) for w in vae.trainable_weights) == 299_201
    assert {w.name for w in vae.non_trainable_weights} == {"tau", "step"}
    assert vae.count_params() == 299_202 + 1
    assert decoder.output.shape[1:] == (28, 28, 1) and encoder.output.shape[1:] == (32, 10)


# ---------------------------------------------------------------- the tau schedule


class TauProbe(keras.callbacks.Callback):
    """Records the layer's tau after every training batch and logs["tau"] at each epoch's end."""

    def __init__(self, layer):
        super().__init__()
        self.layer, self.after_batch, self.logged = layer, [], []

    def on_train_batch_end(self, batch, logs=None):
        self.after_batch.append(float(self.layer.tau.numpy()))

    def on_epoch_end(self, epoch, logs=None):
        self.logged.append(logs["tau"])


@pytest.mark.parametrize("schedule", [(1.0, 0.01, 0.999), (2.0, 0.5, 0.7)])
def test_tau_annealing_follows_the_schedule_in_a_real_fit(schedule, capsys):
    tau_max, tau_min, decay = schedule
    vae, _, _ = gs.build_models(gs.Config())
    vae.compile(optimizer="rmsprop")  # one step per call, so the probe sees every batch
    layer = vae.get_layer("z")
    probe = TauProbe(layer)
    vae.fit(binary_images(300), batch_size=100, epochs=2, verbose=0,
            callbacks=[gs.TauAnnealing(layer, tau_max, tau_min, decay), probe])
    expected = [tau_min + (tau_max - tau_min) * decay ** (n - 1) for n in range(1, 7)]
    np.testing.assert_allclose(probe.after_batch, expected, rtol=1e-6)  # after n batches
    np.testing.assert_allclose(probe.logged, [expected[2], expected[5]], rtol=1e-6)
    printed = capsys.readouterr().out
    assert f"epoch: 1, tau: {expected[0]:.5f}" in printed
    assert f"epoch: 2, tau: {expected[3]:.5f}" in printed


class BlogTauCallback(keras.callbacks.Callback):
    """The blog's way: tau assigned from Python before every batch, `offset` steps ahead."""

    def __init__(self, layer, offset=0):
        super().__init__()
        self.layer, self.offset = layer, offset

    def on_train_batch_begin(self, batch, logs=None):
        t = int(self.model.optimizer.iterations.numpy()) + self.offset
        self.layer.tau.assign(tau_at(t))


def trained_vae(callback_for, steps_per_execution, epochs=2):
    keras.utils.set_random_seed(0)
    vae, _, _ = gs.build_models(gs.Config())
    vae.compile(optimizer="rmsprop", steps_per_execution=steps_per_execution)
    vae.fit(binary_images(700, seed=9), batch_size=100, epochs=epochs, verbose=0, shuffle=False,
            callbacks=[callback_for(vae.get_layer("z"))])
    return vae


@pytest.mark.backends
@pytest.mark.portable_slow  # JAX and PyTorch: slow tier
def test_tau_schedule_is_exact_per_batch_with_several_steps_per_execution():
    """7 batches an epoch in calls of 3: the in-step schedule trains exactly as tau set from
    Python before every single batch (the blog's callback) does; one batch off, it does not."""
    def trained(vae):
        return [np.asarray(w) for w in vae.trainable_weights] + [vae.get_layer("z").tau.numpy()]

    blog = trained(trained_vae(BlogTauCallback, 1))
    # PyTorch's Keras trainer runs one step per call; the schedule must still be exact there
    ours = trained_vae(gs.TauAnnealing, 1 if keras.backend.backend() == "torch" else 3)
    # tau of the 14th and last batch, set from the layer's count of 14 training batches
    assert float(ours.get_layer("z").tau.numpy()) == pytest.approx(tau_at(13), rel=1e-6)
    assert int(ours.get_layer("z").step.numpy()) == 14
    for a, b in zip(blog, trained(ours)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    shifted = trained(trained_vae(lambda layer: BlogTauCallback(layer, offset=1), 1))
    assert max(np.max(np.abs(a - b)) for a, b in zip(blog, shifted)) > 1e-4


def test_compiled_training_step_reads_the_current_tau():
    vae, _, _ = gs.build_models(gs.Config())
    layer = vae.get_layer("z")
    x = binary_images(100, seed=2)
    vae.train_on_batch(x)  # traces and compiles the training step once
    state = list(vae.variables) + list(vae.optimizer.variables)  # includes the noise seed
    saved = [v.numpy() for v in state]

    def restore(tau):
        for v, value in zip(state, saved):
            v.assign(value)
        layer.tau.assign(tau)

    def compiled_loss(tau):
        restore(tau)
        return float(vae.train_on_batch(x))

    def eager_loss(tau):
        restore(tau)
        vae(x, training=True)
        return float(vae.losses[0])

    assert compiled_loss(1.0) == compiled_loss(1.0)  # same weights and noise: same step
    assert abs(compiled_loss(1.0) - compiled_loss(0.05)) > 0.1
    for tau in (1.0, 0.05):
        assert compiled_loss(tau) == pytest.approx(eager_loss(tau), rel=1e-5)


# ---------------------------------------------------------------- bounds and metrics


@pytest.mark.quick
def test_loss_plus_constant_is_the_relaxed_neg_elbo_against_the_uniform_prior():
    vae, encoder, _ = gs.build_models(gs.Config())
    logits_layer = [l for l in encoder.layers if isinstance(l, keras.layers.Dense)][-1]
    kernel, bias = logits_layer.get_weights()
    logits_layer.set_weights([kernel, np.random.default_rng(0).normal(0, 3, bias.shape)])
    vae.get_layer("z").tau.assign(0.3)
    x = binary_images(64, seed=4)

    x_logits = np.asarray(vae(x, training=True), np.float64)  # the model's output: the logits
    x_decoded = 1 / (1 + np.exp(-x_logits))
    loss = float(vae.losses[0])
    p = softmax(np.asarray(encoder(x), np.float64), axis=-1)
    kl = entropy(p, np.full_like(p, 0.1), axis=-1).sum(-1)  # KL(Cat(p) || uniform), per image
    assert kl.mean() > 20  # the spread bias makes the KL part substantial
    np.testing.assert_allclose(np.asarray(gs.sum_p_log_p(encoder(x))) + KL_CONSTANT, kl, rtol=1e-5)
    xh = np.clip(x_decoded, 1e-7, 1 - 1e-7)
    bce = -np.sum(x * np.log(xh) + (1 - x) * np.log(1 - xh), axis=(1, 2, 3))
    assert loss + gs.Config().kl_constant == pytest.approx(np.mean(bce + kl), rel=1e-5)
    assert gs.Config().kl_constant == pytest.approx(73.683, abs=1e-3)


def small_discrete_model(latents=2, classes=3, seed=0):
    """A linear encoder and decoder whose codes decode to clearly different images."""
    keras.utils.set_random_seed(seed)
    normal = keras.initializers.RandomNormal
    encoder = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(latents * classes, kernel_initializer=normal(stddev=0.05)),
                                keras.layers.Reshape((latents, classes))])
    code = keras.Input((latents, classes))
    x_logits = keras.layers.Dense(784, kernel_initializer=normal(stddev=0.3),
                                  name="x_logits")(keras.layers.Flatten()(code))
    decoder = keras.Model(code, keras.layers.Reshape((28, 28, 1))(
        keras.layers.Activation("sigmoid")(x_logits)))
    return encoder, decoder


@pytest.mark.quick
def test_importance_sampling_and_discrete_elbo_match_exact_enumeration():
    latents, classes = 2, 3
    encoder, decoder = small_discrete_model(latents, classes)
    x = binary_images(6, seed=7)
    # every one of the 3^2 codes, decoded
    grid = np.stack(np.meshgrid(*[np.arange(classes)] * latents, indexing="ij"), -1).reshape(-1, latents)
    x_hat = np.asarray(decoder(np.eye(classes, dtype="float32")[grid]), np.float64)
    xh = x_hat[None]  # far from 0 and 1 here: the direct formula is exact
    log_px_c = np.sum(x[:, None] * np.log(xh) + (1 - x[:, None]) * np.log(1 - xh), axis=(2, 3, 4))
    log_prior = -latents * math.log(classes)
    exact_nll = -logsumexp(log_px_c + log_prior, axis=1)
    p = softmax(np.asarray(encoder(x), np.float64), axis=-1)
    q_c = np.prod([p[:, l, grid[:, l]] for l in range(latents)], axis=0)  # (n, 9)
    kl = np.sum(p * np.log(p), axis=(1, 2)) - log_prior
    exact_neg_elbo = -np.sum(q_c * log_px_c, axis=1) + kl
    assert np.all(exact_neg_elbo - exact_nll > 1.5)  # a gap the estimates must not blur

    log_w, neg_elbo = gs.one_hot_samples(encoder, evaluation.logits_model(decoder), x, 4000,
                                          np.random.default_rng(0))
    assert log_w.shape == (6, 4000)
    np.testing.assert_allclose(neg_elbo, exact_neg_elbo, atol=0.5)
    np.testing.assert_allclose(np.log(4000) - logsumexp(log_w, axis=1), exact_nll, atol=0.25)
    metrics, images = gs.discrete_metrics(encoder, decoder, x, 4000, np.random.default_rng(1))
    assert metrics["test_nll"] == pytest.approx(exact_nll.mean(), abs=0.25)
    assert metrics["test_neg_elbo"] == pytest.approx(exact_neg_elbo.mean(), abs=0.5)
    np.testing.assert_allclose(images["nll"], exact_nll, atol=0.25)
    np.testing.assert_allclose(images["neg_elbo"], exact_neg_elbo, atol=0.5)
    assert images["neg_elbo"].mean() == pytest.approx(metrics["test_neg_elbo"])


@pytest.mark.quick
def test_nll_decoding_in_compiled_batches_matches_predict():
    keras.utils.set_random_seed(0)
    _, _, decoder = gs.build_models(gs.Config(num_latents=4, classes_per_latent=3))
    decoder_logits = evaluation.logits_model(decoder)
    codes = np.eye(3, dtype="float32")[np.random.default_rng(0).integers(3, size=(2500, 4))]
    batched = evaluation.predict_in_batches(decoder_logits, codes, 1000)  # the last batch: 500
    assert batched.shape == (2500, 28, 28, 1)
    np.testing.assert_allclose(batched, decoder_logits.predict(codes, verbose=0), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.quick
def test_plain_softmax_relaxation_has_no_noise():
    logits = np.random.default_rng(2).normal(size=(4, 32, 10)).astype("float32")
    layer = gs.GumbelSoftmax(tau=0.5, seed=0, noise=False)
    np.testing.assert_allclose(np.asarray(layer(logits)), softmax(logits / 0.5, axis=-1),
                               rtol=1e-5, atol=1e-7)
    noisy = np.asarray(gs.GumbelSoftmax(tau=0.5, seed=0)(logits))
    assert np.abs(noisy - softmax(logits / 0.5, axis=-1)).max() > 0.1
    assert gs.GumbelSoftmax.from_config(layer.get_config()).noise is False


@pytest.mark.quick
@pytest.mark.backends
def test_input_gradient_on_every_backend():
    x = np.array([[1.0, -2.0, 0.5]], "float32")
    np.testing.assert_allclose(evaluation.input_gradient(lambda v: keras.ops.square(v) * 3, x),
                               6 * x)


def test_gradient_estimators_against_exact_gradients():  # 9 s: the default tier, not the quick
    """One latent of 3 classes: E_q[f(c)] = sum_c p_c f(c) has the exact gradient
    p_c (f(c) - E_q f) in the logits. The score-function estimates average to it; each
    reparameterised estimate is the derivative of f(softmax((logits + g) / tau)), checked by
    central differences."""
    encoder, decoder = small_discrete_model(1, 3)
    decoder_logits = evaluation.logits_model(decoder)
    x = binary_images(1, seed=3)[0]
    logits = np.array([[0.4, -0.3, 0.1]])
    f = -evaluation.sample_log_likelihoods(
        x[None], evaluation.infer(decoder_logits, np.eye(3, dtype="float32")[:, None], "float32"), 3)[0]
    p = softmax(logits[0])
    exact = p * (f - p @ f)
    assert np.abs(exact).max() > 0.05  # f differs between the codes
    rng = np.random.default_rng(4)
    g = rng.gumbel(size=(100_000, 1, 3))
    reinforce, (reparam,) = gs.gradient_estimates(decoder_logits, x, logits, g, [0.5])
    se = reinforce.std(0) / np.sqrt(len(g))
    assert np.all(np.abs(reinforce.mean(0)[0] - exact) < 5 * se[0])

    kernel, bias = (np.asarray(w, np.float64) for w in decoder_logits.get_layer("x_logits").weights)
    xf = x.reshape(-1).astype(np.float64)

    def relaxed_f(l, gi):  # in float64: the decoder is one Dense layer, -log p = softplus(a) - x a
        a = softmax((l + gi) / 0.5, axis=-1).reshape(-1) @ kernel + bias
        return float(np.sum(np.logaddexp(0, a) - xf * a))
    for d in range(3):
        for j in range(3):
            step = np.zeros_like(logits)
            step[0, j] = 1e-4
            numeric = (relaxed_f(logits + step, g[d]) - relaxed_f(logits - step, g[d])) / 2e-4
            assert reparam[d, 0, j] == pytest.approx(numeric, rel=1e-3, abs=1e-4)
    assert reinforce.var(0).sum() > reparam[:1000].var(0).sum()


@pytest.mark.quick
def test_gradient_norms_per_tau_summarise_the_estimates():
    """`gradient_metrics` reports, for the run's taus and every tau of TAU_GRID, the norms of the
    same reparameterised estimates whose variances it reports: recomputed here from
    `gradient_estimates` with the same draws, and the norm of the mean never above the mean norm."""
    encoder, decoder = small_discrete_model(2, 3)
    x = binary_images(2, seed=5)
    cfg = gs.Config(gradient_draws=50, num_latents=2, classes_per_latent=3)
    metrics = gs.gradient_metrics(encoder, decoder, x, cfg, 0.3, np.random.default_rng(6))
    by_tau = metrics["grad_norm_by_tau"]
    assert list(by_tau) == ["1", "0.5", "0.3", "0.2", "0.1", "0.05", "0.02", "0.01"]
    taus = [cfg.tau_max, 0.3, *[t for t in gs.TAU_GRID if t not in (cfg.tau_max, 0.3)]]
    rng = np.random.default_rng(6)
    decoder_logits = evaluation.logits_model(decoder)
    norms = {t: [] for t in taus}
    for xi, li in zip(x, evaluation.infer(encoder, x)):
        _, rp = gs.gradient_estimates(decoder_logits, xi, li, rng.gumbel(size=(50, *li.shape)), taus)
        for t, e in zip(taus, rp):
            norms[t].append(np.sqrt(np.sum(e.astype(np.float64) ** 2, axis=(1, 2))))
    for t in taus:
        assert by_tau[f"{t:g}"]["median"] == pytest.approx(np.median(norms[t]), rel=1e-6)
        assert by_tau[f"{t:g}"]["mean"] == pytest.approx(np.mean(norms[t]), rel=1e-6)
        assert by_tau[f"{t:g}"]["of_mean"] <= by_tau[f"{t:g}"]["mean"] * (1 + 1e-9)


# ---------------------------------------------------------------- the script


@pytest.mark.quick
@pytest.mark.parametrize("argv, needle", [
    (["--tau-min", "0"], "--tau-min must be > 0.0"),
    (["--tau-max", "-1"], "--tau-max must be > 0.0"),
    (["--tau-min", "0.5", "--tau-max", "0.1"], "--tau-min must be <= --tau-max"),
    (["--tau-decay", "0"], "--tau-decay must be > 0.0"),
    (["--tau-decay", "1.5"], "--tau-decay must be <= 1.0"),
    (["--classes-per-latent", "1"], "--classes-per-latent must be >= 2"),
    (["--num-latents", "0"], "--num-latents must be >= 1"),
])
def test_bad_values_exit_2_with_a_clear_message(argv, needle, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        gs.main(argv + ["--out-dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vae_keras_cnn_gs.py: error:") and needle in err
    assert not (tmp_path / "config.json").exists()


@pytest.mark.backends
def test_end_to_end_quick_run_resume_and_load(tmp_path, monkeypatch, capsys, killed_then_resumed,
                                               test_images_1000):
    out = tmp_path / "run"
    argv = QUICK + ["--out-dir", str(out)]
    steps = 10  # 1,000 images in batches of 100

    metrics = killed_then_resumed(gs.main, argv, out, before_resume=capsys.readouterr)
    # the schedule continues from the restored step count instead of restarting at tau_max
    assert f"epoch: 2, tau: {tau_at(steps):.5f}" in capsys.readouterr().out
    column = run.read_history(out / "history.csv")
    np.testing.assert_allclose(column["tau"], [tau_at(steps - 1), tau_at(2 * steps - 1)],
                               rtol=1e-6)
    assert np.all(np.isfinite(column["loss"])) and column["loss"][1] < column["loss"][0]
    for name in ("samples.png", "reconstructions.png", "tau.png", "loss.png", "metrics.json",
                 "history.csv", "config.json", "model.weights.h5"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert json.loads((out / "config.json").read_text())["epochs"] == 2

    assert metrics["epochs"] == 2 and metrics["trainable_params"] == 299_201
    assert metrics["final_tau"] == pytest.approx(tau_at(2 * steps - 1), rel=1e-6)
    assert metrics["test_relaxed_neg_elbo"] == pytest.approx(
        metrics["final_val_loss"] + KL_CONSTANT)
    assert metrics["test_loss"] == metrics["final_val_loss"]
    assert np.isfinite(metrics["test_nll"])
    assert 0 < metrics["test_neg_elbo"] - metrics["test_nll"] < 50
    per_image(out, metrics, {"nll": "test_nll", "neg_elbo": "test_neg_elbo"})

    for name in ("samples.png", "reconstructions.png", "tau.png", "loss.png"):
        (out / name).unlink()
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: pytest.fail("--load must not train"))
    again = gs.main(argv + ["--load"])
    for name in ("samples.png", "reconstructions.png", "tau.png", "loss.png"):
        assert (out / name).is_file(), name
    assert again["final_tau"] == metrics["final_tau"]  # tau is restored with the weights
    assert again["test_nll"] == pytest.approx(metrics["test_nll"], rel=1e-6)
    assert again["test_neg_elbo"] == pytest.approx(metrics["test_neg_elbo"], rel=1e-6)
