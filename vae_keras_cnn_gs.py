"""Convolutional VAE on MNIST with discrete latents (Gumbel-Softmax), ported to Keras 3.

Reproduces the discrete-latent VAE of Su Jianlin's post on reparameterisation
(https://kexue.fm/archives/6705; Jang, Gu & Poole, "Categorical Reparameterization with
Gumbel-Softmax", 2017; Maddison, Mnih & Teh, "The Concrete Distribution", 2017). The code is
32 categorical latents with 10 classes each; training relaxes each one-hot class to
softmax((logits + Gumbel noise) / tau) and anneals tau from 1 towards 0.01.

Usage:
    python vae_keras_cnn_gs.py          # the blog's settings: 30 epochs of RMSprop, batch 100,
                                        # then the importance-sampled NLL
    python vae_keras_cnn_gs.py --help   # every setting
Writes results/vae_keras_cnn_gs/: samples.png, reconstructions.png, tau.png, loss.png,
metrics.json, test_per_image.npy (each test image's NLL and discrete -ELBO), history.csv (with
tau per epoch), config.json and the weights (run times and results: the README's table).

Deviations from the original:
- Keras 3: the loss is added by a small layer (`GumbelVAELoss`) instead of `Model.add_loss` on a
  symbolic tensor; tau is a non-trainable weight of the `GumbelSoftmax` layer, assigned by the
  `TauAnnealing` callback. The blog's parameter count, 299,202, includes tau: 299,201 weights
  are trained (metrics.json's `trainable_params`) and tau makes one more. Keras' count here is
  one higher again: the layer's batch counter, from which it sets tau, is a weight too.
- tau follows the blog's "r <- 0.999 r before each batch" in closed form, tau = tau_min +
  (tau_max - tau_min) * decay^t with t the layer's own count of training batches (a weight, so
  it is saved and resumed), evaluated by the layer inside
  the compiled training step (the `TauAnnealing` callback installs it): exact for every batch
  although 20 batches run per compiled call (for speed; `--plain-keras` runs one), and it
  survives an interrupted and resumed run. The value printed at an epoch's start is the tau of
  that epoch's first batch (the blog prints the one left over from the previous batch).
- The decoder's last convolution and its sigmoid are two layers, and the loss is computed from
  the logits between them, so it is not clipped at 1e-7 as the blog's is; the metrics use the
  same logits.
- The blog's loss leaves out the constant 32 ln 10 = 73.683 nats of the KL to the uniform prior;
  metrics.json reports the loss with and without it.
- Beyond the blog: the -ELBO of the discrete model (one-hot codes sampled from the encoder's
  categorical distributions, closed-form KL) and the test negative log-likelihood by importance
  sampling with one-hot codes (K = 500). The relaxed figure, loss + 73.683, scores relaxed codes
  against a categorical KL and so bounds nothing; the discrete -ELBO bounds the discrete NLL.
- For the post's claims: `--relaxation softmax` anneals a plain softmax (no Gumbel noise), and
  `--gradient-draws N` measures the variance of the score-function (REINFORCE) gradient against
  the reparameterised one on the trained encoder and decoder, and the reparameterised
  gradient's size at taus from 1 to 0.01.
- The convolutions are Keras' layers, which on JAX compute their sums as matrix products and
  on PyTorch hand PyTorch the channels-last input as it lies (`common/kernels.py`: the same
  sums; on JAX several times faster for the transposed ones, on PyTorch the model's gradients
  about 1.2x and its decoding 1.4x faster, results/README.md).
- `--precision bfloat16` (opt-in): the hidden layers' products in bfloat16 by Keras' mixed
  policy; weights, the code's logits, the Gumbel-Softmax and the loss stay float32
  (results/benchmarks/ says what it trades).
"""
import dataclasses
import math

from common import startup  # noqa: E402,F401  first: backend, quiet start, Ctrl-C (its docstring)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402
from scipy.special import log_softmax  # noqa: E402

