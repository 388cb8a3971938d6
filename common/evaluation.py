"""Evaluation the three VAEs share: log p(x|z) from the decoder's logits and the importance-sampled NLL;
and what every script writes of each test image's values (`save_per_image`).

Every VAE scores an image the way it trains: the pixel intensities x in [0, 1] (x / 255) are
the targets of independent Bernoulli means sigmoid(logits), as in the blog, and the sum over
pixels is computed from the logits, never clipped. The same function serves the loss layers
(inside the compiled training step) and the metrics.
"""
import contextlib
from pathlib import Path

import keras
import numpy as np
from keras import ops
from scipy.special import logsumexp

from common import direct_calls

LOGITS_LAYER = "x_logits"  # the decoder's last layer before its sigmoid


def bernoulli_log_likelihood(x, logits):
    """log p(x|z) = sum over pixels of x log s(l) + (1 - x) log(1 - s(l)), one value per image.

    `x` and `logits` have the same shape, (batch, ...); s is the sigmoid. Keras ops, so it runs
    in a compiled step or eagerly on arrays.
    """
    cross_entropy = ops.binary_crossentropy(x, logits, from_logits=True)
    return -ops.sum(ops.reshape(cross_entropy, (ops.shape(logits)[0], -1)), axis=-1)


RECONSTRUCTIONS = ("bce", "mse")
RECONSTRUCTION_HELP = ("reconstruction loss: 'bce', the scripts' summed binary cross-entropy, or "
                       "'mse', the summed squared error |x - sigmoid(logits)|^2 of the post's "
                       "equation")


def reconstruction_loss(x, logits, kind="bce"):
    """The training loss's reconstruction term per image: -log p(x|z) ('bce') or the summed
    squared error between x and the decoded mean sigmoid(logits) ('mse')."""
    if kind == "bce":
        return -bernoulli_log_likelihood(x, logits)
    error = ops.square(x - ops.sigmoid(logits))
    return ops.sum(ops.reshape(error, (ops.shape(logits)[0], -1)), axis=-1)


def infer(model, x, dtype=np.float64):
    """`model(x, training=False)` as NumPy arrays (a list for several outputs) of `dtype`.

    Works on every backend and device: PyTorch records no gradients here (it would for a plain
    call), and the result is copied off the accelerator.
    """
    with _no_grad():
        out = model(x, training=False)
    # through float32: a bfloat16 output (--precision bfloat16) has no NumPy type on every backend
    numpy = lambda o: ops.convert_to_numpy(ops.cast(o, "float32")).astype(dtype)  # noqa: E731
    return [numpy(o) for o in out] if isinstance(out, (list, tuple)) else numpy(out)


def predict_in_batches(model, x, batch_size):
    """`model.predict(x)` for a large x, each batch by one compiled call (`predict_on_batch`).

    The same outputs as `predict`, without its data adapter and per-batch callbacks, which cost
    the Gumbel-Softmax NLL's millions of decoded codes a sixth to a fifth of their time
    (benchmarks/roofline.py).
    """
    return np.concatenate([model.predict_on_batch(x[i:i + batch_size])
                           for i in range(0, len(x), batch_size)])


def input_gradient(fn, x):
    """The gradient of sum(fn(x)) with respect to the array x, as NumPy, on any backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: ops.sum(fn(v)))(x))
    if backend == "torch":
        import torch

        v = ops.convert_to_tensor(x).detach().requires_grad_(True)  # on Keras' device
        ops.sum(fn(v)).backward()
        return v.grad.cpu().numpy()
    import tensorflow as tf

    v = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(v)
        total = ops.sum(fn(v))
    return tape.gradient(total, v).numpy()


def _no_grad():
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def sample_log_likelihoods(x, logits, num_samples):
    """(n, K) array of log p(x_i|z_ik) for n images and K decoded samples of each.

    `logits` holds the decoder's logits for the n*K samples, image by image (the K samples of
    image 0 first), in any shape with n*K rows.
    """
    n = len(x)
    x_rep = np.repeat(np.asarray(x, "float32").reshape(n, -1), num_samples, axis=0)
    with _no_grad():
        log_px = bernoulli_log_likelihood(x_rep, ops.reshape(logits, (n * num_samples, -1)))
    return ops.convert_to_numpy(log_px).astype(np.float64).reshape(n, num_samples)


def logits_model(decoder):
    """A model from codes to the logits behind the decoder's sigmoid (its `x_logits` layer)."""
    logits = decoder.get_layer(LOGITS_LAYER).output
    if logits.dtype != "float32":  # --precision bfloat16: the likelihoods read float32 logits
        logits = keras.layers.Activation("linear", dtype="float32")(logits)
    model = keras.Model(decoder.input, logits, name=f"{decoder.name}_logits")
    direct_calls.install(model)  # PyTorch: its layers called without Keras' per-call Python
    return model


def importance_sampled_nll(log_weights, x, num_samples, chunk_samples=10000):
    """Test NLL by importance sampling: mean over images of -log (1/K) sum_k exp(log w_k).

    `log_weights(x_chunk, K)` returns an (n, K) array of log p(x|z_k) + log p(z_k) - log q(z_k|x)
    for z_k ~ q(z|x); images are processed in chunks of about `chunk_samples` decoded samples.
    Returns the metrics `test_nll`, `test_nll_stderr`, `is_samples`, `is_images`, and
    `test_neg_elbo_sampled`: the -ELBO, -mean_k log w_k, from the same samples; and each
    image's values of the two, {"nll", "neg_elbo_sampled"} (for `save_per_image`).
    """
    per_chunk = max(1, chunk_samples // num_samples)
    nll, neg_elbo = [], []
    print(f"test NLL by importance sampling: {len(x)} images x {num_samples} samples")
    progress = keras.utils.Progbar(len(x), unit_name="image")
    for i in range(0, len(x), per_chunk):
        lw = np.asarray(log_weights(x[i:i + per_chunk], num_samples), dtype=np.float64)
        nll.append(np.log(num_samples) - logsumexp(lw, axis=1))
        neg_elbo.append(-lw.mean(axis=1))
        progress.add(len(lw))
    nll, neg_elbo = np.concatenate(nll), np.concatenate(neg_elbo)
    return ({"test_nll": float(nll.mean()), "test_nll_stderr": standard_error(nll),
             "is_samples": int(num_samples), "is_images": int(len(nll)),
             "test_neg_elbo_sampled": float(neg_elbo.mean())},
            {"nll": nll, "neg_elbo_sampled": neg_elbo})


PER_IMAGE = "test_per_image.npy"


def save_per_image(stage, columns):
    """Write each test image's values, `columns` {name: (n,) array}, to stage/PER_IMAGE (float32,
    a column each) and return metrics.json's entry naming the file and its columns: with them
    the claims pair two runs' differences over the same images (common/rules.py)."""
    np.save(Path(stage) / PER_IMAGE, np.stack([np.asarray(v, np.float32)
                                               for v in columns.values()], 1))
    return {"test_per_image": {"file": PER_IMAGE, "columns": list(columns)}}


def standard_error(values):
    """Standard error of the mean of per-image values (0 for a single image)."""
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
