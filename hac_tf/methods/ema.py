"""EMA helpers for momentum (MoCo) and target (BYOL) encoders.

* :func:`cosine_momentum` — BYOL's schedule tau(step) = 1 - (1 - tau_base) * (cos(pi*step/T) + 1) / 2
  (tau_base at step 0, 1 at step T; docs/METHODS.md#target-networks).
* :func:`ema_update` — ``target <- m * target + (1 - m) * online`` for paired variables.
* :func:`copy_variables` — ``target <- online`` (initialisation of a target network).

Distribution: the updates use plain ``variable.assign``. On a ``MirroredVariable`` with the
default (NONE) aggregation, an assign in a replica context (inside ``strategy.run``) writes each
replica's own component; since online weights are kept in sync by the optimizer and every replica
computes the same EMA from them, the copies stay identical. In a cross-replica context the assign
broadcasts. Both are therefore safe; no ``merge_call`` is needed.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence, Union

import tensorflow as tf

Number = Union[int, float, tf.Tensor, tf.Variable]


def cosine_momentum(base: float, step: Number, total_steps: Number) -> tf.Tensor:
    """BYOL target decay rate at ``step`` of ``total_steps``, float32 scalar in [base, 1].

    ``step`` is clipped to [0, total_steps]; ``total_steps <= 0`` returns ``base``.
    """
    if not 0.0 <= float(base) <= 1.0:
        raise ValueError(f"base momentum must be in [0, 1], got {base!r}")
    if isinstance(step, numbers.Real) and isinstance(total_steps, numbers.Real):
        if total_steps <= 0:
            return tf.constant(base, tf.float32)
        frac = min(max(float(step), 0.0), float(total_steps)) / float(total_steps)
        value = 1.0 - (1.0 - base) * (math.cos(math.pi * frac) + 1.0) / 2.0
        return tf.constant(value, tf.float32)
    step_f = tf.cast(step, tf.float32)
    total_f = tf.cast(total_steps, tf.float32)
    frac = tf.math.divide_no_nan(tf.clip_by_value(step_f, 0.0, tf.maximum(total_f, 0.0)), total_f)
    return tf.constant(1.0, tf.float32) - tf.constant(1.0 - base, tf.float32) * (
        tf.cos(tf.constant(math.pi, tf.float32) * frac) + 1.0
    ) / 2.0


def _check_pairs(targets: Sequence, onlines: Sequence) -> None:
    if len(targets) != len(onlines):
        raise ValueError(f"target and online variable lists differ in length: {len(targets)} vs {len(onlines)}")
    for t, o in zip(targets, onlines):
        if tuple(t.shape) != tuple(o.shape):
            raise ValueError(f"variable shapes differ: target {t.path if hasattr(t, 'path') else t.name} "
                             f"{tuple(t.shape)} vs online {tuple(o.shape)}")


def ema_update(targets: Sequence, onlines: Sequence, momentum: Number) -> tf.Tensor:
    """``t.assign(m * t + (1 - m) * o)`` for every pair; returns m as a float32 tensor."""
    _check_pairs(targets, onlines)
    m = tf.cast(momentum, tf.float32)
    for t, o in zip(targets, onlines):
        mt = tf.cast(m, t.dtype)
        online = tf.cast(tf.convert_to_tensor(o), t.dtype)
        # the target's read waits for the online read (which follows the online weight's update in
        # a train step): read first, m * t would be computed at the step's start and held through
        # the backward pass, one extra copy of the target's parameters (hac_tf/training/optim.py)
        with tf.control_dependencies([online]):
            t.assign(mt * tf.convert_to_tensor(t) + (1.0 - mt) * online)
    return m


def copy_variables(targets: Sequence, onlines: Sequence) -> None:
    """``t.assign(o)`` for every pair (shapes must match)."""
    _check_pairs(targets, onlines)
    for t, o in zip(targets, onlines):
        t.assign(tf.convert_to_tensor(o))
