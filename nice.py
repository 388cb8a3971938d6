"""NICE: an additive-coupling normalising flow on MNIST, ported to Keras 3.

Reproduces the NICE experiment of Su Jianlin's post "Flow models: NICE"
(https://kexue.fm/archives/5776), after Dinh, Krueger & Bengio, "NICE: Non-linear Independent
Components Estimation" (2014).

Equation numbers are the post's.

Usage:
    python nice.py             # the blog's settings: 30 epochs of Adam, batch 128, noise 0.01
    python nice.py --noise 0   # the blog's noiseless variant
    python nice.py --help      # every setting
Writes results/nice/: samples.png (std 0.75), samples_std1.png, interpolations.png, scale.png
(the learned exp(-s) per pixel), loss.png, metrics.json, test_per_image.npy (each test image's
-log p and importance-weighted bounds), history.csv, config.json and the weights of the best
validation epoch (run times and results, and how they compare with the blog's: the README).

The loss, as the blog computes it, is the density at the test images' pixel values x / 255
(0.5 |z|^2 - sum(s), 720.448 nats left out). A density at lattice points is not a probability
of discrete data, so it bounds nothing; the NLL and bits/dim in metrics.json
(`test_dequantised_nll`, `test_dequantised_bits_per_dim`) are of uniformly dequantised test images, (pixel + u) / 255 with u ~ U(0, 1), plus 784 ln 255 for the bins'
width: an upper bound on the discrete NLL, its Monte Carlo error stated.

Deviations from the original:
- Keras 3: every operation (shuffle, split/merge, coupling, scale) is a layer called
  with `inverse=True`, so the generator is the encoder's own layers run backwards.
- Beyond the blog: the dequantised test NLL and bits per dimension, plain and importance-weighted
  (`test_iw_nll`, K = --iw-draws, for bins above, around and below each pixel), sample statistics
  (pixels clipped, background level, the Frechet distance to the test set for sampling stds 0.5
  to 1.1), the map of exp(-s), latent interpolations, variants for the
  post's claims (`--noise-kind`, `--forward eq7`, `--shuffle none`) and an optional bfloat16
  mixed-precision mode (`--precision`).
- Speed: Adam's update runs as TensorFlow's or PyTorch's fused kernel
  (common/kernels.py's `FusedAdam`, same arithmetic as Keras' Adam); see
  benchmarks/nice_throughput.py.
"""
import dataclasses
import math

from common import startup  # noqa: E402,F401  first: backend, quiet start, Ctrl-C (its docstring)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, ops  # noqa: E402

from common import evaluation, kernels, plotting, run  # noqa: E402

ORIGINAL_DIM = 784  # pixels per image, 28 x 28 (the blog's original_dim)
GAUSS_CONST = 0.5 * ORIGINAL_DIM * math.log(2 * math.pi)  # 720.448 nats, left out of the loss
MAX_WEIGHTS = 300_000_000  # 1.2 GB of float32, 3.6 GB with Adam's two moments
NOISE_KINDS = ("negative", "positive", "centred", "gaussian")
LEVELS = 255  # pixel values k = 0..255 are the points k / 255: bins of width 1 / 255
# where the bin of pixel k lies: [k + offset, k + offset + 1) / 255; the plain bound uses "above"
BIN_OFFSETS = {"above": 0.0, "centred": -0.5, "below": -1.0}
SWEEP_STDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0, 1.1)  # sampling stds scored against the test set
STEPS_PER_EXECUTION = 20  # training steps per compiled call (TensorFlow and JAX)


