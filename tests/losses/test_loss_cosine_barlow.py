"""Negative cosine (SimSiam/BYOL) and Barlow Twins against float64 NumPy references."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hac_tf.losses import (  # noqa: E402
    barlow_twins,
    byol_loss,
    negative_cosine,
    symmetric_negative_cosine,
)
from hacloss_helpers import numeric_grad


def ref_cos(p, z):
    p, z = p.astype(np.float64), z.astype(np.float64)
    return np.sum(p * z, axis=1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(z, axis=1))


def ref_barlow(a, b, lambd, scale, eps=1e-5):
    a, b = a.astype(np.float64), b.astype(np.float64)
    sa = (a - a.mean(0)) / np.sqrt(a.var(0) + eps)
    sb = (b - b.mean(0)) / np.sqrt(b.var(0) + eps)
    c = sa.T @ sb / a.shape[0]
    d = c.shape[0]
    on = sum((1 - c[i, i]) ** 2 for i in range(d))
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return scale * (on + lambd * off)


def _pair(b=6, d=5, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(b, d)).astype(np.float32)
    return a, (a + rng.normal(size=(b, d))).astype(np.float32)


def _grads(fn, *xs):
    ts = [tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        tape.watch(ts)
        loss = fn(*ts)
    return loss, tape.gradient(loss, ts)


def _close_grad(got, want):
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


# ---------------------------------------------------------------- cosine


def test_negative_cosine_value_gradient_and_stop_gradient():
    p, z = _pair()
    loss, (gp, gz) = _grads(negative_cosine, p, z)
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), -np.mean(ref_cos(p, z)), rtol=1e-5)
    assert gz is None  # stop-gradient on the target
    _close_grad(gp, numeric_grad(lambda x: -np.mean(ref_cos(x, z)), p))


def test_symmetric_and_byol():
    p1, z1 = _pair(seed=1)
    p2, z2 = _pair(seed=2)
    want = 0.5 * -np.mean(ref_cos(p1, z2)) + 0.5 * -np.mean(ref_cos(p2, z1))
    loss, grads = _grads(symmetric_negative_cosine, p1, z1, p2, z2)
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-5)
    assert grads[1] is None and grads[3] is None
    b_loss, (gp, gz) = _grads(byol_loss, p1, z1)
    np.testing.assert_allclose(b_loss.numpy(), np.mean(2 - 2 * ref_cos(p1, z1)), rtol=1e-5)
    assert gz is None
    _close_grad(gp, numeric_grad(lambda x: np.mean(2 - 2 * ref_cos(x, z1)), p1))


def test_cosine_identical_inputs_and_low_precision():
    p, _ = _pair()
    assert negative_cosine(p, p).numpy() == pytest.approx(-1.0, abs=1e-6)
    assert byol_loss(p, 2 * p).numpy() == pytest.approx(0.0, abs=1e-6)
    p, z = _pair(b=8, d=16)
    got = negative_cosine(tf.cast(p, tf.bfloat16), tf.cast(z, tf.bfloat16))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), negative_cosine(p, z).numpy(), atol=1e-2)


def test_cosine_validation():
    p, z = _pair()
    with pytest.raises(ValueError, match=r"p and z.*\(6, 5\).*\(6, 4\)"):
        negative_cosine(p, z[:, :4])
    with pytest.raises(ValueError, match="p must be rank 2"):
        byol_loss(p[0], z[0])
    with pytest.raises(ValueError, match="p2 and z1"):
        symmetric_negative_cosine(p, z, p[:3], z)


# ---------------------------------------------------------------- Barlow Twins


@pytest.mark.parametrize("lambd,scale", [(3.9e-3, 1 / 32), (0.0, 1.0), (0.5, 0.1)])
def test_barlow_value_matches_reference(lambd, scale):
    a, b = _pair(b=10, d=6)
    got = barlow_twins(a, b, lambd, scale)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), ref_barlow(a, b, lambd, scale), rtol=1e-4, atol=1e-6)


def test_barlow_defaults_and_scale_multiplies_both_terms():
    a, b = _pair(b=10, d=6)
    np.testing.assert_allclose(
        barlow_twins(a, b).numpy(), ref_barlow(a, b, 3.9e-3, 1 / 32), rtol=1e-4
    )
    one = barlow_twins(a, b, 0.2, 1.0).numpy()
    np.testing.assert_allclose(barlow_twins(a, b, 0.2, 0.25).numpy(), 0.25 * one, rtol=1e-6)


def test_barlow_gradients():
    a, b = _pair(b=7, d=4, seed=3)
    _, (ga, gb) = _grads(lambda x, y: barlow_twins(x, y, 0.1, 0.5), a, b)
    _close_grad(ga, numeric_grad(lambda x: ref_barlow(x, b, 0.1, 0.5), a))
    _close_grad(gb, numeric_grad(lambda x: ref_barlow(a, x, 0.1, 0.5), b))


def test_barlow_edge_cases():
    a, b = _pair(b=8, d=5)
    # Identical standardised inputs: C is the correlation matrix, diag ~ 1.
    same = barlow_twins(a, a, 0.0, 1.0).numpy()
    assert same == pytest.approx(0.0, abs=1e-4)
    # A zero-variance column gives finite values and gradients (C_ii = 0 for it).
    a0 = a.copy()
    a0[:, 2] = 3.0
    loss, (ga, _) = _grads(barlow_twins, a0, b)
    assert np.isfinite(loss.numpy()) and np.all(np.isfinite(ga.numpy()))
    np.testing.assert_allclose(loss.numpy(), ref_barlow(a0, b, 3.9e-3, 1 / 32), rtol=1e-4)
    got = barlow_twins(tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), barlow_twins(a, b).numpy(), rtol=0.05)


def test_barlow_validation():
    a, b = _pair()
    with pytest.raises(ValueError, match="z_a and z_b"):
        barlow_twins(a, b[:3])
    with pytest.raises(ValueError, match="lambd"):
        barlow_twins(a, b, lambd=-1.0)
    with pytest.raises(ValueError, match="scale"):
        barlow_twins(a, b, scale=0.0)
