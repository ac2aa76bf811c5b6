"""Shared helpers for the loss functions: casting, validation, normalisation, replica context.

All losses compute in float32: inputs of any floating dtype (bfloat16, float16, float64) are
cast first. Validation happens at trace time from static shapes; unknown dimensions pass.
"""

from __future__ import annotations

import numbers
from typing import Optional, Tuple, Union

import numpy as np
import tensorflow as tf

TensorLike = Union[tf.Tensor, "tf.Variable", float]

# Masked logits use this instead of -inf: exp(-1e9 - max) underflows to exactly 0 and there is
# no inf*0 anywhere, so neither the value nor the gradient can become NaN.
LARGE_NEGATIVE = -1e9


def as_float32(x: TensorLike) -> tf.Tensor:
    """Converts `x` to a float32 tensor (casting any floating dtype)."""
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)


def static_shape(x: object) -> tf.TensorShape:
    """The static shape of a tensor, array or nested list (unknown dims are None)."""
    shape = getattr(x, "shape", None)
    return tf.TensorShape(np.shape(x) if shape is None else shape)


def _fmt(shape: tf.TensorShape) -> str:
    return "<unknown rank>" if shape.rank is None else str(tuple(shape.as_list()))


def check_rank2(name: str, x: object) -> None:
    """Raises ValueError unless `x` is rank 2 (when the rank is statically known)."""
    shape = static_shape(x)
    if shape.rank is not None and shape.rank != 2:
        raise ValueError(f"{name} must be rank 2 [batch, dim], got shape {_fmt(shape)}")


def check_pair(name_a: str, a: object, name_b: str, b: object) -> None:
    """Raises ValueError unless `a` and `b` are rank 2 with compatible static shapes."""
    check_rank2(name_a, a)
    check_rank2(name_b, b)
    sa, sb = static_shape(a), static_shape(b)
    if not sa.is_compatible_with(sb):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {name_a}: {_fmt(sa)} "
            f"and {name_b}: {_fmt(sb)}"
        )


def check_positive(name: str, value: object, allow_zero: bool = False) -> None:
    """Raises ValueError if a Python number is not > 0 (>= 0 with allow_zero). Tensors pass."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, numbers.Real):
        ok = value >= 0 if allow_zero else value > 0
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be {bound}, got {value!r}")


def l2_normalize(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """Row-wise l2 normalisation (a zero row stays zero instead of producing NaN)."""
    return tf.math.l2_normalize(x, axis=axis, epsilon=1e-12)


def replica_info() -> Tuple[Optional[tf.distribute.ReplicaContext], int]:
    """Returns (replica context, number of replicas in sync).

    The context is None outside a replica context (e.g. cross-replica scope), in which case the
    losses behave as on a single device.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        return None, 1
    return ctx, int(ctx.num_replicas_in_sync)


def gather_rows(ctx: tf.distribute.ReplicaContext, *xs: tf.Tensor) -> Tuple[tuple, tf.Tensor]:
    """All-gathers `xs` along axis 0 and returns (gathered tensors, this replica's row offset).

    The offset is the number of rows contributed by lower-numbered replicas (local batch sizes
    are gathered too, so uneven batches still index correctly). Gradients flow back through
    `all_gather` (its registered gradient all-reduces then slices).
    """
    gathered = ctx.all_gather(list(xs), axis=0)
    sizes = ctx.all_gather(tf.shape(xs[0])[:1], axis=0)
    replica_id = tf.cast(ctx.replica_id_in_sync_group, tf.int32)
    offset = tf.reduce_sum(sizes[:replica_id])
    return tuple(gathered), offset