from common import evaluation, kernels, plotting, run  # noqa: E402

if keras.backend.backend() == "jax":  # the tau schedule works in float64: JAX's
    import jax  # 64-bit mode is off unless turned on

    jax.config.update("jax_enable_x64", True)

EPSILON = 1e-7  # Keras' fuzz factor, keras.config.epsilon()


@dataclasses.dataclass(frozen=True)
class Config(run.RunConfig):
    num_latents: int = run.arg(32, "categorical latent variables in a code", ge=1, le=1024)
    classes_per_latent: int = run.arg(10, "classes of each latent variable", ge=2, le=1024)
    tau_max: float = run.arg(1.0, "temperature tau at the first training batch", gt=0.0,
                             le=100.0)
    tau_min: float = run.arg(0.01, "temperature tau approaches this value", gt=0.0, le=100.0)
    tau_decay: float = run.arg(0.999, "per-batch factor r <- decay * r of tau - tau_min (1: "
                               "tau stays at --tau-max)", gt=0.0, le=1.0)
    relaxation: str = run.arg("gumbel", "the relaxed code in training: 'gumbel', "
                              "softmax((logits + Gumbel noise) / tau) as in the blog, or "
                              "'softmax', softmax(logits / tau) with no noise",
                              choices=["gumbel", "softmax"])
    gradient_draws: int = run.arg(0, "after training, estimate the variance of the gradient of "
                                  "-log p(x|code) with respect to the encoder's logits over this "
                                  "many single-sample estimates per image, reparameterised and "
                                  "score-function (REINFORCE); 0: skip", ge=0, le=100_000,
                                  evaluation=True)
    epochs: int = run.arg(30, "number of training epochs", ge=1, le=10_000)
    is_samples: int = run.arg(500, "importance samples K (one-hot codes) per test image for the "
                                   "NLL and the discrete -ELBO", ge=1, le=100_000, evaluation=True)
    is_images: int = run.arg(10000, "test images used for the NLL and the discrete -ELBO "
                                    "(10,000: the whole test set)", ge=1, le=10000, evaluation=True)

    def validate(self):
        if self.num_latents * self.classes_per_latent > 65_536:
            raise ValueError("--num-latents x --classes-per-latent must be <= 65536 (got "
                             f"{self.num_latents * self.classes_per_latent}): each image's "
                             "importance samples hold that many numbers per sample")
        if self.tau_min > self.tau_max:
            raise ValueError(f"--tau-min must be <= --tau-max (got {self.tau_min} > {self.tau_max})")

    @property
    def kl_constant(self):
        """num_latents * ln(classes_per_latent): the KL's part the blog's loss leaves out."""
        return self.num_latents * math.log(self.classes_per_latent)


# ---------------------------------------------------------------- layers


@keras.saving.register_keras_serializable("vae_keras_cnn_gs")
class GumbelSoftmax(layers.Layer):
    """Relaxed one-hot sample: softmax((logits + g) / tau) over the last axis.

    g = -log(-log(u + eps) + eps), u ~ U(0, 1), is Gumbel noise, so argmax(logits + g) is a
    class drawn with probabilities softmax(logits) (Gumbel-Max). tau is a non-trainable weight
    read at every call, so assigning it changes what an already compiled step computes. Once
    `anneal` has given it a schedule, every training call first sets tau from the schedule and
    `step`, the layer's count of training calls (one per batch; a weight, so it survives a
    resume, and model state, so every backend updates it inside its compiled step). Samples in
    training and validation alike, as the blog's graph does.
    """

    def __init__(self, tau=1.0, seed=None, noise=True, **kwargs):
        super().__init__(**kwargs)
        self.initial_tau = float(tau)
        self.seed, self.noise = seed, noise  # noise=False: a plain softmax(logits / tau)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.tau = self.add_weight(shape=(), name="tau", trainable=False,
                                   initializer=keras.initializers.Constant(self.initial_tau))
        self.step = self.add_weight(shape=(), name="step", trainable=False, dtype="int32",
                                    initializer="zeros")
        self.schedule = None

    def anneal(self, tau_at):
        """From now on, training call t (from 0) first sets tau = tau_at(t)."""
        self.schedule = tau_at

    def call(self, logits, training=False):
        if training and self.schedule is not None:
            self.tau.assign(ops.cast(self.schedule(ops.cast(self.step, "float64")), self.tau.dtype))
            self.step.assign(self.step + 1)
        if self.noise:
            u = keras.random.uniform(ops.shape(logits), seed=self.seed_generator)
            logits = logits - ops.log(-ops.log(u + EPSILON) + EPSILON)
        return ops.softmax(logits / ops.cast(self.tau, logits.dtype), axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "tau": self.initial_tau, "seed": self.seed,
                "noise": self.noise}


