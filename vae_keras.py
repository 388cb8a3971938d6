"""Gaussian VAE on MNIST with a 2-D latent space, ported to Keras 3.

Reproduces the MLP VAE of Su Jianlin's VAE series: the script was first published with
"Variational autoencoders (1)" (https://kexue.fm/archives/5253), and "Variational autoencoders
(6): a geometric view" (https://kexue.fm/archives/7725) explains the model with it (Kingma &
Welling, "Auto-Encoding Variational Bayes", 2014). Equation numbers are 7725's.

Usage:
    python vae_keras.py            # the blog's settings: 50 epochs of RMSprop, batch 100
    python vae_keras.py --help     # every setting
Writes results/vae_keras/: latent_scatter.png, manifold.png, loss.png, metrics.json,
test_per_image.npy (each test image's NLL and -ELBO), history.csv, config.json and the weights (run times and results: the README's table).

Deviations from the original:
- Keras 3: the loss is added by a small layer (`VAELoss`) instead of `Model.add_loss` on a
  symbolic tensor, and the reparameterisation is a serialisable layer instead of a `Lambda`.
- The decoder's last Dense and its sigmoid are two layers, and the loss is computed from the
  logits between them, so it is not clipped at 1e-7 as Keras 2's was (a difference only for
  pixels the decoder is extremely sure of).
- Speed: training runs with XLA and 20 batches per compiled call (`--plain-keras` for Keras'
  defaults); same arithmetic, measured by benchmarks/epoch_time.py.
- `--precision bfloat16` (opt-in): the hidden layers' products in bfloat16 by Keras' mixed
  policy; weights, the codes' heads, the sampler and the loss stay float32
  (results/benchmarks/ says what it trades).
- The post's objective (eq. 5) is a squared error plus the KL; the script, as the blog's, trains
  with the summed binary cross-entropy (`--reconstruction mse` runs eq. 5; the claims table in
  results/README.md compares them).
- Beyond the blog: the test negative log-likelihood by importance sampling (K = 500), the holes
  in the code space (`latent_empty_cells`), and the post's variants: eq. 3's regulariser
  (`--regulariser eq3`) and none at all (`--regulariser none`, an autoencoder).
"""
import dataclasses
import math

from common import startup  # noqa: E402,F401  first: backend, quiet start, Ctrl-C (its docstring)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402
from scipy.stats import norm  # noqa: E402

from common import evaluation, plotting, run  # noqa: E402

ORIGINAL_DIM = 784  # pixels per image, 28 x 28 (the blog's original_dim)
REGULARISERS = ("kl", "eq3", "none")


@dataclasses.dataclass(frozen=True)
class Config(run.RunConfig):
    intermediate_dim: int = run.arg(256, "hidden units of the encoder and decoder", ge=1,
                                    le=65_536)
    latent_dim: int = run.arg(2, "latent dimensions (figures need 2)", ge=1, le=1024)
    regulariser: str = run.arg("kl", "the term that pulls the codes to the prior: 'kl', the VAE's "
                               "KL divergence; 'eq3', the post's simpler |mu|^2 + |sigma - 1|^2; "
                               "'none', an autoencoder (with the sampling noise, whose sigma "
                               "then shrinks)", choices=list(REGULARISERS))
    reconstruction: str = run.arg("bce", evaluation.RECONSTRUCTION_HELP,
                                  choices=list(evaluation.RECONSTRUCTIONS))
    is_samples: int = run.arg(500, "importance samples K per test image for the NLL", ge=1,
                              le=100_000, evaluation=True)
    is_images: int = run.arg(10000, "test images used for the NLL (10,000: the whole test set)",
                             ge=1, le=10000, evaluation=True)


# ---------------------------------------------------------------- layers


