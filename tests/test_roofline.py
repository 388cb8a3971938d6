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


def test_the_torch_compile_line_gives_the_failure_or_the_speed_up(roofline):
    failed = roofline.torch_compile_line({"error": "InductorError: LoweringException"})
    assert failed.endswith("compiling failed: InductorError: LoweringException")
    line = roofline.torch_compile_line({"first": 30.0, "compiled": 0.005, "eager": 0.010,
                                        "graphs": 3, "breaks": {"skipped\nmore": 2, "other": 1}},
                                       ", with a note")
    assert "jit_compile=True, with a note): first epoch 30.0 s" in line
    assert "5.00 ms a step against 10.00 eager (alternating epochs): 2.00x" in line
    assert line.endswith("3 graphs compiled, 3 graph breaks "
                         "(2 reasons; the most frequent: skipped)")


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="PyTorch's random draws")
def test_torch_global_draws_replace_keras_draws_until_undone(roofline):
    """On PyTorch: with `torch_global_draws`, Keras' normal, uniform and randint come from
    torch's global generator (whatever their seed) with the asked shape, dtype and range; the
    undo puts Keras' own back."""
    import torch
    from keras.src.backend.torch import random as torch_random

    own = (torch_random.normal, torch_random.uniform, torch_random.randint)
    undo = roofline.torch_global_draws()
    try:
        draws = []
        for seed in (1, 2):
            torch.manual_seed(0)
            draws.append(keras.random.normal((4000,), seed=keras.random.SeedGenerator(seed)))
        assert torch.equal(*draws)
        assert abs(float(draws[0].mean())) < 0.1 and abs(float(draws[0].std()) - 1) < 0.1
        u = keras.random.uniform((4000,), 2.0, 3.0, dtype="float64", seed=1)
        assert u.dtype == torch.float64 and 2 <= float(u.min()) and float(u.max()) < 3
        i = keras.random.randint((4000,), 0, 5, dtype="int32", seed=1)
        assert i.dtype == torch.int32 and set(i.tolist()) == set(range(5))
    finally:
        undo()
    assert (torch_random.normal, torch_random.uniform, torch_random.randint) == own


def test_a_compile_error_is_named_down_to_the_error_it_wraps(roofline):
    try:
        try:
            raise ValueError("\nInvalid ranges [0:-1]\nmore")
        except ValueError as inner:
            raise RuntimeError("backend='inductor' raised:") from inner
    except RuntimeError as e:
        assert roofline.compile_error(e) == "RuntimeError from ValueError: Invalid ranges [0:-1]"
    assert roofline.compile_error(KeyError("k")) == "KeyError: 'k'"


@pytest.mark.quick
@pytest.mark.skipif(keras.backend.backend() != "torch", reason="plain PyTorch")
def test_the_plain_pytorch_vae_computes_the_scripts_loss(roofline):
    """On PyTorch: the MLP VAE written without Keras, which roofline.py times as PyTorch's
    floor, is the script's model: from the same weights and noise, the same loss."""
    import numpy as np
    import torch

    import vae_keras
    from common import evaluation

    vae, encoder, decoder = vae_keras.build_models(vae_keras.Config())
    for name, shift in (("z_mean", 3.0), ("z_log_var", 1.5)):  # a KL of some 10 nats
        encoder.get_layer(name).bias.assign(np.full(2, shift, "float32"))
    rng = np.random.default_rng(0)
    x = (rng.random((16, 784)) < 0.3).astype("float32")
    eps = rng.standard_normal((16, 2)).astype("float32")
    z_mean, z_log_var = evaluation.infer(encoder, x, "float32")
    z = z_mean + np.exp(z_log_var / 2) * eps
    logits = evaluation.infer(evaluation.logits_model(decoder), z, "float32")
    x_, logits, z_mean, z_log_var = map(keras.ops.convert_to_tensor, (x, logits, z_mean, z_log_var))
    want = np.mean(keras.ops.convert_to_numpy(
        evaluation.reconstruction_loss(x_, logits) + vae_keras.gaussian_kl(z_mean, z_log_var)))
    got = roofline.plain_vae_loss(roofline.plain_vae_weights(vae), torch.tensor(x),
                                  torch.tensor(eps))
    assert got.requires_grad  # it trains the copies
    assert abs(got.item() - float(want)) < 1e-5 * abs(float(want))


@pytest.mark.quick
@pytest.mark.skipif(keras.backend.backend() != "torch", reason="plain PyTorch")
def test_the_part_by_part_comparison_times_each_part_both_ways(roofline):
    """On PyTorch: the forward pass, the gradients and the update of the MLP VAE, each timed
    through Keras and in plain PyTorch, from images as roofline.py loads them (bytes); Keras'
    update moves the script's weights."""
    import numpy as np

    import vae_keras

    cfg = vae_keras.Config()
    vae = vae_keras.build_models(cfg)[0]
    vae.optimizer.build(vae.trainable_variables)
    before = keras.ops.convert_to_numpy(vae.trainable_variables[0])
    x = np.random.default_rng(0).integers(0, 256, (cfg.batch_size, 784), dtype="uint8")
    t = roofline.plain_torch_parts(vae, cfg, x, rounds=1, repeats=1)
    assert {how: set(parts) for how, parts in t.items()} == {
        how: {"forward", "gradients", "update"} for how in ("keras", "plain")}
    assert all(s > 0 for parts in t.values() for s in parts.values())
    assert not np.array_equal(before, keras.ops.convert_to_numpy(vae.trainable_variables[0]))


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch.compile")
def test_the_forward_compiled_whole_computes_the_eager_loss_and_puts_keras_back(roofline):
    """On PyTorch (slow: torch.compile compiles): the MLP VAE's forward pass and loss compiled
    whole, which roofline.py times against eager, computes the eager loss from the same draws,
    times both, and leaves Keras' random draws and torch's MPS query as they were."""
    import numpy as np
    import torch
    from keras.src.backend.torch import random as torch_random

    import vae_keras

    cfg = vae_keras.Config()
    vae = vae_keras.build_models(cfg)[0]
    own = (torch_random.normal, torch.backends.mps.is_available)
    x = np.random.default_rng(0).integers(0, 256, (cfg.batch_size, 784), dtype="uint8") / 255
    t = roofline.torch_forward_compile_times(vae, cfg, x, rounds=1, repeats=1)
    assert "error" not in t, t["error"]
    assert t["difference"] < 1e-5 and t["eager"] > 0 and t["compiled"] > 0
    assert (torch_random.normal, torch.backends.mps.is_available) == own
    assert not torch._inductor.config.fallback_random
