"""vMF-VAE on MNIST: a VAE whose latent codes live on the unit hypersphere, ported to Keras 3.

Reproduces Su Jianlin's "Variational autoencoders (7): a VAE on the sphere (vMF-VAE)"
(https://kexue.fm/archives/8404; Davidson et al., "Hyperspherical Variational Auto-Encoders",
2018). The encoder outputs a unit vector mu(x); the posterior is von Mises-Fisher,
q(z|x) = C_d(kappa) exp(kappa <mu(x), z>) with kappa fixed, and the prior is uniform on the
sphere, so the KL term is a constant that training leaves out.

Equation numbers are the post's.

Usage:
    python vae_vmf_keras.py          # the blog's settings: d = 4, kappa = 20, 50 epochs of Adam
    python vae_vmf_keras.py --help   # every setting (--kappa, --latent-dim, --table-size, ...)
Writes results/vae_vmf_keras/: samples.png, reconstructions.png, loss.png, metrics.json,
test_per_image.npy (each test image's NLL and -ELBO), history.csv, config.json and the weights (run times and results: the README's table).

Deviations from the original:
- The table of w values is drawn by inverse CDF as in the blog, but the CDF is tabulated on an
  adaptive grid of the angle phi = arccos(w) instead of a uniform 1e-7 grid of w. In phi the
  density exp(kappa cos phi) sin^(d-2) phi has no endpoint singularity (d = 2 included) and the
  grid spans only where the mass is, so the table is exact to ~1e-7 in CDF for any kappa >= 0,
  d >= 2, and far cheaper to build (benchmarks/vmf_table.py measures both).
- The sampler computes in float64 (table, nu and z) and casts z to float32: in float32, large
  kappa (w within 1e-5 of 1) loses digits of sqrt(1 - w^2), and for d = 2 an eps nearly
  parallel to mu leaves nu off orthogonal (|z| off by 1e-3 in a few of 20,000 draws).
- Keras 3: the loss is added by a layer (`ReconstructionLoss`) instead of `Model.add_loss` on a
  symbolic tensor, and the sampler is a serialisable layer instead of a `Lambda`.
- The decoder's last Dense and its sigmoid are two layers, and the loss is computed from the
  logits between them, so it is not clipped at 1e-7 as the blog's is.
- Speed: training runs with XLA and 20 batches per compiled call (`--plain-keras` for Keras'
  defaults); on PyTorch, Adam's update is PyTorch's fused kernel (common/kernels.py's
  `FusedAdam`); same arithmetic, measured by benchmarks/epoch_time.py.
- `--precision bfloat16` (opt-in): the hidden layers' products in bfloat16 by Keras' mixed
  policy; weights, mu(x), the sampler and the loss stay float32
  (results/benchmarks/ says what it trades).
- The sampler's numerics (the vMF constants and the table of w) come last in this file, after
  the model, training, figures and metrics.
- The post's loss (eq. 14) is a squared error; the script, as the blog's, trains with the summed
  binary cross-entropy (`--reconstruction mse` runs eq. 14; the claims table in
  results/README.md compares them).
- Beyond the blog: the KL constant, the complete test -ELBO, the test negative log-likelihood by
  importance sampling (K = 500) and a figure of reconstructions.
"""

import dataclasses
import functools
import math
import numbers

from common import startup  # noqa: E402,F401  first: backend, quiet start, Ctrl-C (its docstring)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402
from scipy.special import gammaln, ive  # noqa: E402

from common import evaluation, kernels, plotting, run  # noqa: E402

if keras.backend.backend() == "jax":  # the sampler works in float64: JAX's
    import jax  # 64-bit mode is off unless turned on

    jax.config.update("jax_enable_x64", True)

ORIGINAL_DIM = 784  # pixels per image, 28 x 28 (the blog's original_dim)


@dataclasses.dataclass(frozen=True)
class Config(run.RunConfig):
    intermediate_dim: int = run.arg(256, "hidden units of the encoder and decoder", ge=1,
                                    le=65_536)
    latent_dim: int = run.arg(4, "dimension d of the latent vectors (on the sphere S^(d-1))",
                              ge=2, le=1024)
    kappa: float = run.arg(20.0, "vMF concentration of the posterior (fixed, not trained); "
                           "above 1e6 the KL constant loses float64 precision", ge=0.0, le=1e6)
    table_size: int = run.arg(10**6, "precomputed inverse-CDF draws of w gathered by the sampler",
                              ge=1, le=10**8)
    reconstruction: str = run.arg("bce", evaluation.RECONSTRUCTION_HELP + " (eq. 14)",
                                  choices=list(evaluation.RECONSTRUCTIONS))
    is_samples: int = run.arg(500, "importance samples K per test image for the NLL", ge=1,
                              le=100_000, evaluation=True)
    is_images: int = run.arg(10000, "test images used for the NLL (10,000: the whole test set)",
                             ge=1, le=10000, evaluation=True)

    def validate(self):
        check_w_table_args(self.kappa, self.latent_dim, self.table_size)


