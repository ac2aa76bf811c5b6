"""Barlow Twins redundancy-reduction loss (HA supplementary B: lambda 3.9e-3, scale 1/32)."""

from __future__ import annotations

from typing import Union

import tensorflow as tf

from hac_tf.losses._common import as_float32, check_pair, check_positive, gather_rows, replica_info

__all__ = ["barlow_twins"]


def _standardize(z: tf.Tensor, eps: float) -> tf.Tensor:
    """Per-column (z - mean) / sqrt(var + eps) over the batch, biased variance: [B, d]."""
    mean, var = tf.nn.moments(z, axes=[0], keepdims=True)
    return (z - mean) * tf.math.rsqrt(var + eps)


def barlow_twins(
    z_a: tf.Tensor,
    z_b: tf.Tensor,
    lambd: Union[float, tf.Tensor] = 3.9e-3,
    scale: Union[float, tf.Tensor] = 1.0 / 32.0,
    eps: float = 1e-5,
    gather_across_replicas: bool = False,
) -> tf.Tensor:
    """Barlow Twins loss, float32 scalar: scale * (on_diag + lambd * off_diag).

    Each column of z_a and z_b is standardised over the batch (biased variance plus `eps`, like
    BatchNorm without affine, so a zero-variance column gives 0 rather than NaN);
    C = z_a_std^T z_b_std / B is the [d, d] cross-correlation, on_diag = sum_i (1 - C_ii)^2 and
    off_diag = sum_{i != j} C_ij^2. `scale` multiplies BOTH terms (as `--scale-loss` in the
    original Barlow Twins code; the HA supplementary's "on-diagonal scale 1/32").

    Args:
      z_a, z_b: [B, d] projector outputs of the two views.
      lambd: off-diagonal weight (>= 0).
      scale: overall loss scale (> 0).
      eps: variance epsilon of the standardisation.
      gather_across_replicas: under a replica context with >1 replicas, the batch statistics
        and C are per-replica (local batch) by default; True all-gathers z_a and z_b first, so
        every replica computes the global-batch loss (MEAN-reduce then equals single device).
    """
    check_pair("z_a", z_a, "z_b", z_b)
    check_positive("lambd", lambd, allow_zero=True)
    check_positive("scale", scale)
    check_positive("eps", eps)
    za = as_float32(z_a)
    zb = as_float32(z_b)
    ctx, num_replicas = replica_info()
    if gather_across_replicas and num_replicas > 1:
        (za, zb), _ = gather_rows(ctx, za, zb)
    batch = tf.cast(tf.shape(za)[0], tf.float32)
    c = tf.matmul(_standardize(za, eps), _standardize(zb, eps), transpose_a=True) / batch
    diag = tf.linalg.diag_part(c)
    on_diag = tf.reduce_sum(tf.square(1.0 - diag))
    off_diag = tf.reduce_sum(tf.square(tf.linalg.set_diag(c, tf.zeros_like(diag))))
    return as_float32(scale) * (on_diag + as_float32(lambd) * off_diag)
