"""VICReg against a float64 NumPy reference written from the paper's formulas (Bardes et al., ICLR 2022)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hac_tf.losses.vicreg import VICRegTerms, vicreg_loss, vicreg_terms  # noqa: E402
from hacloss_helpers import numeric_grad


def ref_terms(a: np.ndarray, b: np.ndarray, gamma: float = 1.0, eps: float = 1e-4):
    """(s, v(a) + v(b), c(a) + c(b)) in float64, term by term as the paper writes them."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    n, d = a.shape
    invariance = sum(np.sum((a[i] - b[i]) ** 2) for i in range(n)) / (n * d)  # s: mean of ||z_i - z'_i||^2 / d

    def variance(z):  # v(Z) = 1/d sum_j max(0, gamma - S(z^j, eps)), S = sqrt(Var + eps), Var unbiased
        return sum(max(0.0, gamma - np.sqrt(np.var(z[:, j], ddof=1) + eps)) for j in range(d)) / d

    def covariance(z):  # c(Z) = 1/d sum_{i != j} C(Z)_ij^2, C(Z) = 1/(n-1) sum_k (z_k - mean)(z_k - mean)^T
        mean = z.mean(axis=0)
        c = sum(np.outer(z[k] - mean, z[k] - mean) for k in range(n)) / (n - 1)
        return sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d

    return invariance, variance(a) + variance(b), covariance(a) + covariance(b)


def ref_loss(a, b, sim=25.0, std=25.0, cov=1.0, gamma=1.0, eps=1e-4) -> float:
    s, v, c = ref_terms(a, b, gamma, eps)
    return sim * s + std * v + cov * c


def _pair(b: int, d: int, seed: int = 0, scale: float = 0.5):
    """Columns with stds around `scale` (some below gamma = 1, so the hinge is active) and correlations."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    a = (rng.normal(size=(b, d)) @ mix * scale * rng.uniform(0.3, 3.0, size=d)).astype(np.float32)
    return a, (a + 0.3 * scale * rng.normal(size=(b, d))).astype(np.float32)


@pytest.mark.parametrize("b,d,seed", [(2, 3, 0), (8, 5, 1), (32, 16, 2), (17, 64, 3)])
def test_terms_and_loss_match_the_reference(b, d, seed):
    a, z = _pair(b, d, seed)
    terms = vicreg_terms(a, z)
    assert isinstance(terms, VICRegTerms) and all(t.dtype == tf.float32 for t in terms)
    want = ref_terms(a, z)
    assert 0 < want[1] < 2  # the variance hinge is active on some columns, not all
    np.testing.assert_allclose([float(t) for t in terms], want, rtol=2e-4, atol=1e-6)
    loss = vicreg_loss(a, z)
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(float(loss), ref_loss(a, z), rtol=2e-4)


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0),
                                    (5.0, 2.5, 0.04)])
def test_coefficients_weight_each_term(coeffs):
    a, z = _pair(12, 6, seed=4)
    np.testing.assert_allclose(float(vicreg_loss(a, z, *coeffs)), ref_loss(a, z, *coeffs), rtol=2e-4, atol=1e-6)


def test_gamma_and_eps():
    a, z = _pair(10, 4, seed=5)
    got = vicreg_terms(a, z, gamma=2.0, eps=0.5)
    np.testing.assert_allclose([float(t) for t in got], ref_terms(a, z, 2.0, 0.5), rtol=2e-4)


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 3.0, 2.0)])
def test_gradients_match_finite_differences(coeffs):
    a, z = _pair(7, 4, seed=6)
    ta, tz = tf.constant(a), tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch([ta, tz])
        loss = vicreg_loss(ta, tz, *coeffs)
    ga, gz = tape.gradient(loss, [ta, tz])
    for got, want in ((ga, numeric_grad(lambda x: ref_loss(x, z, *coeffs), a)),
                      (gz, numeric_grad(lambda x: ref_loss(a, x, *coeffs), z))):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_known_values():
    # identical views with unit-variance, uncorrelated columns: every term is (nearly) zero
    a = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], np.float32) * np.sqrt(3.0 / 4.0)
    terms = vicreg_terms(a, a, eps=1e-12)
    np.testing.assert_allclose([float(t) for t in terms], [0.0, 0.0, 0.0], atol=1e-5)
    # a collapsed branch: every std is sqrt(eps), the hinge gives 1 - 0.01 per branch, no covariance
    c = np.ones((4, 3), np.float32)
    terms = vicreg_terms(c, c)
    np.testing.assert_allclose([float(t) for t in terms], [0.0, 2 * (1.0 - 1e-2), 0.0], rtol=1e-5, atol=1e-7)


def test_low_precision_inputs_compute_in_float32():
    a, z = _pair(16, 8, seed=7)
    got = vicreg_loss(tf.cast(a, tf.bfloat16), tf.cast(z, tf.bfloat16))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(float(got), float(vicreg_loss(a, z)), rtol=0.05)
    np.testing.assert_allclose(float(vicreg_loss(a.astype(np.float64), z.astype(np.float64))),
                               float(vicreg_loss(a, z)), rtol=1e-6)


def test_validation_names_the_culprit():
    a, z = _pair(6, 5)
    with pytest.raises(ValueError, match=r"z_a and z_b must have the same shape"):
        vicreg_loss(a, z[:, :4])
    with pytest.raises(ValueError, match="z_a must be rank 2"):
        vicreg_loss(a[0], z[0])
    with pytest.raises(ValueError, match="at least 2 rows"):
        vicreg_loss(a[:1], z[:1])
    with pytest.raises(ValueError, match="std_coeff must be >= 0"):
        vicreg_loss(a, z, std_coeff=-1.0)
    with pytest.raises(ValueError, match="gamma must be > 0"):
        vicreg_terms(a, z, gamma=0.0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        vicreg_terms(a, z, eps=0.0)