@dataclasses.dataclass(frozen=True)
class Config(run.RunConfig):
    num_blocks: int = run.arg(4, "additive coupling blocks", ge=1, le=32)
    hidden_dim: int = run.arg(1000, "units of each hidden layer of a coupling network m",
                              ge=1, le=8192)
    hidden_layers: int = run.arg(5, "hidden relu layers of each coupling network m", ge=1, le=32)
    shuffle: str = run.arg("reverse", "permutation before each coupling ('random' is fixed by "
                           "--seed; 'none' keeps the order, so every coupling updates the same "
                           "half)", choices=["reverse", "random", "none"])
    forward: str = run.arg("eq9", "the coupling the encoder runs: 'eq9' h2 = x2 - m(x1), the "
                           "blog's, or 'eq7' h2 = x2 + m(x1); the generator runs the other one",
                           choices=["eq9", "eq7"])
    noise: float = run.arg(0.01, "width of the noise added to the images in training (0: none)",
                           ge=0.0, le=1.0)
    noise_kind: str = run.arg("negative", "the training noise: uniform on [-noise, 0] "
                              "('negative', the blog's), [0, noise] ('positive'), "
                              "[-noise/2, noise/2] ('centred'), or normal with the same standard "
                              "deviation as those, noise/sqrt(12) ('gaussian')",
                              choices=list(NOISE_KINDS))
    sample_std: float = run.arg(0.75, "standard deviation of z when sampling (the annealing parameter)",
                                gt=0.0, le=100.0, evaluation=True)
    learning_rate: float = run.arg(1e-3, "Adam learning rate", gt=0.0, le=1.0)
    dequantisation_draws: int = run.arg(10, "uniform noise draws per test image for the "
                                        "dequantised NLL and bits/dim (at least 2, for its "
                                        "Monte Carlo error)", ge=2, le=1000,
                                        evaluation=True)
    iw_draws: int = run.arg(32, "uniform noise draws per test image for the importance-weighted "
                            "dequantised NLL (0: skip it)", ge=0, le=1000, evaluation=True)
    precision: str = run.arg("float32", "float32, or bfloat16 for the coupling networks' matrix "
                             "products (weights and the flow's sums stay float32); faster only "
                             "on CPUs with AMX or AVX512-BF16",
                             choices=["float32", "bfloat16"])
    epochs: int = run.arg(30, "number of training epochs", ge=1, le=10_000)
    batch_size: int = run.arg(128, "images per training batch", ge=1, le=60_000)

    def validate(self):
        if self.iw_draws == 1:
            raise ValueError("--iw-draws 1 leaves the bound without its Monte Carlo error: "
                             "pass 0 (skip it) or at least 2")
        if self.weights() > MAX_WEIGHTS:
            raise ValueError(f"--num-blocks {self.num_blocks}, --hidden-dim {self.hidden_dim} and "
                             f"--hidden-layers {self.hidden_layers} make {self.weights():,} weights; "
                             f"at most {MAX_WEIGHTS:,} fit in memory with Adam's state")

    def weights(self, dim=ORIGINAL_DIM):
        """Trainable weights: per block, m's dense layers (D/2 -> H -> ... -> H -> D/2), then s."""
        h, half = self.hidden_dim, dim // 2
        per_block = (half + 1) * h + (self.hidden_layers - 1) * (h + 1) * h + (h + 1) * half
        return self.num_blocks * per_block + dim


# ---------------------------------------------------------------- layers (each callable with inverse=True)


@keras.saving.register_keras_serializable("nice")
class TrainingNoise(layers.Layer):
    """Training only: noise of the given width added to x; the identity otherwise.

    With u ~ U(0, 1): 'negative' x - width * u (the blog's, on [-width, 0]), 'positive'
    x + width * u, 'centred' x + width * (u - 1/2); 'gaussian' x + width / sqrt(12) * e with
    e ~ N(0, 1), the same standard deviation as the uniform kinds.
    """

    def __init__(self, width=0.01, kind="negative", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.width, self.kind, self.seed = width, kind, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training or self.width == 0:
            return x
        if self.kind == "gaussian":
            e = keras.random.normal(ops.shape(x), seed=self.seed_generator, dtype=x.dtype)
            return x + (self.width / math.sqrt(12)) * e
        u = keras.random.uniform(ops.shape(x), seed=self.seed_generator, dtype=x.dtype)
        if self.kind == "negative":
            return x - self.width * u
        return x + self.width * (u if self.kind == "positive" else u - 0.5)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "kind": self.kind, "seed": self.seed}


@keras.saving.register_keras_serializable("nice")
class Shuffle(layers.Layer):
    """A fixed permutation of the last axis: reversed, random from `seed`, or none."""

    def __init__(self, dim, mode="reverse", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mode, self.seed = dim, mode, seed
        if mode == "reverse":
            self.idx = np.arange(dim)[::-1].copy()
        elif mode == "random":
            self.idx = np.random.default_rng(seed).permutation(dim)
        else:
            self.idx = np.arange(dim)
        self.inverse_idx = np.argsort(self.idx)

    def call(self, x, inverse=False):
        if self.mode == "none":
            return x
        if self.mode == "reverse":  # its own inverse; a flip is cheaper than a gather
            return ops.flip(x, axis=-1)
        return ops.take(x, self.inverse_idx if inverse else self.idx, axis=-1)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "mode": self.mode, "seed": self.seed}


