"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, ICLR 2022).

For the projections Z, Z' in [B, d] of the two views (docs/METHODS.md#vicreg):

  s(Z, Z') = 1/(B d) sum_b sum_j (z_bj - z'_bj)^2                       invariance (MSE)
  v(Z)     = 1/d sum_j max(0, gamma - sqrt(Var(z^j) + eps))              variance (per branch)
  c(Z)     = 1/d sum_{i != j} C(Z)_ij^2,  C(Z) = (Z - mean)^T (Z - mean) / (B - 1)
  loss     = sim_coeff s(Z, Z') + std_coeff [v(Z) + v(Z')] + cov_coeff [c(Z) + c(Z')]

Var is the unbiased batch variance (divisor B - 1), as in the paper's Eq. 1-4. The two variance
terms are summed as in the paper's Eq. 6; the released code averages them (its std_coeff 25 is
this loss's 12.5).
"""

from __future__ import annotations

from typing import NamedTuple, Union

import tensorflow as tf

from hac_tf.losses._common import as_float32, check_pair, check_positive, gather_rows, replica_info, static_shape

__all__ = ["VICRegTerms", "vicreg_loss", "vicreg_terms"]

Coefficient = Union[float, tf.Tensor]


class VICRegTerms(NamedTuple):
    """The unweighted terms of the VICReg loss, each a float32 scalar.

    invariance: s(Z, Z'), the mean squared difference of the two projections.
    variance: v(Z) + v(Z'), the std hinge of both branches.
    covariance: c(Z) + c(Z'), the off-diagonal covariance penalty of both branches.
    """

    invariance: tf.Tensor
    variance: tf.Tensor
    covariance: tf.Tensor

    def weighted(self, sim_coeff: Coefficient, std_coeff: Coefficient, cov_coeff: Coefficient) -> tf.Tensor:
        """The VICReg loss from its terms: ``sim_coeff * s + std_coeff * v + cov_coeff * c``."""
        return (as_float32(sim_coeff) * self.invariance + as_float32(std_coeff) * self.variance
                + as_float32(cov_coeff) * self.covariance)


def _variance_and_covariance(z: tf.Tensor, gamma: float, eps: float) -> tuple:
    """v(z) and c(z) of one branch z: [B, d] float32 -> (scalar, scalar)."""
    batch = tf.cast(tf.shape(z)[0], tf.float32)
    dim = tf.cast(tf.shape(z)[1], tf.float32)
    centred = z - tf.reduce_mean(z, axis=0, keepdims=True)
    cov = tf.matmul(centred, centred, transpose_a=True) / (batch - 1.0)  # [d, d]
    var = tf.linalg.diag_part(cov)  # [d]: the unbiased per-dimension variance
    variance = tf.reduce_mean(tf.nn.relu(gamma - tf.sqrt(var + eps)))
    off_diag = tf.linalg.set_diag(cov, tf.zeros_like(var))
    covariance = tf.reduce_sum(tf.square(off_diag)) / dim
    return variance, covariance


def vicreg_terms(
    z_a: tf.Tensor,
    z_b: tf.Tensor,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather_across_replicas: bool = False,
) -> VICRegTerms:
    """The three unweighted VICReg terms of a pair of projections (see the module docstring).

    Args:
      z_a, z_b: [B, d] projections (expander outputs) of view a / view b, any float dtype; the
        terms are computed in float32. B must be at least 2 (unbiased variance).
      gamma: target standard deviation of each dimension (> 0; 1 in the paper).
      eps: added to the variance under the square root (> 0; 1e-4 in the paper).
      gather_across_replicas: under a replica context with >1 replicas the terms use the local
        batch by default; True all-gathers z_a and z_b first, so every replica computes the terms
        of the global batch (MEAN-reduce then equals single device), as ``barlow_twins`` does.

    Raises:
      ValueError: shapes that are not [B, d] and equal, a static batch below 2, gamma or eps <= 0.
    """
    check_pair("z_a", z_a, "z_b", z_b)
    shape = static_shape(z_a)
    batch = shape[0] if shape.rank else None
    if batch is not None and batch < 2:
        raise ValueError(f"z_a and z_b need a batch of at least 2 rows (unbiased variance), got {batch}")
    check_positive("gamma", gamma)
    check_positive("eps", eps)
    za = as_float32(z_a)
    zb = as_float32(z_b)
    ctx, num_replicas = replica_info()
    if gather_across_replicas and num_replicas > 1:
        (za, zb), _ = gather_rows(ctx, za, zb)
    invariance = tf.reduce_mean(tf.square(za - zb))
    var_a, cov_a = _variance_and_covariance(za, gamma, eps)
    var_b, cov_b = _variance_and_covariance(zb, gamma, eps)
    return VICRegTerms(invariance, var_a + var_b, cov_a + cov_b)


def vicreg_loss(
    z_a: tf.Tensor,
    z_b: tf.Tensor,
    sim_coeff: Coefficient = 25.0,
    std_coeff: Coefficient = 25.0,
    cov_coeff: Coefficient = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    gather_across_replicas: bool = False,
) -> tf.Tensor:
    """VICReg loss, float32 scalar: sim_coeff s(Z, Z') + std_coeff [v(Z) + v(Z')] + cov_coeff [c(Z) + c(Z')].

    Args:
      z_a, z_b: [B, d] projections of the two views (B >= 2).
      sim_coeff, std_coeff, cov_coeff: weights lambda, mu, nu of the three terms (>= 0; the
        paper's 25, 25, 1).
      gamma, eps, gather_across_replicas: as in :func:`vicreg_terms`.
    """
    for name, value in (("sim_coeff", sim_coeff), ("std_coeff", std_coeff), ("cov_coeff", cov_coeff)):
        check_positive(name, value, allow_zero=True)
    terms = vicreg_terms(z_a, z_b, gamma=gamma, eps=eps, gather_across_replicas=gather_across_replicas)
    return terms.weighted(sim_coeff, std_coeff, cov_coeff)