# ---------------------------------------------------------------- layers


@keras.saving.register_keras_serializable("vae_vmf_keras")
class VMFSampling(layers.Layer):
    """Reparameterised z ~ vMF(mu, kappa): z = w mu + sqrt(1 - w^2) nu (eq. 10, 14).

    w is gathered from a table of `table_size` inverse-CDF draws (`build_w_table`) by integer
    indices drawn uniformly at every call; nu = normalise(eps - <eps, mu> mu), eps ~ N(0, I), is
    uniform on the unit vectors orthogonal to mu (eq. 11). The inputs mu must have unit norm.
    The table is a constant rebuilt from (kappa, d = the input's last axis, table_size, seed),
    so it is neither a weight nor part of the config. Samples in training and validation alike.
    The arithmetic runs in float64: in float32, an eps nearly parallel to mu (not rare for
    d = 2) leaves nu visibly off orthogonal, and sqrt(1 - w^2) loses digits when w is near 1.
    """

    def __init__(self, kappa=20.0, table_size=10**6, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_w_table_args(kappa, 2, table_size)
        self.kappa = float(kappa)
        self.table_size = int(table_size)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.dims = int(input_shape[-1])
        self.w_table = ops.convert_to_tensor(
            build_w_table(self.kappa, self.dims, self.table_size, self.seed), dtype="float64")

    def sample_parts(self, mu):
        """(w, nu) in float64: w of shape (batch, 1), nu a unit vector orthogonal to mu."""
        mu = ops.cast(mu, "float64")
        idx = keras.random.randint(ops.shape(mu)[:1], 0, self.table_size, dtype="int32",
                                   seed=self.seed_generator)
        w = ops.expand_dims(ops.take(self.w_table, idx, axis=0), -1)
        eps = keras.random.normal(ops.shape(mu), dtype="float64", seed=self.seed_generator)
        nu = eps - ops.sum(eps * mu, axis=-1, keepdims=True) * mu    # eq. 11
        nu = nu - ops.sum(nu * mu, axis=-1, keepdims=True) * mu      # again, for what rounding left
        return w, ops.normalize(nu, axis=-1, epsilon=1e-150)

    def call(self, mu):
        w, nu = self.sample_parts(mu)
        z = w * ops.cast(mu, "float64") + ops.sqrt((1 - w) * (1 + w)) * nu  # eq. 10
        return ops.cast(z, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kappa": self.kappa, "table_size": self.table_size,
                "seed": self.seed}


@keras.saving.register_keras_serializable("vae_vmf_keras")
class ReconstructionLoss(layers.Layer):
    """Adds the mean over the batch of -log p(x|z) as the model's loss; passes x_logits on.

    -log p(x|z) is the binary cross-entropy of x against sigmoid(x_logits), summed over pixels.
    The KL term is the constant `vmf_kl(kappa, d)` and is left out, as in the blog.
    """

    def __init__(self, reconstruction="bce", **kwargs):
        super().__init__(**kwargs)
        self.reconstruction = reconstruction  # or "mse", the post's eq. 14

    def call(self, inputs):
        x, x_logits = inputs
        self.add_loss(ops.mean(evaluation.reconstruction_loss(x, x_logits, self.reconstruction)))
        return x_logits

    def get_config(self):
        return {**super().get_config(), "reconstruction": self.reconstruction}


# ---------------------------------------------------------------- models


def build_models(cfg):
    """Return (vae, encoder, decoder): x -> z_mean = mu(x) on the sphere, z -> x_decoded_mean."""
    f32 = "float32"  # --precision bfloat16: what stays float32 (run.precision)
    with run.precision(cfg):
        x = keras.Input(shape=(ORIGINAL_DIM,), name="x")
        h = layers.Dense(cfg.intermediate_dim, activation="relu")(x)
        z_mean = layers.Dense(cfg.latent_dim, dtype=f32)(h)
        z_mean = layers.UnitNormalization(name="z_mean", dtype=f32)(z_mean)  # mu(x) on S^(d-1)
        z = VMFSampling(cfg.kappa, cfg.table_size, seed=cfg.seed, name="z", dtype=f32)(z_mean)
        encoder = keras.Model(x, z_mean, name="encoder")

        z_in = keras.Input(shape=(cfg.latent_dim,), name="z_sample")
        h = layers.Dense(cfg.intermediate_dim, activation="relu", name="decoder_h")(z_in)
        x_logits = layers.Dense(ORIGINAL_DIM, name=evaluation.LOGITS_LAYER)(h)
        x_decoded_mean = layers.Activation("sigmoid", name="decoder_mean", dtype=f32)(x_logits)
        decoder = keras.Model(z_in, x_decoded_mean, name="decoder")

        out = ReconstructionLoss(cfg.reconstruction, name="reconstruction_loss", dtype=f32)(
            [x, evaluation.logits_model(decoder)(z)])
        vae = keras.Model(x, out, name="vae_vmf")
    # XLA and 20 steps per call: faster on CPU, the same arithmetic (benchmarks/epoch_time.py).
    # PyTorch's fused Adam kernel: there Keras' Adam is a chain of small ops; XLA fuses it.
    run.compile_model(vae, cfg, kernels.FusedAdam(backends=["torch"]), plain_optimizer="adam",
                      jit_compile=True, steps_per_execution=20)
    return vae, encoder, decoder


# ---------------------------------------------------------------- figures


def uniform_on_sphere(n, d, rng):
    """n points uniform on S^(d-1): normalised standard-normal vectors."""
    z = rng.standard_normal((n, d))
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def save_figures(cfg, out, encoder, decoder, x_test, history, rng):
    n = 15
    z = uniform_on_sphere(n * n, cfg.latent_dim, rng).astype("float32")
    plotting.save_grid(decoder.predict(z, verbose=0), out / "samples.png", n=n,
                       title="decoded from z uniform on the sphere")
    originals = x_test[:50]
    decoded = decoder.predict(encoder.predict(originals, verbose=0), verbose=0)
    plotting.save_pairs(originals, decoded, out / "reconstructions.png",
                        title="test digits (odd columns) and their decoded mu(x) (even)")
    plotting.save_curves(history, out / "loss.png", ylabel="summed BCE (nats), KL left out")


# ---------------------------------------------------------------- metrics


def log_importance_weights(encoder, decoder_logits, x, num_samples, rng, kappa):
    """(n, K) array of log p(x|z) + log p(z) - log q(z|x) with z ~ q(z|x) = vMF(mu(x), kappa).

    p(z) is uniform on the sphere (log C_d(0)); log q(z|x) = log C_d(kappa) + kappa <mu, z>.
    """
    mu = evaluation.infer(encoder, x)
    mu /= np.linalg.norm(mu, axis=-1, keepdims=True)
    n, d = mu.shape
    z = sample_vmf(np.repeat(mu[:, None], num_samples, axis=1), kappa, rng)
    logits = evaluation.infer(decoder_logits, z.reshape(n * num_samples, d).astype("float32"),
                              "float32")
    log_px_z = evaluation.sample_log_likelihoods(x, logits, num_samples)
    log_qz = log_vmf_normaliser(kappa, d) + kappa * np.sum(mu[:, None] * z, axis=-1)  # eq. 12
    return log_px_z + log_vmf_normaliser(0.0, d) - log_qz


def main(argv=None, callbacks=()):
    """Train (or --load), then write the figures and metrics.json; returns the metrics.

    `callbacks` are extra Keras callbacks for training (the tests simulate a kill with one).
    """
    with run.setup(Config, argv, "vae_vmf_keras", description=__doc__) as job:
        cfg = job.cfg
        rng = np.random.default_rng(cfg.seed)
        (x_train, _), (x_test, _) = run.load_data(cfg)
        x_train = x_train.reshape(-1, ORIGINAL_DIM)
        x_test = x_test.reshape(-1, ORIGINAL_DIM)
        vae, encoder, decoder = build_models(cfg)

        history = job.train_or_load(vae, x_train, validation_data=(x_test, None),
                                    callbacks=callbacks)
        stage = job.pending()  # the figures' folder until the run is published
        save_figures(cfg, stage, encoder, decoder, x_test, history, rng)

        decoder_logits = evaluation.logits_model(decoder)
        summary = run.history_summary(history)
        kl = vmf_kl(cfg.kappa, cfg.latent_dim)
        sampled, images = evaluation.importance_sampled_nll(
            lambda xb, k: log_importance_weights(encoder, decoder_logits, xb, k, rng, cfg.kappa),
            x_test[: cfg.is_images], cfg.is_samples)
        metrics = {
            **summary,
            "test_loss": summary["final_val_loss"],
            "kl_constant": kl,
            # with the squared-error loss, the Bernoulli -ELBO comes from the importance samples
            "test_neg_elbo": summary["final_val_loss"] + kl if cfg.reconstruction == "bce"
            else sampled["test_neg_elbo_sampled"],
            **sampled,
            **evaluation.save_per_image(stage, images),
        }
        return job.finish(vae, metrics)


# ================================================================ the sampler's numerics
# The vMF constants (KL, normaliser, mean cosine) and the inverse-CDF table of w that the
# sampler layer gathers from; plain NumPy/SciPy, built once before training.


def _log_iv(order, x):
    """log I_order(x), x > 0: the scaled Bessel function, or the power series if that underflows."""
    value = ive(order, x)
    if x > 1.0 and value > 0.0:
        return math.log(value) + x
    # I_v(x) = (x/2)^v / Gamma(v+1) * sum_k q^k / (k! (v+1)_k), q = x^2/4
    q, term, total = x * x / 4.0, 1.0, 1.0
    for k in range(1, 1000):
        term *= q / (k * (order + k))
        total += term
        if term < 1e-17 * total:
            break
    return order * math.log(x / 2.0) - gammaln(order + 1.0) + math.log(total)


def log_vmf_normaliser(kappa, dims):
    """log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log 2pi - log I_{d/2-1}(kappa) (eq. 3).

    At kappa = 0 it is minus the log area of S^(d-1): log Gamma(d/2) - log 2 - (d/2) log pi.
    """
    if kappa == 0:
        return float(gammaln(dims / 2) - math.log(2.0) - dims / 2 * math.log(math.pi))
    return (dims / 2 - 1) * math.log(kappa) - dims / 2 * math.log(2 * math.pi) \
        - _log_iv(dims / 2 - 1, kappa)


def mean_cosine(kappa, dims):
    """A_d(kappa) = E[w] = E<mu, z> = I_{d/2}(kappa) / I_{d/2-1}(kappa) (eq. 4)."""
    if kappa == 0:
        return 0.0
    return math.exp(_log_iv(dims / 2, kappa) - _log_iv(dims / 2 - 1, kappa))


def vmf_kl(kappa, dims):
    """KL(vMF(mu, kappa) || uniform on S^(d-1)) = kappa A_d + log C_d(kappa) - log C_d(0) (eq. 13).

    It depends on neither x nor mu, so training leaves it out; 3.2584 nats at d = 4, kappa = 20.
    """
    return kappa * mean_cosine(kappa, dims) + log_vmf_normaliser(kappa, dims) \
        - log_vmf_normaliser(0.0, dims)


# ---------------------------------------------------------------- the table of w (eq. 8)

GRID_CELLS = 2**16      # trapezoid cells of the CDF over the angle
QUANTILE_CELLS = 2**16  # equal-probability cells of the tabulated inverse CDF
TAIL_CELLS = 64         # outermost cells on each side, inverted on the fine grid instead
LOG_SPAN = 50.0         # the grid covers where the log-density is within this of its maximum


def check_w_table_args(kappa, dims, size=1):
    """Raise ValueError unless kappa >= 0 is finite, dims >= 2 and size >= 1 are integers."""
    if isinstance(kappa, bool) or not isinstance(kappa, numbers.Real) or not math.isfinite(kappa) \
            or kappa < 0:
        raise ValueError(f"kappa must be a finite number >= 0 (got {kappa!r})")
    if isinstance(dims, bool) or not isinstance(dims, numbers.Integral) or dims < 2:
        raise ValueError(f"dims (the latent dimension) must be an integer >= 2 (got {dims!r})")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size (the table size) must be an integer >= 1 (got {size!r})")


@functools.lru_cache(maxsize=16)
def w_quantile_grid(kappa, dims):
    """The inverse CDF of w as arrays in the angle phi = arccos w (eq. 8).

    With w = cos phi the density of eq. 8 becomes p(phi) ~ exp(kappa cos phi) sin^(d-2) phi on
    (0, pi): bounded and smooth for every d >= 2. It is tabulated on GRID_CELLS equal steps over
    the interval where log p is within LOG_SPAN of its maximum (found by bisection either side
    of the mode), integrated by the trapezoid rule into the CDF `cdf` at angles `phi`, and read
    off at QUANTILE_CELLS + 1 equally spaced probabilities into `nodes`.
    Returns read-only (cdf, phi, nodes).
    """
    check_w_table_args(kappa, dims)
    kappa = float(kappa)

    def log_density(phi):
        # kappa (cos phi - 1) written as -2 kappa sin^2(phi/2): no cancellation at large kappa
        out = -2.0 * kappa * np.sin(np.asarray(phi, np.float64) / 2) ** 2
        if dims > 2:
            with np.errstate(divide="ignore"):
                out = out + (dims - 2) * np.log(np.sin(phi))
        return out

    if dims == 2:
        mode = 0.0
    else:  # d/dphi log p = 0  <=>  kappa sin^2 phi = (d - 2) cos phi
        mode = math.acos(2 * kappa / ((dims - 2) + math.hypot(dims - 2, 2 * kappa)))
    floor = float(log_density(mode)) - LOG_SPAN

    def edge(inside, outside):
        if log_density(outside) >= floor:
            return outside
        for _ in range(64):
            mid = 0.5 * (inside + outside)
            inside, outside = (mid, outside) if log_density(mid) >= floor else (inside, mid)
        return outside

    phi = np.linspace(edge(mode, 0.0), edge(mode, math.pi), GRID_CELLS + 1)
    density = log_density(phi)
    np.exp(density - density.max(), out=density)
    cdf = np.zeros_like(phi)
    np.cumsum(0.5 * (density[1:] + density[:-1]), out=cdf[1:])
    cdf /= cdf[-1]
    nodes = np.interp(np.arange(QUANTILE_CELLS + 1) / QUANTILE_CELLS, cdf, phi)
    for a in (cdf, phi, nodes):
        a.flags.writeable = False
    return cdf, phi, nodes


def _uniform_to_phi(u, grid):
    """Map uniforms u to angles phi = F^-1(u), in place.

    Linear interpolation inside the equal-probability cell of u (index arithmetic, no search);
    in the TAIL_CELLS outermost cells, where the density falls steeply, the fine grid is used.
    """
    cdf, phi, nodes = grid
    m = len(nodes) - 1
    cell = (u * m).astype(np.intp)
    np.minimum(cell, m - 1, out=cell)
    tail = (cell < TAIL_CELLS) | (cell >= m - TAIL_CELLS)
    u_tail = u[tail]
    u *= m
    u -= cell
    low = nodes[cell]
    u *= nodes[cell + 1] - low
    u += low
    u[tail] = np.interp(u_tail, cdf, phi)
    return u


def w_quantile(u, kappa, dims):
    """The inverse CDF of w at probabilities u (an array in [0, 1]); u near 0 gives w near 1."""
    return np.cos(_uniform_to_phi(np.array(u, np.float64), w_quantile_grid(kappa, dims)))


def sample_w(kappa, dims, size, rng, chunk=2**16):
    """`size` independent draws of w (eq. 8) in float64, inverse CDF of uniforms from `rng`."""
    check_w_table_args(kappa, dims, int(np.prod(size)))
    grid = w_quantile_grid(kappa, dims)
    out = np.empty(size, np.float64)
    flat = out.reshape(-1)
    for start in range(0, flat.size, chunk):  # chunks keep the temporaries small
        block = flat[start:start + chunk]
        rng.random(out=block)
        np.cos(_uniform_to_phi(block, grid), out=block)
    return out


def build_w_table(kappa, dims, size=10**6, seed=None):
    """The blog's table: `size` draws of w ~ exp(kappa w) (1 - w^2)^((d-3)/2) as a float64 array.

    Inverse-CDF draws through `w_quantile_grid`: for any d >= 2 and kappa >= 0 their CDF is
    within ~2e-7 of the exact one (besides the rounding of w itself to float64), and the scratch
    memory beyond the table stays a few MB. Raises ValueError on bad arguments.
    """
    check_w_table_args(kappa, dims, size)
    return sample_w(kappa, dims, size, np.random.default_rng(seed))


def sample_vmf(mu, kappa, rng):
    """z ~ vMF(mu, kappa) for unit rows mu (numpy, float64): the layer's recipe, fresh w draws."""
    mu = np.asarray(mu, np.float64)
    w = sample_w(kappa, mu.shape[-1], mu.shape[:-1], rng)[..., None]
    eps = rng.standard_normal(mu.shape)
    nu = eps - np.sum(eps * mu, axis=-1, keepdims=True) * mu       # eq. 11
    nu -= np.sum(nu * mu, axis=-1, keepdims=True) * mu              # again, for what rounding left
    nu /= np.linalg.norm(nu, axis=-1, keepdims=True)
    return w * mu + np.sqrt((1 - w) * (1 + w)) * nu                  # eq. 10


if __name__ == "__main__":
    run.cli(main)