GRADIENT_IMAGES = 100  # test images for --gradient-draws
TAU_GRID = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)  # taus at which --gradient-draws measures norms
# codes per compiled call when the NLL decodes its samples: faster than batches of 1000 in
# benchmarks/roofline.py's comparison, and the logits are the same to the bit
NLL_DECODE_BATCH = 100


def sum_p_log_p(logits):
    """The blog's KL term: sum over latents and classes of p log p, p = clip(softmax, eps, 1-eps).

    With a uniform prior the KL is this plus num_latents * ln(classes_per_latent).
    """
    p = ops.clip(ops.softmax(logits, axis=-1), EPSILON, 1 - EPSILON)
    return ops.sum(p * ops.log(p), axis=(1, 2))


@keras.saving.register_keras_serializable("vae_keras_cnn_gs")
class GumbelVAELoss(layers.Layer):
    """Adds mean over the batch of [-log p(x|z) + sum p log p] as the model's loss.

    -log p(x|z) is the binary cross-entropy of x against sigmoid(x_logits), summed over pixels;
    x_logits is passed on as the layer's output.
    """

    def call(self, inputs):
        x, x_logits, logits = inputs
        reconstruction = -evaluation.bernoulli_log_likelihood(x, x_logits)
        self.add_loss(ops.mean(reconstruction + sum_p_log_p(logits)))
        return x_logits

    def compute_output_shape(self, input_shapes):
        return input_shapes[1]


