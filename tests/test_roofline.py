"""benchmarks/roofline.py: its FLOP count, on which every fraction it prints rests, and the
step's parts it times on each backend (the backend tests run this file on JAX and PyTorch)."""
import importlib
import sys

import keras
import pytest

from common import run

pytestmark = pytest.mark.backends


@pytest.fixture
def roofline(monkeypatch):
    monkeypatch.syspath_prepend(str(run.REPO / "benchmarks"))
    yield importlib.import_module("roofline")
    sys.modules.pop("roofline", None)


@pytest.mark.quick
def test_the_mlp_vae_counts_its_dense_layers(roofline):
    import vae_keras

    vae = vae_keras.build_models(vae_keras.Config())[0]
    # 784 -> 256 -> (2, 2) -> 256 -> 784, 2 FLOPs per multiply-add
    forward = 2 * (784 * 256 + 2 * 256 * 2 + 2 * 256 + 256 * 784)
    # backward: the weights' gradient everywhere, the input's except for the layer on the data
    training = 3 * forward - 2 * 784 * 256
    assert roofline.model_flops(vae) == (forward, training) == (805_888, 2_016_256)


@pytest.mark.quick
def test_convolutions_count_output_pixels_and_transposed_ones_input_pixels(roofline):
    x = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)  # 4 x 4 output pixels
    y = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(h)  # 4 x 4 input pixels
    model = keras.Model(x, y)
    conv, transposed = 2 * 16 * 9 * 1 * 4, 2 * 16 * 9 * 4 * 2
    assert roofline.model_flops(model) == (conv + transposed, 2 * conv + 3 * transposed)
    assert roofline.dense_products(model, 4) is None  # products alone: Dense models only


@pytest.mark.quick
def test_the_step_parts_train_as_keras_does(roofline):
    """On this backend, the gradients alone, the update alone and both together run; on
    TensorFlow and PyTorch one call of `both` moves the weights as one `train_on_batch` from
    the same start does (JAX's parts are stateless: the model keeps its weights)."""
    import numpy as np

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
        m.compile(optimizer="sgd", loss="mse")
        m.optimizer.build(m.trainable_variables)
        return m

    x = np.random.default_rng(0).random((8, 4)).astype("float32")
    y = x.sum(1, keepdims=True)
    reference = model()
    reference.train_on_batch(x, y)
    timed = model()
    parts = roofline.step_parts(timed, x, y, 8)
    assert set(parts) == {"gradients", "update", "both"}
    parts["gradients"]()
    parts["both"]()
    after = [keras.ops.convert_to_numpy(v) for v in timed.trainable_variables]
    parts["update"]()
    if keras.backend.backend() != "jax":
        for a, b in zip(reference.trainable_variables, after):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(a), b, rtol=1e-5, atol=1e-6)
