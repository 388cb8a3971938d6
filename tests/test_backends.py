"""The same scripts on JAX: the backend-portable tests run again there, and weights cross over.

This file runs under the default backend (TensorFlow); it starts JAX in subprocesses, since a
process picks its Keras backend once.
"""
import os
import subprocess
import sys

import keras
import numpy as np

import vae_keras
from common import run

JAX = {**os.environ, "KERAS_BACKEND": "jax"}


def test_the_portable_tests_pass_on_jax():
    """Every test marked `backends` (end-to-end runs, samplers, the flow's inverse and log-det)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-m", "backends and not slow", "tests"],
                          env=JAX, cwd=run.REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]


DECODE = """
import sys, numpy as np, keras, vae_keras
assert keras.backend.backend() == sys.argv[1]
cfg = vae_keras.Config()
vae, encoder, decoder = vae_keras.build_models(cfg)
vae.load_weights(sys.argv[2])
z = np.linspace(-2, 2, 20, dtype="float32").reshape(10, 2)
np.save(sys.argv[3], decoder.predict(z, verbose=0))
"""


def test_weights_saved_on_tensorflow_load_on_jax(tmp_path):
    keras.utils.set_random_seed(3)
    vae, _, decoder = vae_keras.build_models(vae_keras.Config())
    vae.fit(np.random.default_rng(0).random((200, 784)).astype("float32"), epochs=1,
            batch_size=100, verbose=0)  # weights away from their initial values
    vae.save_weights(tmp_path / "tf.weights.h5")
    z = np.linspace(-2, 2, 20, dtype="float32").reshape(10, 2)
    here = decoder.predict(z, verbose=0)
    done = subprocess.run([sys.executable, "-c", DECODE, "jax", str(tmp_path / "tf.weights.h5"),
                           str(tmp_path / "jax.npy")], env=JAX, cwd=run.REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), here, rtol=1e-5, atol=1e-6)
