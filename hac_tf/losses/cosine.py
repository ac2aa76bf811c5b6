"""Negative-cosine losses of SimSiam and BYOL (docs/METHODS.md#simsiam, #byol)."""

from __future__ import annotations

import tensorflow as tf

from hac_tf.losses._common import as_float32, check_pair, l2_normalize

__all__ = ["byol_loss", "negative_cosine", "symmetric_negative_cosine"]


def _cosine(p: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    """Row-wise cos(p, stop_gradient(z)) in float32: [B]."""
    pn = l2_normalize(as_float32(p))
    zn = l2_normalize(tf.stop_gradient(as_float32(z)))
    return tf.reduce_sum(pn * zn, axis=1)


def negative_cosine(p: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    """SimSiam D(p, z) = -mean_i cos(p_i, stop_gradient(z_i)), float32 scalar in [-1, 1].

    Args:
      p: [B, d] predictor outputs (gradient flows).
      z: [B, d] projector outputs (target; stop-gradient, so its gradient is None).
    """
    check_pair("p", p, "z", z)
    return -tf.reduce_mean(_cosine(p, z))


def symmetric_negative_cosine(
    p1: tf.Tensor, z1: tf.Tensor, p2: tf.Tensor, z2: tf.Tensor
) -> tf.Tensor:
    """SimSiam / HA per-level loss 0.5 * D(p1, z2) + 0.5 * D(p2, z1), float32 scalar.

    All inputs [B, d]; p_v / z_v are the predictor / projector outputs of view v.
    """
    check_pair("p1", p1, "z2", z2)
    check_pair("p2", p2, "z1", z1)
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


def byol_loss(p: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    """BYOL regression loss mean_i (2 - 2 cos(p_i, stop_gradient(z_i))), float32 scalar in [0, 4].

    Equals the mean squared distance of the l2-normalised vectors. Args as `negative_cosine`;
    symmetrise by calling it with the views swapped and summing.
    """
    check_pair("p", p, "z", z)
    return tf.reduce_mean(2.0 - 2.0 * _cosine(p, z))
