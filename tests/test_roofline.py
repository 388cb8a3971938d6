"""benchmarks/roofline.py's FLOP count, on which every fraction it prints rests."""
import importlib
import sys

import keras
import pytest

from common import run

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="roofline.py measures TensorFlow")


@pytest.fixture
def roofline(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # the import sets it; undone afterwards
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
