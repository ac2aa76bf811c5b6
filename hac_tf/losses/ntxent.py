"""SimCLR NT-Xent and the EquiMod equivariant NT-Xent (docs/METHODS.md#simclr, #equimod-loss).

Distributed convention (any tf.distribute strategy, replica context with R > 1 replicas and
`gather_across_replicas=True`): every replica all-gathers both views, so each of its 2b rows is
contrasted against all 2B = 2Rb rows of the global batch; it returns the mean over *its own*
2b rows. Hence, with equal local batch sizes,

    strategy.reduce(MEAN, strategy.run(fn)) == nt_xent(global z_a, global z_b)

For gradients in a custom loop, divide the per-replica value by `num_replicas_in_sync`
before `tape.gradient` (the usual TF convention, because gradients are SUM-all-reduced):
all_gather's gradient all-reduces the upstream gradients, so the summed per-replica gradients
equal the single-device gradient of the global loss.
"""

from __future__ import annotations

from typing import Optional, Union

import tensorflow as tf

from hac_tf.losses._common import (
    LARGE_NEGATIVE,
    as_float32,
    check_pair,
    check_positive,
    gather_rows,
    l2_normalize,
    replica_info,
)
from hac_tf.losses.mochi import (
    MochiConfig,
    MochiDraws,
    SeedLike,
    StepLike,
    gate_on_step,
    mochi_logits,
)

__all__ = ["equimod_nt_xent", "nt_xent"]


def nt_xent(
    z_a: tf.Tensor,
    z_b: tf.Tensor,
    temperature: Union[float, tf.Tensor] = 0.5,
    gather_across_replicas: bool = True,
    mochi: Optional[MochiConfig] = None,
    step: StepLike = None,
    *,
    rng: Optional[tf.random.Generator] = None,
    seed: Optional[SeedLike] = None,
    draws: Optional[MochiDraws] = None,
) -> tf.Tensor:
    """SimCLR NT-Xent over the 2B rows Z = concat[z_a, z_b].

    Rows are l2-normalised, logits = Z Z^T / temperature with the self-similarity replaced by
    -1e9, and the target of row i is its other view (i +- B). Returns the mean cross-entropy
    over the 2B rows, a float32 scalar (inputs of any float dtype are cast to float32 first).
    With B = 1 each row's only candidate is its positive, so the loss is 0.

    Args:
      z_a: [B, d] embeddings of view a.
      z_b: [B, d] embeddings of view b (row i is the positive of z_a row i).
      temperature: tau > 0.
      gather_across_replicas: in a replica context with >1 replicas, contrast the local rows
        against the all-gathered global batch (see the module docstring for the convention).
        If False each replica uses only its local negatives.
      mochi: optional MoCHi hard-negative mixing with the in-batch pool: every row's pool is all
        other (global) rows except its self and positive; s + s' synthetic logits are appended.
      step: current step for `mochi.start_step` gating and seeding (int or tensor).
      rng, seed, draws: MoCHi randomness (draws fixed per local row), see `hac_tf.losses.mochi`.
    """
    check_pair("z_a", z_a, "z_b", z_b)
    check_positive("temperature", temperature)
    za = l2_normalize(as_float32(z_a))
    zb = l2_normalize(as_float32(z_b))
    tau = as_float32(temperature)

    ctx, num_replicas = replica_info()
    if gather_across_replicas and num_replicas > 1:
        (ga, gb), offset = gather_rows(ctx, za, zb)
    else:
        ga, gb, offset = za, zb, tf.constant(0, tf.int32)

    b_local = tf.shape(za)[0]
    b_global = tf.shape(ga)[0]
    queries = tf.concat([za, zb], axis=0)  # [2b, d]
    keys = tf.concat([ga, gb], axis=0)  # [2B, d]
    logits = tf.matmul(queries, keys, transpose_b=True) / tau  # [2b, 2B]

    local = tf.range(b_local) + offset
    self_idx = tf.concat([local, local + b_global], axis=0)  # [2b]
    pos_idx = tf.concat([local + b_global, local], axis=0)  # [2b]
    num_cols = 2 * b_global
    is_self = tf.one_hot(self_idx, num_cols, on_value=True, off_value=False, dtype=tf.bool)
    logits = tf.where(is_self, LARGE_NEGATIVE, logits)

    def plain() -> tf.Tensor:
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=pos_idx, logits=logits)
        return tf.reduce_mean(ce)

    if mochi is None or mochi.num_synthetic == 0:
        return plain()

    def mixed() -> tf.Tensor:
        is_pos = tf.one_hot(pos_idx, num_cols, on_value=True, off_value=False, dtype=tf.bool)
        valid = tf.logical_not(tf.logical_or(is_self, is_pos))
        extra = mochi_logits(
            queries, keys, mochi, tau, valid_mask=valid, rng=rng, seed=seed, step=step, draws=draws
        )
        all_logits = tf.concat([logits, extra], axis=1)  # [2b, 2B + s + s']
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=pos_idx, logits=all_logits)
        return tf.reduce_mean(ce)

    return gate_on_step(step, mochi.start_step, mixed, plain)


def equimod_nt_xent(
    y_t: tf.Tensor,
    y_hat_t: tf.Tensor,
    temperature: Union[float, tf.Tensor] = 0.2,
    gather_across_replicas: bool = True,
) -> tf.Tensor:
    """EquiMod equivariant NT-Xent over 4B rows (docs/METHODS.md#equimod-loss), float32 scalar.

    Z = concat[y_t, y_hat_t]; the positive of y_t[k] is y_hat_t[k] (and vice versa), and every
    other row, including the other view of the same image, is a negative. This is `nt_xent`
    with z_a = y_t and z_b = y_hat_t.

    Args:
      y_t: [2B, d] equivariant-head embeddings of both augmented views, [view1; view2].
      y_hat_t: [2B, d] predicted embeddings (predictor_eq on y_0 and the view parameters).
      temperature: tau_y, 0.2 in EquiMod.
    """
    check_pair("y_t", y_t, "y_hat_t", y_hat_t)
    return nt_xent(y_t, y_hat_t, temperature, gather_across_replicas=gather_across_replicas)
