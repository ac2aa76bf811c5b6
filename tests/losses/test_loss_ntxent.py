"""NT-Xent and EquiMod NT-Xent against independent float64 NumPy references."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hac_tf.losses import equimod_nt_xent, nt_xent  # noqa: E402
from hacloss_helpers import numeric_grad


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def ref_nt_xent(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    """Literal SimCLR: 2B rows, self excluded, target of row i is i +- B, mean over rows."""
    z = _normalize(np.concatenate([a, b]).astype(np.float64))
    n = z.shape[0]
    half = n // 2
    sim = z @ z.T / tau
    total = 0.0
    for i in range(n):
        target = (i + half) % n
        others = np.array([sim[i, j] for j in range(n) if j != i])
        total += -sim[i, target] + _logsumexp(others, axis=0)
    return total / n


def ref_equimod(y_t: np.ndarray, y_hat: np.ndarray, tau: float) -> float:
    """docs/METHODS.md#equimod-loss verbatim: Z = [y_t; y_hat] (4B), diag - 1e8, target i +- 2B."""
    z = _normalize(np.concatenate([y_t, y_hat]).astype(np.float64))
    m = y_t.shape[0]
    sim = z @ z.T / tau - 1e8 * np.eye(2 * m)
    targets = np.concatenate([np.arange(m, 2 * m), np.arange(m)])
    lse = _logsumexp(sim, axis=1)
    return float(np.mean(lse - sim[np.arange(2 * m), targets]))


def _pair(b: int = 5, d: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(b, d)).astype(np.float32)
    bb = (a + rng.normal(size=(b, d))).astype(np.float32)
    return a, bb


@pytest.mark.parametrize("tau", [0.01, 0.1, 0.5, 1.0])
def test_value_matches_reference(tau):
    a, b = _pair()
    got = nt_xent(a, b, tau)
    assert got.dtype == tf.float32 and got.shape == ()
    assert np.isfinite(got.numpy())
    np.testing.assert_allclose(got.numpy(), ref_nt_xent(a, b, tau), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_gradients_match_finite_differences(tau):
    a, b = _pair(b=4, d=5, seed=1)
    ta, tb = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([ta, tb])
        loss = nt_xent(ta, tb, tau)
    ga, gb = tape.gradient(loss, [ta, tb])
    na = numeric_grad(lambda x: ref_nt_xent(x, b, tau), a)
    nb = numeric_grad(lambda x: ref_nt_xent(a, x, tau), b)
    for got, want in ((ga, na), (gb, nb)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_tiny_temperature_is_finite_with_finite_gradients():
    a, b = _pair(b=8, d=4, seed=2)
    ta = tf.constant(a)
    with tf.GradientTape() as tape:
        tape.watch(ta)
        loss = nt_xent(ta, b, 0.001)
    grad = tape.gradient(loss, ta)
    assert np.isfinite(loss.numpy()) and np.all(np.isfinite(grad.numpy()))
    np.testing.assert_allclose(loss.numpy(), ref_nt_xent(a, b, 0.001), rtol=1e-4)


def test_batch_of_one_is_zero():
    """B = 1: each of the 2 rows has only its positive besides itself, so the loss is 0."""
    a, b = _pair(b=1)
    ta = tf.constant(a)
    with tf.GradientTape() as tape:
        tape.watch(ta)
        loss = nt_xent(ta, b, 0.1)
    assert loss.numpy() == pytest.approx(0.0, abs=1e-7)
    assert np.all(tape.gradient(loss, ta).numpy() == 0.0)


def test_identical_inputs_and_full_collapse():
    a, _ = _pair()
    np.testing.assert_allclose(nt_xent(a, a, 0.2).numpy(), ref_nt_xent(a, a, 0.2), rtol=1e-4)
    # Every row identical: uniform over the 2B - 1 candidates.
    same = np.ones((6, 3), np.float32)
    assert nt_xent(same, same, 0.3).numpy() == pytest.approx(np.log(11.0), rel=1e-5)


def test_scale_invariance_of_rows():
    a, b = _pair()
    np.testing.assert_allclose(
        nt_xent(3.0 * a, 0.5 * b, 0.2).numpy(), nt_xent(a, b, 0.2).numpy(), rtol=1e-5
    )


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_low_precision_inputs_give_float32(dtype):
    a, b = _pair(b=6, d=8)
    la, lb = tf.cast(a, dtype), tf.cast(b, dtype)
    got = nt_xent(la, lb, 0.2)
    assert got.dtype == tf.float32
    # Exact on the rounded inputs, close to the float32 inputs.
    want = ref_nt_xent(tf.cast(la, tf.float32).numpy(), tf.cast(lb, tf.float32).numpy(), 0.2)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4)
    np.testing.assert_allclose(got.numpy(), nt_xent(a, b, 0.2).numpy(), rtol=0.05)


def test_graph_mode_with_unknown_batch():
    a, b = _pair(b=5, d=7)
    spec = tf.TensorSpec([None, 7], tf.float32)
    fn = tf.function(lambda x, y: nt_xent(x, y, 0.5), input_signature=[spec, spec])
    np.testing.assert_allclose(fn(a, b).numpy(), nt_xent(a, b, 0.5).numpy(), rtol=1e-6)


def test_validation_errors_name_arguments():
    a, b = _pair()
    with pytest.raises(ValueError, match="z_a.*rank 2"):
        nt_xent(a[None], a[None], 0.5)
    with pytest.raises(ValueError, match=r"z_a and z_b.*\(5, 7\).*\(5, 6\)"):
        nt_xent(a, b[:, :6], 0.5)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(a, b, 0.0)
    with pytest.raises(ValueError, match="y_t and y_hat_t"):
        equimod_nt_xent(a, b[:4])


@pytest.mark.parametrize("tau", [0.01, 0.2])
def test_equimod_matches_spec_over_4b_rows(tau):
    rng = np.random.default_rng(3)
    y_t = rng.normal(size=(6, 8)).astype(np.float32)  # 2B = 6 rows: [view1 (3); view2 (3)]
    y_hat = (y_t + 0.3 * rng.normal(size=(6, 8))).astype(np.float32)
    got = equimod_nt_xent(y_t, y_hat, tau)
    np.testing.assert_allclose(got.numpy(), ref_equimod(y_t, y_hat, tau), rtol=1e-4, atol=1e-5)
    assert equimod_nt_xent(y_t, y_hat).numpy() == pytest.approx(
        ref_equimod(y_t, y_hat, 0.2), rel=1e-4
    )


def test_equimod_other_view_is_a_negative():
    """Making the other view of image k identical to y_t[k] must raise the loss."""
    rng = np.random.default_rng(4)
    y_t = rng.normal(size=(4, 8)).astype(np.float32)
    y_hat = y_t.copy()
    base = equimod_nt_xent(y_t, y_hat).numpy()
    y_t2 = y_t.copy()
    y_t2[2:] = y_t2[:2]  # view2 of each image == view1
    raised = equimod_nt_xent(y_t2, y_t2).numpy()
    assert raised > base
    np.testing.assert_allclose(raised, ref_equimod(y_t2, y_t2, 0.2), rtol=1e-4)
