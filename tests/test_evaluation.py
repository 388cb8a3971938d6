"""common/evaluation.py: the importance-sampled NLL's log-mean-exp and the Bernoulli
log-likelihood from logits."""
import numpy as np
import pytest

from common import evaluation


@pytest.mark.quick
def test_importance_sampled_nll_log_mean_exp():
    lw = np.log(np.array([[1.0, 3.0], [2.0, 2.0], [0.5, 1.5]]))
    m, images = evaluation.importance_sampled_nll(lambda x, k: lw[x], np.arange(3), 2,
                                                  chunk_samples=4)
    nll = -np.log([2.0, 2.0, 1.0])
    np.testing.assert_allclose(images["nll"], nll, atol=1e-12)
    np.testing.assert_allclose(images["neg_elbo_sampled"], -lw.mean(1))
    np.testing.assert_allclose(m["test_nll"], nll.mean())
    np.testing.assert_allclose(m["test_nll_stderr"], nll.std(ddof=1) / np.sqrt(3))
    assert (m["is_samples"], m["is_images"]) == (2, 3)


@pytest.mark.quick
def test_bernoulli_log_likelihood_from_logits():
    rng = np.random.default_rng(0)
    x = rng.random((3, 4, 5)).astype("float32")
    logits = rng.normal(0, 3, (3, 4, 5)).astype("float32")
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    by_hand = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2))
    np.testing.assert_allclose(np.asarray(evaluation.bernoulli_log_likelihood(x, logits)),
                               by_hand, rtol=1e-5)
    # no clipping: a pixel the decoder is sure of keeps its exact log-likelihood
    sure = np.asarray(evaluation.bernoulli_log_likelihood(np.zeros((1, 1)), np.full((1, 1), 40.0)))
    assert sure[0] == pytest.approx(-40.0, rel=1e-6)


@pytest.mark.quick
def test_save_per_image_writes_a_column_per_value_and_names_them(tmp_path):
    entry = evaluation.save_per_image(tmp_path, {"nll": [1.0, 2.5, 3.0], "neg_elbo": [4, 5, 6]})
    assert entry == {"test_per_image": {"file": "test_per_image.npy",
                                        "columns": ["nll", "neg_elbo"]}}
    table = np.load(tmp_path / "test_per_image.npy")
    assert table.dtype == np.float32
    np.testing.assert_array_equal(table, [[1.0, 4], [2.5, 5], [3.0, 6]])
