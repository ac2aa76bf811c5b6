"""hac_tf/losses/stats.py: similarity_stats against a NumPy reference, on collapse and on healthy embeddings."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hac_tf.losses import similarity_stats  # noqa: E402


def _pair(b=6, d=8, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(b, d)).astype(np.float32)
    return a, (a + rng.normal(size=(b, d))).astype(np.float32)


def test_similarity_stats_reference_and_collapse():
    a, b = _pair(b=5, d=8)
    stats = similarity_stats(a, b)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    sim = an @ bn.T
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(stats["pos_sim"].numpy(), np.mean(np.diag(sim)), rtol=1e-5)
    np.testing.assert_allclose(stats["neg_sim"].numpy(), np.mean(sim[off]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        stats["embedding_std"].numpy(), np.mean(np.std(np.concatenate([an, bn]), axis=0)),
        rtol=1e-5,
    )
    assert all(v.dtype == tf.float32 for v in stats.values())
    # Collapse: every embedding identical -> std 0, pos_sim 1.
    same = np.tile(a[:1], (5, 1))
    collapsed = similarity_stats(same, 2 * same)
    assert collapsed["embedding_std"].numpy() == pytest.approx(0.0, abs=1e-6)
    assert collapsed["pos_sim"].numpy() == pytest.approx(1.0, abs=1e-6)
    # Healthy high-dimensional random embeddings: std ~ 1/sqrt(d).
    rng = np.random.default_rng(0)
    z = rng.normal(size=(512, 64)).astype(np.float32)
    healthy = similarity_stats(z, rng.normal(size=(512, 64)).astype(np.float32))
    assert healthy["embedding_std"].numpy() == pytest.approx(1 / 8, rel=0.05)
    assert similarity_stats(a[:1], b[:1])["neg_sim"].numpy() == 0.0
