"""Gaussian VAE on MNIST with a 2-D latent space, ported to Keras 3.

Reproduces the MLP VAE of Su Jianlin's VAE series (https://kexue.fm/archives/7725 and the
earlier posts; Kingma & Welling, "Auto-Encoding Variational Bayes", 2014).

Usage:
    python vae_keras.py            # 50 epochs, 3 to 7 minutes on 2 CPU cores
    python vae_keras.py --help     # every setting
Writes results/vae_keras/: latent_scatter.png, manifold.png, loss.png, metrics.json,
history.csv, config.json and the weights. Validation loss ends near 152 nats.

Deviations from the original:
- Keras 3: the loss is added by a small layer (`VAELoss`) instead of `Model.add_loss` on a
  symbolic tensor, and the reparameterisation is a serialisable layer instead of a `Lambda`.
- Keras 3 on TensorFlow computes the binary cross-entropy of a sigmoid output from its logits,
  so the training loss is not clipped at 1e-7 as Keras 2's was (a difference only for pixels
  the decoder is extremely sure of).
- Beyond the blog: the test negative log-likelihood by importance sampling (K = 500).
"""
import dataclasses
import math

import common  # noqa: F401  (selects the TensorFlow backend before Keras is imported)
import keras
import numpy as np
from keras import layers, ops
from scipy.stats import norm

from common import plotting, run


@dataclasses.dataclass(frozen=True)
class Config(run.RunConfig):
    original_dim: int = run.arg(784, "pixels per image (28 x 28)", choices=[784])
    intermediate_dim: int = run.arg(256, "hidden units of the encoder and decoder", ge=1)
    latent_dim: int = run.arg(2, "latent dimensions (figures need 2)", ge=1)
    epochs: int = run.arg(50, "number of training epochs", ge=1)
    batch_size: int = run.arg(100, "images per training batch", ge=1)
    is_samples: int = run.arg(500, "importance samples K per test image for the NLL", ge=1)
    is_images: int = run.arg(10000, "test images used for the NLL (10,000: the whole test set)",
                             ge=1, le=10000)


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


def summed_bce(x, x_decoded_mean):
    """Binary cross-entropy summed over the pixels.

    Keras on TensorFlow evaluates it from the logits behind the decoder's sigmoid output (in
    training and in the importance sampling alike), so it is not clipped at 1e-7.
    """
    return ops.sum(ops.binary_crossentropy(x, x_decoded_mean), axis=-1)


def gaussian_kl(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) = -0.5 sum(1 + log s^2 - m^2 - s^2)."""
    return -0.5 * ops.sum(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


@keras.saving.register_keras_serializable("vae_keras")
class VAELoss(layers.Layer):
    """Adds mean over the batch of [summed BCE(x, x_decoded_mean) + KL] as the model's loss."""

    def call(self, inputs):
        x, x_decoded_mean, z_mean, z_log_var = inputs
        self.add_loss(ops.mean(summed_bce(x, x_decoded_mean) + gaussian_kl(z_mean, z_log_var)))
        return x_decoded_mean


# ---------------------------------------------------------------- models


def build_models(cfg):
    """Return (vae, encoder, generator); the generator reuses the decoder's layers."""
    x = keras.Input(shape=(cfg.original_dim,), name="x")
    h = layers.Dense(cfg.intermediate_dim, activation="relu")(x)
    z_mean = layers.Dense(cfg.latent_dim, name="z_mean")(h)
    z_log_var = layers.Dense(cfg.latent_dim, name="z_log_var")(h)
    z = Sampling(seed=cfg.seed, name="z")([z_mean, z_log_var])

    decoder_h = layers.Dense(cfg.intermediate_dim, activation="relu", name="decoder_h")
    decoder_mean = layers.Dense(cfg.original_dim, activation="sigmoid", name="decoder_mean")
    x_decoded_mean = decoder_mean(decoder_h(z))
    out = VAELoss(name="vae_loss")([x, x_decoded_mean, z_mean, z_log_var])

    vae = keras.Model(x, out, name="vae")
    vae.compile(optimizer="rmsprop")
    encoder = keras.Model(x, [z_mean, z_log_var], name="encoder")
    z_in = keras.Input(shape=(cfg.latent_dim,), name="z_sample")
    generator = keras.Model(z_in, decoder_mean(decoder_h(z_in)), name="generator")
    return vae, encoder, generator


# ---------------------------------------------------------------- metrics


def log_importance_weights(encoder, generator, x, num_samples):
    """(n, K) array of log p(x|z) + log p(z) - log q(z|x), z ~ q(z|x) = N(z_mean, exp(z_log_var))."""
    z_mean, z_log_var = (np.asarray(a, np.float64) for a in encoder(x, training=False))
    n, d = z_mean.shape
    eps = np.random.standard_normal((n, num_samples, d))
    z = z_mean[:, None] + np.exp(z_log_var[:, None] / 2) * eps
    x_hat = generator(z.reshape(n * num_samples, d).astype("float32"), training=False)
    x_rep = np.repeat(x, num_samples, axis=0)
    log_px_z = -np.asarray(summed_bce(x_rep, x_hat), np.float64).reshape(n, num_samples)
    log_pz = -0.5 * np.sum(z**2, axis=-1) - 0.5 * d * math.log(2 * math.pi)
    log_qz = -0.5 * np.sum(eps**2 + z_log_var[:, None], axis=-1) - 0.5 * d * math.log(2 * math.pi)
    return log_px_z + log_pz - log_qz


def save_figures(cfg, out, encoder, generator, x_test, y_test, history):
    z_mean, _ = encoder.predict(x_test, batch_size=cfg.batch_size, verbose=0)
    plotting.save_scatter(z_mean, y_test, out / "latent_scatter.png",
                          title="test set z_mean, coloured by digit")
    n = 15
    grid = norm.ppf(np.linspace(0.05, 0.95, n))  # standard-normal quantiles
    # row i <-> second coordinate grid[i], column j <-> first coordinate grid[j]
    z = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2).astype("float32")
    plotting.save_grid(generator.predict(z, verbose=0), out / "manifold.png", n=n)
    plotting.save_curves(history, out / "loss.png", ylabel="loss (nats)")


def main(argv=None):
    cfg, out = run.setup(Config, argv, "vae_keras", description=__doc__)
    (x_train, _), (x_test, y_test) = run.load_data(cfg)
    x_train = x_train.reshape(-1, cfg.original_dim)
    x_test = x_test.reshape(-1, cfg.original_dim)
    vae, encoder, generator = build_models(cfg)

    history = run.train_or_load(vae, cfg, out, x_train, validation_data=(x_test, None))
    if cfg.latent_dim == 2:
        save_figures(cfg, out, encoder, generator, x_test, y_test, history)

    np.random.seed(cfg.seed)
    nll, nll_se = run.importance_sampled_nll(
        lambda xb, k: log_importance_weights(encoder, generator, xb, k),
        x_test[: cfg.is_images], cfg.is_samples)
    summary = run.history_summary(history)
    metrics = {
        **summary,
        "test_neg_elbo": summary["final_val_loss"],  # the loss is already the complete -ELBO
        "test_nll_is": nll,
        "test_nll_is_stderr": nll_se,
        "is_samples": cfg.is_samples,
        "is_images": cfg.is_images,
    }
    return run.finish(out, vae, metrics)


if __name__ == "__main__":
    main()
