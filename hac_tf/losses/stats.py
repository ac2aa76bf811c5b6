"""Monitoring statistics for two batches of embeddings (no gradient)."""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from hac_tf.losses._common import as_float32, check_pair, l2_normalize

__all__ = ["similarity_stats"]


def similarity_stats(z_a: tf.Tensor, z_b: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Similarity / collapse statistics of paired embeddings, float32 scalars (stop-gradient).

    Args:
      z_a, z_b: [B, d]; row i of z_a and z_b are two views of one image.
    Returns:
      pos_sim: mean_i cos(z_a_i, z_b_i).
      neg_sim: mean_{i != j} cos(z_a_i, z_b_j) (0 when B = 1).
      embedding_std: mean over the d dimensions of the batch std of the l2-normalised rows of
        concat[z_a, z_b] ([2B, d]); about 1/sqrt(d) when healthy and 0 when collapsed.
    """
    check_pair("z_a", z_a, "z_b", z_b)
    za = l2_normalize(tf.stop_gradient(as_float32(z_a)))
    zb = l2_normalize(tf.stop_gradient(as_float32(z_b)))
    sim = tf.matmul(za, zb, transpose_b=True)  # [B, B]
    diag = tf.linalg.diag_part(sim)
    batch = tf.cast(tf.shape(za)[0], tf.float32)
    pos_sim = tf.reduce_mean(diag)
    neg_sim = tf.math.divide_no_nan(
        tf.reduce_sum(sim) - tf.reduce_sum(diag), batch * (batch - 1.0)
    )
    both = tf.concat([za, zb], axis=0)
    embedding_std = tf.reduce_mean(tf.math.reduce_std(both, axis=0))
    return {"pos_sim": pos_sim, "neg_sim": neg_sim, "embedding_std": embedding_std}