@keras.saving.register_keras_serializable("nice")
class SplitVector(layers.Layer):
    """Interleaved split: even indices are part 1, odd indices part 2 (reshape to (D/2, 2))."""

    def call(self, x, inverse=False):
        if inverse:  # merge: interleave the two parts back
            return ops.reshape(ops.stack(x, axis=-1), (-1, 2 * ops.shape(x[0])[-1]))
        pairs = ops.reshape(x, (-1, ops.shape(x)[-1] // 2, 2))
        return pairs[..., 0], pairs[..., 1]


@keras.saving.register_keras_serializable("nice")
class AdditiveCoupling(layers.Layer):
    """Additive coupling with its own network m; by default the blog's eq. 9 forward, eq. 7 inverse.

    forward (encoder):   h1 = x1,  h2 = x2 - m(x1)
    inverse (generator): x1 = h1,  x2 = h2 + m(h1)
    With `forward="eq7"` the signs swap: the encoder adds m and the generator subtracts it.
    The Jacobian is triangular with unit diagonal: log|det| = 0.
    """

    def __init__(self, part_dim, hidden_dim=1000, hidden_layers=5, m_dtype="float32",
                 forward="eq9", **kwargs):
        super().__init__(**kwargs)
        self.part_dim, self.hidden_dim, self.hidden_layers = part_dim, hidden_dim, hidden_layers
        self.forward_equation = forward  # not `self.forward`: on PyTorch that is the layer's call
        self.m_dtype = m_dtype  # "mixed_bfloat16": m computes in bfloat16, the sum stays float32
        self.m = [layers.Dense(hidden_dim, activation="relu", dtype=m_dtype, name=f"m_{i}")
                  for i in range(hidden_layers)]
        self.m.append(layers.Dense(part_dim, activation="relu", dtype=m_dtype,
                                   name=f"m_{hidden_layers}"))

    def build(self, input_shape):
        dim = self.part_dim
        for dense in self.m:
            dense.build((None, dim))
            dim = dense.units

    def shift(self, x1):
        for dense in self.m:
            x1 = dense(x1)
        return ops.cast(x1, self.compute_dtype)

    def call(self, parts, inverse=False):
        x1, x2 = parts
        add = inverse == (self.forward_equation == "eq9")  # eq. 7 adds m, eq. 9 subtracts it
        return x1, (x2 + self.shift(x1) if add else x2 - self.shift(x1))

    def get_config(self):
        return {**super().get_config(), "part_dim": self.part_dim, "hidden_dim": self.hidden_dim,
                "hidden_layers": self.hidden_layers, "m_dtype": self.m_dtype,
                "forward": self.forward_equation}


@keras.saving.register_keras_serializable("nice")
class Scale(layers.Layer):
    """z = exp(s) * h with a trainable s of shape (1, D) (eq. 15); adds -sum(s) to the loss.

    -sum(s) is minus the log-determinant of the whole flow, the couplings contributing 0.
    """

    def build(self, input_shape):
        self.s = self.add_weight(shape=(1, input_shape[-1]), initializer="glorot_normal", name="s")

    def call(self, h, inverse=False):
        if inverse:
            return ops.exp(-self.s) * h
        self.add_loss(-ops.sum(self.s))
        return ops.exp(self.s) * h


# ---------------------------------------------------------------- models


def build_flow_layers(cfg, dim=ORIGINAL_DIM):
    """The encoder's layers in order: per block (shuffle, split, coupling), then the scale."""
    m_dtype = "mixed_bfloat16" if cfg.precision == "bfloat16" else "float32"
    blocks = []
    for i in range(cfg.num_blocks):
        seed = cfg.seed + i if cfg.shuffle == "random" else None
        blocks.append((Shuffle(dim, cfg.shuffle, seed, name=f"shuffle_{i}"),
                       SplitVector(name=f"split_{i}"),
                       AdditiveCoupling(dim // 2, cfg.hidden_dim, cfg.hidden_layers,
                                        m_dtype, cfg.forward, name=f"coupling_{i}")))
    return blocks, Scale(name="scale")


def encode(blocks, scale, x):
    for shuffle, split, coupling in blocks:
        x = split(coupling(split(shuffle(x))), inverse=True)  # merge is the split's inverse
    return scale(x)


def decode(blocks, scale, z):
    x = scale(z, inverse=True)
    for shuffle, split, coupling in reversed(blocks):
        x = shuffle(split(coupling(split(x), inverse=True), inverse=True), inverse=True)
    return x


@keras.saving.register_keras_serializable("nice")
def gaussian_loss(y_true, z):
    """Per-sample 0.5 * sum(z^2); with the Scale layer's -sum(s) this is -log p(x) - 720.448."""
    return 0.5 * ops.sum(ops.square(z), axis=-1)


def build_models(cfg, dim=ORIGINAL_DIM):
    """Return (encoder, generator); the generator runs the encoder's layers backwards.

    `dim` is the data's dimension: MNIST's 784, or a small one for tests.
    """
    blocks, scale = build_flow_layers(cfg, dim)
    x_in = keras.Input(shape=(dim,), name="x")
    x = TrainingNoise(cfg.noise, cfg.noise_kind, seed=cfg.seed, name="noise")(x_in)
    encoder = keras.Model(x_in, encode(blocks, scale, x), name="nice_encoder")
    # No XLA: TensorFlow's own (oneDNN) matrix products are faster here than XLA's, and the
    # fused optimizer already makes the update a single pass (benchmarks/nice_throughput.py).
    # Several steps per call spare each step Keras' per-call work (results/README.md, Benchmarks).
    run.compile_model(encoder, cfg, kernels.FusedAdam(cfg.learning_rate),
                      plain_optimizer=keras.optimizers.Adam(cfg.learning_rate),
                      steps_per_execution=STEPS_PER_EXECUTION, loss=gaussian_loss)
    z_in = keras.Input(shape=(dim,), name="z")
    generator = keras.Model(z_in, decode(blocks, scale, z_in), name="nice_generator")
    return encoder, generator


# ---------------------------------------------------------------- training and outputs


def neg_log_density(encoder, x, batch_size=1000):
    """-log p(x) in nats for each row of x: 0.5 |z|^2 - sum(s) + 720.448 (the flow's density)."""
    s = ops.convert_to_numpy(encoder.get_layer("scale").s).astype(np.float64).sum()
    dim = x.shape[1]
    sq = np.concatenate([np.sum(evaluation.infer(encoder, x[i:i + batch_size]) ** 2, axis=1)
                         for i in range(0, len(x), batch_size)])
    return 0.5 * sq - s + 0.5 * dim * math.log(2 * math.pi)


def dequantised_nll(neg_log_density_fn, pixels, levels, draws, rng):
    """An upper bound on the NLL of discrete pixels, by uniform dequantisation.

    Pixel value k (0..levels) is the point k / levels; its bin is [k, k + 1) / levels. The
    probability of an image is the density's integral over its bin, and by Jensen's inequality
    -log P(k) <= E_u[-log p((k + u) / levels)] + D log(levels), u ~ U(0, 1)^D. The expectation
    is estimated with `draws` draws per image. Returns (per-image bounds, Monte Carlo standard
    error of their mean): the error of the u draws only, the test images held fixed.
    """
    pixels = np.asarray(pixels, np.float64)
    n, dim = pixels.shape
    values = np.empty((draws, n))
    for d in range(draws):
        x = ((pixels + rng.random(pixels.shape)) / levels).astype("float32")
        values[d] = neg_log_density_fn(x)
    per_image = values.mean(0) + dim * math.log(levels)
    draw_var = values.var(0, ddof=1) / draws if draws > 1 else np.full(n, np.nan)
    return per_image, float(np.sqrt(draw_var.sum()) / n)


def iw_dequantised_nll(neg_log_density_fn, pixels, levels, draws, rng, offsets=BIN_OFFSETS):
    """The importance-weighted dequantised bound, for each bin placement of `offsets`.

    With K draws u_1..u_K ~ U(0, 1)^D, one per image and draw, shared by the placements:
    -log P(k) <= -log (1/K) sum_j p((k + offset + u_j) / levels) + D log(levels) in expectation;
    K = 1 is the plain bound, and as K grows the figure falls to -log P(k) itself, P being the
    density's mass on the bins [k + offset, k + offset + 1) / levels. Returns {placement:
    {"nll": mean over images at K = draws, "mc_se": its Monte Carlo error over the draws (delta
    method), "image_se": the standard error over the images, "by_draws": {K: mean} for K = 1,
    2, 4, ... up to draws, from the same draws}}, and {placement: each image's bound at K =
    draws} (what pairs two runs' difference over the same images).
    """
    pixels = np.asarray(pixels, np.float64)
    n, dim = pixels.shape
    log_p = {name: np.empty((draws, n)) for name in offsets}
    for d in range(draws):
        u = rng.random(pixels.shape)
        for name, offset in offsets.items():
            log_p[name][d] = -neg_log_density_fn(((pixels + offset + u) / levels).astype("float32"))
    counts = sorted({*(2 ** i for i in range(int(math.log2(draws)) + 1)), draws})
    out, images = {}, {}
    for name, lp in log_p.items():
        def bound(k):
            top = lp[:k].max(0)
            return -(top + np.log(np.mean(np.exp(lp[:k] - top), 0))) + dim * math.log(levels)
        per_image = bound(draws)
        ratio = np.exp(lp - lp.max(0))
        ratio /= ratio.mean(0)  # w_j / mean(w): var(log mean w) ~ var(ratio) / K
        mc_var = ratio.var(0, ddof=1) / draws if draws > 1 else np.full(n, np.nan)
        out[name] = {"nll": float(per_image.mean()), "mc_se": float(np.sqrt(mc_var.sum()) / n),
                     "image_se": evaluation.standard_error(per_image),
                     "by_draws": {str(k): float(bound(k).mean()) for k in counts}}
        images[name] = per_image
    return out, images


def frechet_distance(a, b):
    """Frechet distance between Gaussians fitted to the rows of a and of b (pixel space):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * np.sum(np.sqrt(np.clip(cross, 0, None))))


def std_sweep(generator, x_test, rng, stds=SWEEP_STDS):
    """For each sampling std, the Frechet distance in pixel space between as many samples as
    test images (10,000) at z ~ N(0, std^2 I), clipped to [0, 1] as the figures show them, and
    the test images. Too small a std gives samples too alike (a covariance too small), too large
    a noisy one: the distance can prefer any std of the grid."""
    fd, n = {}, len(x_test)
    for std in stds:
        z = (rng.standard_normal((n, ORIGINAL_DIM)) * std).astype("float32")
        x = np.concatenate([evaluation.infer(generator, z[i:i + 1000], np.float32)
                            for i in range(0, n, 1000)])
        fd[f"{std:g}"] = frechet_distance(np.clip(x, 0, 1), x_test)
    return {"sample_fd_by_std": fd, "sample_fd_best_std": float(min(fd, key=fd.get))}


def test_metrics(encoder, x_test, test_loss, cfg, rng, stage):
    """-log p at x / 255 (the blog's test loss + 720.448), and the dequantised NLL (nats) and
    bits/dim, which bound the test images' discrete NLL. Each image's -log p at x / 255 and
    importance-weighted bounds go to the per-image file (`evaluation.save_per_image`)."""
    dim = x_test.shape[1]
    pixels = np.rint(x_test.astype(np.float64) * LEVELS)
    bound, se = dequantised_nll(lambda x: neg_log_density(encoder, x), pixels, LEVELS,
                                cfg.dequantisation_draws, rng)
    bits = dim * math.log(2)
    metrics = {"test_neg_log_density": test_loss + GAUSS_CONST,
               "test_dequantised_nll": float(bound.mean()),
               "test_dequantised_nll_mc_se": se,
               "test_dequantised_nll_image_se": evaluation.standard_error(bound),
               "test_dequantised_bits_per_dim": float(bound.mean() / bits),
               "test_dequantised_bits_per_dim_mc_se": se / bits,
               "dequantisation_draws": cfg.dequantisation_draws}
    columns = {"neg_log_density": neg_log_density(encoder, x_test)}
    if cfg.iw_draws:
        print(f"importance-weighted bound: {cfg.iw_draws} draws x {len(BIN_OFFSETS)} bin placements")
        iw, images = iw_dequantised_nll(lambda x: neg_log_density(encoder, x), pixels, LEVELS,
                                        cfg.iw_draws, rng)
        columns.update({f"iw_nll_{p}": v for p, v in images.items()})
        metrics.update({"iw_draws": cfg.iw_draws, "test_iw_nll": iw["above"]["nll"],
                        "test_iw_bits_per_dim": iw["above"]["nll"] / bits,
                        "test_iw_nll_by_bins": iw})
    return {**metrics, **evaluation.save_per_image(stage, columns)}


def sample_statistics(generator, std, rng, n=10000):
    """Of n samples at z ~ N(0, std^2 I), before clipping to [0, 1]: the fractions of pixels
    below 0 and above 1, and the mean clipped value of the pixels under 1/2 (the background's
    grey level: 0 is clean black)."""
    z = (rng.standard_normal((n, ORIGINAL_DIM)) * std).astype("float32")
    x = np.concatenate([evaluation.infer(generator, z[i:i + 1000], np.float32)
                        for i in range(0, n, 1000)])
    clipped = np.clip(x, 0, 1)
    return {"below_zero": float(np.mean(x < 0)), "above_one": float(np.mean(x > 1)),
            "background": float(clipped[clipped < 0.5].mean())}


def scale_metrics(encoder, x_train, out):
    """The learned exp(-s), the standard deviation of each pixel's latent in the generator
    (eq. 15: small means unimportant): a 28 x 28 map, and its mean over the pixels that are
    black in every training image against the mean over the rest."""
    spread = np.exp(-ops.convert_to_numpy(encoder.get_layer("scale").s).astype(np.float64)[0])
    black = np.all(x_train == 0, axis=0)
    plotting.save_map(spread, out / "scale.png", label="exp(-s)",
                      title=f"exp(-s) per pixel; {int(black.sum())} pixels are black in every "
                            "training image")
    return {"scale_black_pixels": int(black.sum()),
            "scale_black_mean": float(spread[black].mean()) if black.any() else None,
            "scale_other_mean": float(spread[~black].mean())}


def save_figures(cfg, out, encoder, generator, x_test, history, rng):
    for std, name in ((cfg.sample_std, "samples.png"), (1.0, "samples_std1.png")):
        z = (rng.standard_normal((225, ORIGINAL_DIM)) * std).astype("float32")
        x = np.clip(generator.predict(z, batch_size=225, verbose=0), 0, 1)
        plotting.save_grid(x, out / name, n=15, title=f"z ~ N(0, {std:g}^2 I)")
    # linear paths in z between pairs of test digits, endpoints included
    pairs = x_test[: 2 * 15].reshape(15, 2, -1)
    za = encoder.predict(pairs[:, 0], verbose=0)
    zb = encoder.predict(pairs[:, 1], verbose=0)
    t = np.linspace(0, 1, 15)[None, :, None]
    z = (za[:, None] * (1 - t) + zb[:, None] * t).reshape(-1, ORIGINAL_DIM).astype("float32")
    x = np.clip(generator.predict(z, batch_size=225, verbose=0), 0, 1)
    plotting.save_grid(x, out / "interpolations.png", n=15,
                       title="interpolation in z between test digits (rows)")
    save_loss_curve(out, history)


def save_loss_curve(out, history):
    # a flow's loss falls from its first epoch: anything above that is a blow-up, cut off
    top = max(history["loss"][0], history["val_loss"][0]) + 200
    plotting.save_curves(history, out / "loss.png", ylabel="loss (nats, without 720.448)", top=top)


def main(argv=None, callbacks=()):
    """Train (or --load), then write the figures and metrics.json; returns the metrics.

    `callbacks` are extra Keras callbacks for training (the tests simulate a kill with one).
    """
    with run.setup(Config, argv, "nice", description=__doc__) as job:
        cfg = job.cfg
        rng = np.random.default_rng(cfg.seed)
        run.precision_note(cfg)
        (x_train, _), (x_test, _) = run.load_data(cfg)
        x_train = x_train.reshape(-1, ORIGINAL_DIM)
        x_test = x_test.reshape(-1, ORIGINAL_DIM)
        encoder, generator = build_models(cfg)

        # the blog keeps the weights of the best validation epoch
        history = job.train_or_load(encoder, x_train, x_train,
                                    validation_data=(x_test, x_test), callbacks=callbacks,
                                    keep_best=True)
        stage = job.pending()  # the figures' folder until the run is published
        save_figures(cfg, stage, encoder, generator, x_test, history, rng)

        test_loss = float(encoder.evaluate(x_test, x_test, batch_size=cfg.batch_size, verbose=0))
        samples = {std: sample_statistics(generator, std, rng) for std in (cfg.sample_std, 1.0)}
        metrics = {
            **run.history_summary(history),
            "test_loss": test_loss,
            **test_metrics(encoder, x_test, test_loss, cfg, rng, stage),
            **{f"sample_{k}": v for k, v in samples[cfg.sample_std].items()},
            **{f"sample_std1_{k}": v for k, v in samples[1.0].items()},
            **scale_metrics(encoder, x_train, stage),
            **std_sweep(generator, x_test, rng),
            "precision": cfg.precision,
        }
        return job.finish(encoder, metrics)


if __name__ == "__main__":
    run.cli(main)
