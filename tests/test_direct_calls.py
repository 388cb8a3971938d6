"""common/direct_calls.py: on PyTorch, each script's training model computes the same loss and
the same gradients, to the bit, with its layers called directly as through Keras' `__call__`;
`training` reaches the layers as Keras passes it; a mask or a mixed-precision policy keeps
Keras' path; on the other backends nothing is installed. (Marked `backends`: the PyTorch cases
run in tests/test_backends.py's PyTorch process.)"""
import importlib

import keras
import numpy as np
import pytest

from common import direct_calls

TORCH = keras.backend.backend() == "torch"
SCRIPTS = ["vae_keras", "vae_vmf_keras", "vae_keras_cnn_gs", "nice"]


def loss_and_gradients(model, x, y=None):
    """One training step's loss and gradients, as Keras' PyTorch trainer computes them."""
    model.zero_grad()
    loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True), training=True)
    loss.backward()
    return (keras.ops.convert_to_numpy(loss.detach()),
            [keras.ops.convert_to_numpy(v.value.grad) for v in model.trainable_variables])


def twice(model, x, y=None):
    """Keras' path, then direct calls, from the same random state (the scripts' models come
    with direct calls installed: they are taken away for the first)."""
    state = [keras.ops.copy(v.value) for v in model.non_trainable_variables]
    direct_calls.uninstall(model)
    assert "call" not in vars(model)
    keras_path = loss_and_gradients(model, x, y)
    assert direct_calls.install(model)
    for v, value in zip(model.non_trainable_variables, state):
        v.assign(value)
    return keras_path, loss_and_gradients(model, x, y)


@pytest.mark.backends
@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_trains_to_the_bit_as_through_keras_calls(name):
    if not TORCH:
        pytest.skip("direct calls are PyTorch's (the other backends: the test below)")
    module = importlib.import_module(name)
    keras.utils.set_random_seed(0)
    model = module.build_models(module.Config())[0]
    x = np.random.default_rng(0).random((8, 784)).astype("float32")
    if name == "vae_keras_cnn_gs":
        x = x.reshape(8, 28, 28, 1)
    x = keras.ops.convert_to_tensor(x)
    (keras_loss, keras_grads), (loss, grads) = twice(model, x, x if name == "nice" else None)
    assert direct_calls.direct_layers(model)  # some layers are called directly
    assert loss == keras_loss and np.isfinite(loss)
    for got, want in zip(grads, keras_grads, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.backends
def test_training_reaches_the_layers_as_keras_passes_it():
    """Dropout's `training` comes from the model's call; a nested model's layers get it too,
    and a `training` fixed in the graph is overridden by the call's, as Keras does."""
    if not TORCH:
        pytest.skip("PyTorch only")
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, keras.layers.Dropout(0.5, seed=1)(inner_in))
    x_in = keras.Input((6,))
    h = keras.layers.Dense(6)(x_in)
    out = keras.layers.Dropout(0.5, seed=2)(inner(h), training=False)
    model = keras.Model(x_in, out)
    x = keras.ops.ones((4, 6))
    state = [keras.ops.copy(v.value) for v in model.non_trainable_variables]
    want = {t: keras.ops.convert_to_numpy(model(x, training=t)) for t in (True, False)}
    assert direct_calls.install(model) and len(direct_calls.direct_layers(model)) == 4
    for v, value in zip(model.non_trainable_variables, state):
        v.assign(value)
    for t in (True, False):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x, training=t)), want[t])
    assert (want[True] == 0).any() and not (want[False] == 0).any()


@pytest.mark.backends
def test_a_mask_or_mixed_precision_keeps_keras_path():
    tokens = keras.Input((5,), dtype="int32")
    embedded = keras.layers.Embedding(10, 3, mask_zero=True)(tokens)
    masked = keras.Model(tokens, keras.layers.Dense(2)(embedded))
    x_in = keras.Input((4,))
    mixed = keras.Model(x_in, keras.layers.Dense(2, dtype="mixed_bfloat16")(x_in))
    assert direct_calls.direct_layers(mixed) is None
    assert not direct_calls.install(mixed)
    if TORCH:
        assert direct_calls.direct_layers(masked) == set()  # both layers' nodes carry the mask
        assert direct_calls.install(masked)
        x = np.array([[1, 2, 0, 0, 0]], "int32")
        assert keras.ops.convert_to_numpy(masked(x, training=True)).shape == (1, 5, 2)
    else:
        assert not direct_calls.install(masked) and "call" not in vars(masked)


@pytest.mark.backends
def test_the_scripts_install_it_on_pytorch_unless_plain_keras():
    import vae_keras

    for plain, installed in ((False, TORCH), (True, False)):
        model = vae_keras.build_models(vae_keras.Config(plain_keras=plain))[0]
        assert ("call" in vars(model)) == installed