@keras.saving.register_keras_serializable("vae_keras")
class Sampling(layers.Layer):
    """Reparameterisation: z = z_mean + exp(z_log_var / 2) * eps, eps ~ N(0, I).

    Samples in training and validation alike, as the blog's graph does.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(z_log_var / 2) * eps

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def gaussian_kl(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) = -0.5 sum(1 + log s^2 - m^2 - s^2)."""
    return -0.5 * ops.sum(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


def regulariser_term(z_mean, z_log_var, kind="kl"):
    """Per image: the KL ('kl'), the post's eq. 3, |mu|^2 + |sigma - 1|^2 ('eq3'), or 0 ('none')."""
    if kind == "kl":
        return gaussian_kl(z_mean, z_log_var)
    if kind == "eq3":
        return ops.sum(ops.square(z_mean) + ops.square(ops.exp(z_log_var / 2) - 1), axis=-1)
    return ops.zeros_like(z_mean[:, 0])


@keras.saving.register_keras_serializable("vae_keras")
class VAELoss(layers.Layer):
    """Adds mean over the batch of [-log p(x|z) + KL] as the model's loss; passes x_logits on.

    -log p(x|z) is the binary cross-entropy of x against sigmoid(x_logits), summed over pixels.
    `reconstruction="mse"` and `regulariser="eq3"` or `"none"` swap either term for the post's
    alternatives (evaluation.reconstruction_loss, regulariser_term).
    """

    def __init__(self, reconstruction="bce", regulariser="kl", **kwargs):
        super().__init__(**kwargs)
        self.reconstruction, self.regulariser = reconstruction, regulariser

    def call(self, inputs):
        x, x_logits, z_mean, z_log_var = inputs
        reconstruction = evaluation.reconstruction_loss(x, x_logits, self.reconstruction)
        self.add_loss(ops.mean(reconstruction
                               + regulariser_term(z_mean, z_log_var, self.regulariser)))
        return x_logits

    def get_config(self):
        return {**super().get_config(), "reconstruction": self.reconstruction,
                "regulariser": self.regulariser}


# ---------------------------------------------------------------- models


def build_models(cfg):
    """Return (vae, encoder, decoder): x -> [z_mean, z_log_var], z -> x_decoded_mean.

    With --precision bfloat16 the hidden layers and the logits compute in bfloat16; the codes'
    heads, the sampler, the sigmoid and the loss (dtype float32) stay float32."""
    f32 = "float32"
    with run.precision(cfg):
        x = keras.Input(shape=(ORIGINAL_DIM,), name="x")
        h = layers.Dense(cfg.intermediate_dim, activation="relu")(x)
        z_mean = layers.Dense(cfg.latent_dim, name="z_mean", dtype=f32)(h)
        z_log_var = layers.Dense(cfg.latent_dim, name="z_log_var", dtype=f32)(h)
        z = Sampling(seed=cfg.seed, name="z", dtype=f32)([z_mean, z_log_var])
        encoder = keras.Model(x, [z_mean, z_log_var], name="encoder")

        z_in = keras.Input(shape=(cfg.latent_dim,), name="z_sample")
        h = layers.Dense(cfg.intermediate_dim, activation="relu", name="decoder_h")(z_in)
        x_logits = layers.Dense(ORIGINAL_DIM, name=evaluation.LOGITS_LAYER)(h)
        x_decoded_mean = layers.Activation("sigmoid", name="decoder_mean", dtype=f32)(x_logits)
        decoder = keras.Model(z_in, x_decoded_mean, name="decoder")

        out = VAELoss(cfg.reconstruction, cfg.regulariser, name="vae_loss", dtype=f32)(
            [x, evaluation.logits_model(decoder)(z), z_mean, z_log_var])
        vae = keras.Model(x, out, name="vae")
    # XLA and 20 steps per call: faster on CPU, the same arithmetic (benchmarks/epoch_time.py)
    run.compile_model(vae, cfg, "rmsprop", jit_compile=True, steps_per_execution=20)
    return vae, encoder, decoder


# ---------------------------------------------------------------- figures


def save_figures(cfg, out, encoder, decoder, x_test, y_test, history):
    plotting.save_curves(history, out / "loss.png", ylabel="loss (nats)")
    if cfg.latent_dim != 2:
        return
    z_mean, _ = encoder.predict(x_test, batch_size=cfg.batch_size, verbose=0)
    plotting.save_scatter(z_mean, y_test, out / "latent_scatter.png",
                          title="test set z_mean, coloured by digit")
    n = 15
    grid = norm.ppf(np.linspace(0.05, 0.95, n))  # standard-normal quantiles
    # row i <-> second coordinate grid[i], column j <-> first coordinate grid[j]
    z = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
    title = None
    if cfg.regulariser == "none":  # no prior to sample: the grid covers where the codes lie
        z = z_mean.mean(0) + z * z_mean.std(0)
        title = "grid: the test codes' mean + their sd x standard-normal quantiles, per axis"
    plotting.save_grid(decoder.predict(z.astype("float32"), verbose=0), out / "manifold.png",
                       n=n, title=title)


def empty_cells(z, bins=20):
    """Holes in a 2-D code space: the fraction of a bins x bins grid over the central 98% of the
    codes (1st to 99th percentile per axis) in which no code falls."""
    lo, hi = np.percentile(z, 1, axis=0), np.percentile(z, 99, axis=0)
    counts, _, _ = np.histogram2d(z[:, 0], z[:, 1], bins=bins, range=list(zip(lo, hi)))
    return float(np.mean(counts == 0))


# ---------------------------------------------------------------- metrics


def log_importance_weights(encoder, decoder_logits, x, num_samples, rng):
    """(n, K) array of log p(x|z) + log p(z) - log q(z|x), z ~ q(z|x) = N(z_mean, exp(z_log_var))."""
    z_mean, z_log_var = evaluation.infer(encoder, x)
    n, d = z_mean.shape
    eps = rng.standard_normal((n, num_samples, d))
    z = z_mean[:, None] + np.exp(z_log_var[:, None] / 2) * eps
    logits = evaluation.infer(decoder_logits, z.reshape(n * num_samples, d).astype("float32"),
                              "float32")
    log_px_z = evaluation.sample_log_likelihoods(x, logits, num_samples)
    log_pz = -0.5 * np.sum(z**2, axis=-1) - 0.5 * d * math.log(2 * math.pi)
    log_qz = -0.5 * np.sum(eps**2 + z_log_var[:, None], axis=-1) - 0.5 * d * math.log(2 * math.pi)
    return log_px_z + log_pz - log_qz


def main(argv=None, callbacks=()):
    """Train (or --load), then write the figures and metrics.json; returns the metrics.

    `callbacks` are extra Keras callbacks for training (the tests simulate a kill with one).
    """
    with run.setup(Config, argv, "vae_keras", description=__doc__) as job:
        cfg = job.cfg
        rng = np.random.default_rng(cfg.seed)
        (x_train, _), (x_test, y_test) = run.load_data(cfg)
        x_train = x_train.reshape(-1, ORIGINAL_DIM)
        x_test = x_test.reshape(-1, ORIGINAL_DIM)
        vae, encoder, decoder = build_models(cfg)

        history = job.train_or_load(vae, x_train, validation_data=(x_test, None),
                                    callbacks=callbacks)
        stage = job.pending()  # the figures' folder until the run is published
        save_figures(cfg, stage, encoder, decoder, x_test, y_test, history)

        decoder_logits = evaluation.logits_model(decoder)
        summary = run.history_summary(history)
        sampled, images = evaluation.importance_sampled_nll(
            lambda xb, k: log_importance_weights(encoder, decoder_logits, xb, k, rng),
            x_test[: cfg.is_images], cfg.is_samples)
        elbo_is_loss = (cfg.reconstruction, cfg.regulariser) == ("bce", "kl")
        metrics = {
            **summary,
            "test_loss": summary["final_val_loss"],
            # the blog's loss is the complete -ELBO; the variants' -ELBO comes from the samples
            "test_neg_elbo": summary["final_val_loss"] if elbo_is_loss
            else sampled["test_neg_elbo_sampled"],
            **sampled,
            **evaluation.save_per_image(stage, images),
        }
        if cfg.latent_dim == 2:
            z_mean, z_log_var = evaluation.infer(encoder, x_test)
            metrics.update(latent_empty_cells=empty_cells(z_mean),
                           latent_code_sd=z_mean.std(0).tolist(),
                           latent_mean_sigma=float(np.exp(z_log_var / 2).mean()))
        return job.finish(vae, metrics)


if __name__ == "__main__":
    run.cli(main)
