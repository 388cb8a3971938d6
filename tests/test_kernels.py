"""common/kernels.py: the transposed convolution tap by tap, and PyTorch's on the channels_last
view and by `fold`, against its definition (itself checked against keras.ops.conv_transpose);
the convolution by columns and PyTorch's on the channels_last view against keras.ops.conv; and
both layers' outputs and JAX or PyTorch gradients against Keras' layers. The sums at strides 1
to 4, the layers at the Gumbel-Softmax model's strides, 1 and 2. And `FusedAdam`'s update
against Keras' Adam."""
import math

import keras
import numpy as np
import pytest

from common import kernels

SHAPES = [((2, 2), (3, 7, 7, 4)), ((2, 2), (2, 5, 6, 3)), ((1, 1), (2, 6, 6, 3)),
          ((3, 3), (2, 4, 5, 2)), ((4, 4), (2, 3, 4, 2)),  # a stride above the kernel's size
          ((1, 1), (2, 6, 5, 12)), ((2, 2), (2, 5, 4, 12))]  # more channels than one output's taps


def by_definition(x, kernel, strides):
    """Keras' 'same' transposed convolution written as its sum: input (h, w) and tap (a, b)
    feed output (s·h + a − c, s·w + b − c); returns the output and the positions it used."""
    (sh, sw), (kh, kw) = strides, kernel.shape[:2]
    n, h, w, _ = x.shape
    y = np.zeros((n, sh * h, sw * w, kernel.shape[2]), np.float64)
    c = [k - 1 - kernels._same_left_pad(k, s) for k, s in ((kh, sh), (kw, sw))]
    for a in range(kh):
        for b in range(kw):
            for i in range(h):
                for j in range(w):
                    p, q = sh * i + a - c[0], sw * j + b - c[1]
                    if 0 <= p < y.shape[1] and 0 <= q < y.shape[2]:
                        y[:, p, q, :] += x[:, i, j, :] @ kernel[a, b].T
    return y


@pytest.mark.quick
@pytest.mark.backends
@pytest.mark.parametrize("strides, shape", SHAPES)
def test_the_taps_compute_keras_transposed_convolution(strides, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal((3, 3, 5, shape[-1]))
    y = by_definition(x, kernel, strides)
    keras_y = keras.ops.convert_to_numpy(keras.ops.conv_transpose(
        x.astype("float32"), kernel.astype("float32"), strides=strides, padding="same"))
    np.testing.assert_allclose(keras_y, y, rtol=1e-4, atol=1e-4)  # the definition is Keras'
    got = np.asarray(kernels.conv_transpose_by_taps(x.astype("float32"),
                                                    kernel.astype("float32"), strides[0]))
    np.testing.assert_allclose(got, y, rtol=1e-4, atol=1e-4)
    torch = pytest.importorskip("torch")
    for formulation in (kernels.conv_transpose_channels_last, kernels.conv_transpose_by_fold):
        got = formulation(torch.tensor(x), torch.tensor(kernel), strides[0])
        assert got.shape == y.shape
        np.testing.assert_allclose(got.numpy(), y, rtol=1e-9, atol=1e-9)


@pytest.mark.quick
@pytest.mark.backends
@pytest.mark.parametrize("strides, shape", SHAPES)
def test_the_columns_compute_keras_convolution(strides, shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype("float32")
    kernel = rng.standard_normal((3, 3, shape[-1], 5)).astype("float32")
    want = keras.ops.convert_to_numpy(keras.ops.conv(x, kernel, strides=strides, padding="same"))
    got = np.asarray(kernels.conv_by_columns(x, kernel, strides[0]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    torch = pytest.importorskip("torch")
    got = kernels.conv_channels_last(torch.tensor(x), torch.tensor(kernel), strides[0])
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.quick
@pytest.mark.backends
@pytest.mark.parametrize("strides, shape, filters", [  # the model's strides (1 and 2), and
    *[(*case, 5) for case in SHAPES[:3]],  # on PyTorch 1 of 12 channels by `fold`: every
    *[(*case, 1) for case in SHAPES if case[1][-1] == 12]])  # stride is checked above
@pytest.mark.parametrize("fast_layer, stock_layer", [
    (kernels.Conv2DTranspose, keras.layers.Conv2DTranspose), (kernels.Conv2D, keras.layers.Conv2D)])
def test_the_layer_is_keras_layer_with_the_same_gradients(strides, shape, fast_layer,
                                                          stock_layer, filters):
    fast = fast_layer(filters, 3, strides=strides, padding="same", activation="relu")
    stock = stock_layer(filters, 3, strides=strides, padding="same", activation="relu")
    x = np.random.default_rng(1).standard_normal(shape).astype("float32")
    fast.build(shape)
    stock.build(shape)
    stock.set_weights(fast.get_weights())
    assert fast.name.rstrip("_0123456789") == stock.name.rstrip("_0123456789")  # as Keras names it
    fast_y, stock_y = (keras.ops.convert_to_numpy(layer(x)) for layer in (fast, stock))
    if keras.backend.backend() == "tensorflow":
        np.testing.assert_array_equal(fast_y, stock_y)  # Keras' own call
        return
    np.testing.assert_allclose(fast_y, stock_y, rtol=1e-5, atol=1e-5)
    for got, want in zip(gradients(fast, x), gradients(stock, x)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def gradients(layer, x):
    """The gradients of sum(sin(layer(x))) in the kernel, the bias and x, on JAX or PyTorch."""
    if keras.backend.backend() == "jax":
        import jax

        def loss(kernel, bias, x):
            y, _ = layer.stateless_call([kernel, bias], [], x)
            return jax.numpy.sum(jax.numpy.sin(y))
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*layer.get_weights(), x)
    import torch

    x = torch.tensor(x, requires_grad=True)
    wrt = [layer.kernel.value, layer.bias.value, x]
    return [g.numpy() for g in torch.autograd.grad(torch.sin(layer(x)).sum(), wrt)]


# ---------------------------------------------------------------- the fused Adam


@pytest.mark.quick
@pytest.mark.backends
@pytest.mark.parametrize("learning_rate", [1e-3, 0.05])
def test_fused_adam_matches_keras_adam(learning_rate):
    """Same starting weights and gradients: the fused kernel (TensorFlow's, or PyTorch's for
    all weights at once) and Keras' Adam agree step by step."""
    rng = np.random.default_rng(0)
    w0 = [rng.standard_normal(shape).astype("float32") for shape in ((5, 3), (3,))]
    grads = [[rng.standard_normal(w.shape).astype("float32") * 10 ** k for w in w0]
             for k in (0, -3, 2, 0, -1)]
    paths = []
    for optimizer in (kernels.FusedAdam(learning_rate), keras.optimizers.Adam(learning_rate)):
        weights = [keras.Variable(w) for w in w0]
        path = []
        for g in grads:
            optimizer.apply([keras.ops.convert_to_tensor(x) for x in g], weights)
            path.append(np.concatenate([keras.ops.convert_to_numpy(w).ravel() for w in weights]))
        paths.append(np.stack(path))
    assert not np.allclose(paths[0][-1], paths[0][0])  # the weights did move
    np.testing.assert_allclose(paths[0], paths[1], rtol=1e-5, atol=1e-6)


@pytest.mark.quick
def test_fused_adam_survives_a_config_round_trip():
    optimizer = kernels.FusedAdam(2e-4, backends=["torch"])
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(clone) is kernels.FusedAdam
    assert math.isclose(float(clone.learning_rate), 2e-4, rel_tol=1e-6)
    assert clone.BACKENDS == ("torch",)
