"""MoCo v2 InfoNCE with a queue of negatives, optionally with MoCHi mixing (docs/METHODS.md#moco, #mochi)."""

from __future__ import annotations

from typing import Optional, Union

import tensorflow as tf

from hac_tf.losses._common import (
    as_float32,
    check_pair,
    check_positive,
    check_rank2,
    l2_normalize,
    static_shape,
)
from hac_tf.losses.mochi import (
    MochiConfig,
    MochiDraws,
    SeedLike,
    StepLike,
    gate_on_step,
    mochi_logits,
)

__all__ = ["infonce_queue"]


def infonce_queue(
    q: tf.Tensor,
    k: tf.Tensor,
    queue: tf.Tensor,
    temperature: Union[float, tf.Tensor] = 0.2,
    mochi: Optional[MochiConfig] = None,
    step: StepLike = None,
    *,
    rng: Optional[tf.random.Generator] = None,
    seed: Optional[SeedLike] = None,
    draws: Optional[MochiDraws] = None,
) -> tf.Tensor:
    """MoCo v2 InfoNCE, float32 scalar: mean_i -log softmax(logits_i)[0].

    logits = [q.k, q Queue^T, (q.h for the MoCHi synthetic h)] / temperature, shape
    [B, 1 + K (+ s + s')], positive at index 0. q and k are l2-normalised here; k and the queue
    are stop-gradient (the key encoder is an EMA and the queue a buffer). The queue is assumed
    already l2-normalised. Synthetic points are never returned for enqueueing.

    Args:
      q: [B, d] query embeddings.
      k: [B, d] key embeddings (momentum encoder).
      queue: [K, d] negatives.
      temperature: tau > 0 (0.2 in MoCo v2).
      mochi: optional `MochiConfig`; with s = s' = 0 the result is plain InfoNCE exactly.
      step: current step; mixing is disabled while step < mochi.start_step (int or tensor;
        None means enabled). Also seeds draws when `mochi.seed` is set.
      rng, seed, draws: MoCHi randomness, see `hac_tf.losses.mochi`.
    """
    check_pair("q", q, "k", k)
    check_rank2("queue", queue)
    q_shape, queue_shape = static_shape(q), static_shape(queue)
    if not q_shape[-1:].is_compatible_with(queue_shape[-1:]):
        raise ValueError(
            f"queue must have the embedding width of q, got q: {tuple(q_shape.as_list())} "
            f"and queue: {tuple(queue_shape.as_list())}"
        )
    check_positive("temperature", temperature)
    tau = as_float32(temperature)
    qn = l2_normalize(as_float32(q))
    kn = tf.stop_gradient(l2_normalize(as_float32(k)))
    negatives = tf.stop_gradient(as_float32(queue))

    l_pos = tf.reduce_sum(qn * kn, axis=1, keepdims=True)  # [B, 1]
    l_neg = tf.matmul(qn, negatives, transpose_b=True)  # [B, K]
    logits = tf.concat([l_pos, l_neg], axis=1) / tau  # [B, 1 + K]
    labels = tf.zeros([tf.shape(qn)[0]], tf.int32)

    def plain() -> tf.Tensor:
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return tf.reduce_mean(ce)

    if mochi is None or mochi.num_synthetic == 0:
        return plain()

    def mixed() -> tf.Tensor:
        extra = mochi_logits(qn, negatives, mochi, tau, rng=rng, seed=seed, step=step, draws=draws)
        all_logits = tf.concat([logits, extra], axis=1)  # [B, 1 + K + s + s']
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=all_logits)
        return tf.reduce_mean(ce)

    return gate_on_step(step, mochi.start_step, mixed, plain)