class TauAnnealing(keras.callbacks.Callback):
    """The blog's tau schedule: before training batch t, tau = tau_min + (tau_max - tau_min) decay^t.

    The blog's callback sets tau from Python before every batch. This one hands the schedule to
    the layer when training begins, and the layer evaluates it inside the compiled step from its
    own count of training batches: so it holds for every batch when several batches run per
    call, and survives a resume. At an epoch's start it prints tau; at its end `logs["tau"]` is
    the tau of its last batch, which the validation pass also uses.
    """

    def __init__(self, layer, tau_max=1.0, tau_min=0.01, decay=0.999):
        super().__init__()
        self.layer, self.tau_max, self.tau_min, self.decay = layer, tau_max, tau_min, decay

    def tau_at(self, t):
        return self.tau_min + (self.tau_max - self.tau_min) * self.decay ** t

    def on_train_begin(self, logs=None):
        self.layer.anneal(self.tau_at)
        self.model.make_train_function(force=True)  # a step traced before would skip the schedule

    def on_epoch_begin(self, epoch, logs=None):
        tau = self.tau_at(int(ops.convert_to_numpy(self.layer.step)))
        self.layer.tau.assign(tau)
        print(f"epoch: {epoch + 1}, tau: {tau:.5f}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["tau"] = float(ops.convert_to_numpy(self.layer.tau))


# ---------------------------------------------------------------- models


def build_models(cfg):
    """Return (vae, encoder, decoder): x -> logits of the code, code -> x_decoded."""
    shape = (cfg.num_latents, cfg.classes_per_latent)
    f32 = "float32"  # --precision bfloat16: what stays float32 (run.precision)
    with run.precision(cfg):
        x_in = keras.Input(shape=(28, 28, 1), name="x")
        h = x_in
        for filters in (32, 64):
            h = kernels.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(h)
        h = layers.Flatten()(h)
        h = layers.Dense(32, activation="relu")(h)
        logits = layers.Reshape(shape, name="logits", dtype=f32)(
            layers.Dense(shape[0] * shape[1])(h))
        z = GumbelSoftmax(tau=cfg.tau_max, seed=cfg.seed, noise=cfg.relaxation == "gumbel",
                          name="z", dtype=f32)(logits)

        c_in = keras.Input(shape=shape, name="code")
        h = layers.Flatten()(c_in)
        h = layers.Dense(32, activation="relu")(h)
        h = layers.Dense(7 * 7 * 64, activation="relu")(h)
        h = layers.Reshape((7, 7, 64))(h)
        for filters in (64, 32):
            h = kernels.Conv2DTranspose(filters, 3, strides=2, padding="same",
                                        activation="relu")(h)
        x_logits = kernels.Conv2DTranspose(1, 3, padding="same", name=evaluation.LOGITS_LAYER)(h)
        x_decoded = layers.Activation("sigmoid", name="x_decoded", dtype=f32)(x_logits)
        decoder = keras.Model(c_in, x_decoded, name="decoder")

        out = GumbelVAELoss(name="vae_loss", dtype=f32)(
            [x_in, evaluation.logits_model(decoder)(z), logits])
        vae = keras.Model(x_in, out, name="vae")
    # 20 steps per call saves the per-batch overhead; the gain on a full epoch varies between runs
    # (results/README.md, Benchmarks). XLA is slower: its CPU convolutions lose to oneDNN's.
    run.compile_model(vae, cfg, "rmsprop", steps_per_execution=20)
    encoder = keras.Model(x_in, logits, name="encoder")
    return vae, encoder, decoder


# ---------------------------------------------------------------- figures


def save_figures(cfg, out, encoder, decoder, x_test, history, rng):
    n = 15
    eye = np.eye(cfg.classes_per_latent, dtype="float32")
    codes = eye[rng.integers(cfg.classes_per_latent, size=(n * n, cfg.num_latents))]
    plotting.save_grid(decoder.predict(codes, verbose=0), out / "samples.png", n=n,
                       title=f"each digit decoded from {cfg.num_latents} uniformly random "
                             f"one-hot classes")
    x = x_test[:50]
    logits = encoder.predict(x, verbose=0)
    x_hat = decoder.predict(eye[np.argmax(logits, axis=-1)], verbose=0)
    plotting.save_pairs(x, x_hat, out / "reconstructions.png",
                        title="test digits (odd columns) and the decoding of each one's most "
                              "probable one-hot code (even)")
    plotting.save_curves(history, out / "tau.png", ylabel="loss (nats, without 32 ln 10)",
                         twin="tau", title="loss and tau (right axis, log scale, last batch) "
                                           "per epoch")
    plotting.save_curves(history, out / "loss.png", ylabel="loss (nats, without 32 ln 10)")


# ---------------------------------------------------------------- metrics


def one_hot_samples(encoder, decoder_logits, x, num_samples, rng,
                    batch_size=NLL_DECODE_BATCH):
    """Decode K one-hot codes per image drawn from the encoder's categorical distributions.

    Returns (log_w, neg_elbo). log_w (n, K) = log p(x|c) + log p(c) - log q(c|x) for codes
    c ~ q(c|x) = prod Cat(softmax(logits)), with the uniform prior log p(c) = -latents ln classes.
    neg_elbo (n,) = mean over the K codes of the summed BCE + KL(q(c|x) || uniform), the KL in
    closed form, sum p log p + latents ln classes, with p from an unclipped log-softmax.
    """
    log_p = log_softmax(evaluation.infer(encoder, x), axis=-1)
    n, latents, classes = log_p.shape
    gumbel = rng.gumbel(size=(n, num_samples, latents, classes))
    c = np.argmax(log_p[:, None] + gumbel, axis=-1)  # Gumbel-Max: c ~ Cat(p), shape (n, K, latents)
    log_q = np.take_along_axis(log_p[:, None], c[..., None], axis=-1)[..., 0].sum(-1)
    codes = np.eye(classes, dtype="float32")[c.reshape(n * num_samples, latents)]
    logits = evaluation.predict_in_batches(decoder_logits, codes, batch_size)
    log_px_c = evaluation.sample_log_likelihoods(x, logits, num_samples)
    log_prior = -latents * math.log(classes)
    kl = np.sum(np.exp(log_p) * log_p, axis=(1, 2)) - log_prior
    return log_px_c + log_prior - log_q, -log_px_c.mean(1) + kl


def discrete_metrics(encoder, decoder, x, num_samples, rng):
    """Test NLL by importance sampling and the discrete -ELBO, both from the same one-hot codes."""
    decoder_logits = evaluation.logits_model(decoder)
    neg_elbo = []

    def log_weights(xb, k):
        log_w, neg_elbo_b = one_hot_samples(encoder, decoder_logits, xb, k, rng)
        neg_elbo.append(neg_elbo_b)
        return log_w

    metrics, images = evaluation.importance_sampled_nll(log_weights, x, num_samples)
    neg_elbo = np.concatenate(neg_elbo)
    return ({**metrics, "test_neg_elbo": float(neg_elbo.mean()),
             "test_neg_elbo_stderr": evaluation.standard_error(neg_elbo)},
            {"nll": images["nll"], "neg_elbo": neg_elbo})


def gradient_estimates(decoder_logits, x, logits, g, taus):
    """Single-sample estimates of d E_q[f(c)] / d logits for one image, f(c) = -log p(x|c).

    `logits` (latents, classes) are the image's, `g` (draws, latents, classes) Gumbel draws.
    Score function (REINFORCE, no baseline): f(c) (onehot(c) - p), c = argmax(logits + g) ~
    Cat(p), p = softmax(logits): unbiased. Reparameterised, for each tau of `taus`: the gradient
    of f(y) through y = softmax((logits + g) / tau), from the same draws: the gradient of the
    relaxed objective. Returns (REINFORCE's (draws, latents, classes), [one such per tau]).
    """
    draws, _, classes = g.shape
    p = np.exp(log_softmax(logits, axis=-1))
    xs = np.repeat(np.asarray(x, "float32").reshape(1, -1), draws, axis=0)
    onehot = np.eye(classes, dtype="float32")[np.argmax(logits + g, axis=-1)]
    f = -evaluation.sample_log_likelihoods(
        xs[:1], evaluation.infer(decoder_logits, onehot, "float32"), draws)[0]
    reinforce = f[:, None, None] * (onehot - p)
    reparam = []
    for tau in taus:
        y = np.exp(log_softmax((logits + g) / tau, axis=-1)).astype("float32")
        df_dy = evaluation.input_gradient(
            lambda v: -evaluation.bernoulli_log_likelihood(
                xs, ops.reshape(decoder_logits(v), (draws, -1))), y)
        # through the softmax: d/da_j = y_j (df/dy_j - sum_k y_k df/dy_k), a = (logits + g) / tau
        reparam.append(y * (df_dy - np.sum(y * df_dy, axis=-1, keepdims=True)) / tau)
    return reinforce, reparam


def gradient_variances(encoder, decoder, x, draws, taus, rng):
    """For each image, the variance of each logit's estimate (gradient_estimates) over `draws`
    estimates, summed over the logits. Returns the mean over images: (REINFORCE's, [the
    reparameterised one's at each tau], and for each tau the reparameterised estimates' norms:
    {"median": the median over images and draws of one estimate's norm, "mean": their mean,
    "of_mean": the mean over images of the norm of the estimates' mean})."""
    decoder_logits = evaluation.logits_model(decoder)
    logits = evaluation.infer(encoder, x)
    reinforce, reparam, norms, mean_norms = [], [], [], []
    for xi, li in zip(x, logits):
        r, rp = gradient_estimates(decoder_logits, xi, li, rng.gumbel(size=(draws, *li.shape)),
                                   taus)
        reinforce.append(r.var(0, ddof=1).sum())
        reparam.append([e.var(0, ddof=1).sum() for e in rp])
        norms.append([np.sqrt(np.sum(e.astype(np.float64) ** 2, axis=(1, 2))) for e in rp])
        mean_norms.append([np.linalg.norm(e.astype(np.float64).mean(0)) for e in rp])
    norms = np.asarray(norms)  # (images, taus, draws)
    summary = [{"median": float(np.median(norms[:, t])), "mean": float(norms[:, t].mean()),
                "of_mean": float(np.mean(np.asarray(mean_norms)[:, t]))}
               for t in range(len(taus))]
    return float(np.mean(reinforce)), np.mean(reparam, axis=0).tolist(), summary


def gradient_metrics(encoder, decoder, x, cfg, final_tau, rng):
    """gradient_variances at tau = --tau-max and at the run's final tau, and the ratios."""
    print(f"gradient variances: {len(x)} images x {cfg.gradient_draws} draws")
    taus = {"tau_max": cfg.tau_max, "final_tau": final_tau}
    grid = [tau for tau in TAU_GRID if tau not in taus.values()]
    reinforce, reparam, norms = gradient_variances(encoder, decoder, x, cfg.gradient_draws,
                                                   [*taus.values(), *grid], rng)
    metrics = {"gradient_images": len(x), "gradient_draws": cfg.gradient_draws,
               "grad_var_reinforce": reinforce}
    for name, var in zip(taus, reparam):
        metrics.update({f"grad_var_reparam_{name}": var, f"grad_var_ratio_{name}": reinforce / var})
    by_tau = dict(zip([*taus.values(), *grid], norms))
    metrics["grad_norm_by_tau"] = {f"{tau:g}": by_tau[tau] for tau in sorted(by_tau, reverse=True)}
    return metrics


def main(argv=None, callbacks=()):
    """Train (or --load), then write the figures and metrics.json; returns the metrics.

    `callbacks` are extra Keras callbacks for training (the tests simulate a kill with one).
    """
    with run.setup(Config, argv, "vae_keras_cnn_gs", description=__doc__) as job:
        cfg = job.cfg
        rng = np.random.default_rng(cfg.seed)
        (x_train, _), (x_test, _) = run.load_data(cfg)
        x_train, x_test = x_train[..., None], x_test[..., None]
        vae, encoder, decoder = build_models(cfg)
        gumbel = vae.get_layer("z")

        annealing = TauAnnealing(gumbel, cfg.tau_max, cfg.tau_min, cfg.tau_decay)
        history = job.train_or_load(vae, x_train, validation_data=(x_test, None),
                                    callbacks=[annealing, *callbacks])
        stage = job.pending()  # the figures' folder until the run is published
        save_figures(cfg, stage, encoder, decoder, x_test, history, rng)
        discrete, images = discrete_metrics(encoder, decoder, x_test[: cfg.is_images],
                                            cfg.is_samples, rng)

        summary = run.history_summary(history)
        metrics = {
            **summary,
            "test_loss": summary["final_val_loss"],
            "final_tau": float(ops.convert_to_numpy(gumbel.tau)),
            "kl_constant": cfg.kl_constant,
            "test_relaxed_neg_elbo": summary["final_val_loss"] + cfg.kl_constant,
            **discrete,
            **evaluation.save_per_image(stage, images),
        }
        if cfg.gradient_draws:
            metrics.update(gradient_metrics(encoder, decoder, x_test[:GRADIENT_IMAGES], cfg,
                                            metrics["final_tau"], rng))
        return job.finish(vae, metrics)


if __name__ == "__main__":
    run.cli(main)
