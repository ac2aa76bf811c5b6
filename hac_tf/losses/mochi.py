"""MoCHi hard-negative mixing (Kalantidis et al., NeurIPS 2020), docs/METHODS.md#mochi.

For every query q (l2-normalised, [B, d]) and a pool of negatives ([K, d], l2-normalised):

1. Q~N = the N pool entries with the highest q.n, chosen by top-N on *detached* logits
   ([B, N, d], sorted hardest first; N is clipped to the pool size).
2. s "hardest-negative" points: i, j ~ U{0..N-1} (with replacement), alpha ~ U(0, 1),
   h = normalise(alpha * n_i + (1 - alpha) * n_j).
3. s' "even-harder" points: j ~ U{0..N-1}, beta ~ U(0, 0.5),
   h' = normalise(beta * q + (1 - beta) * n_j).
4. The s + s' logits q.h / tau are appended to the denominator (never enqueued); with
   `detach_synthetic` the points are stop-gradient (also through q in h'), so only the q.h
   product carries gradient to q.

The random draws are explicit (`MochiDraws`) so a test or a caller can fix them; otherwise they
come from, in order of precedence: an explicit stateless `seed`, a `tf.random.Generator`,
`MochiConfig.seed` combined with the step (stateless, reproducible per step), or the global
TF random state.

Using it with in-batch negatives (SimCLR): pass the other rows as the pool with a
`valid_mask` [B, K] that excludes each row's self and positive; `nt_xent(..., mochi=...)` does
exactly that.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Callable, NamedTuple, Optional, Union

import tensorflow as tf

from hac_tf import schema
from hac_tf.losses._common import (
    LARGE_NEGATIVE,
    as_float32,
    check_positive,
    check_rank2,
    l2_normalize,
    replica_info,
)
from hac_tf.schema import CODE_ONLY, free, ranged

__all__ = ["MochiConfig", "MochiDraws", "mochi_logits", "mochi_synthetic_negatives", "sample_mochi_draws"]

SeedLike = Union[tf.Tensor, tuple, list]
StepLike = Union[int, tf.Tensor, tf.Variable, None]


@dataclasses.dataclass(frozen=True)
class MochiConfig:
    """MoCHi (N, s, s') settings.

    Attributes:
      num_hardest: N, size of the hardest-negative set per query (clipped to the pool size).
      num_mixed: s, synthetic points mixing two hardest negatives.
      num_query_mixed: s', synthetic points mixing the query with a hardest negative.
      start_step: mixing is disabled while step < start_step (docs/METHODS.md#mochi: the paper starts
        after ~10 epochs; the method converts epochs to steps).
      detach_synthetic: stop-gradient through the synthetic points (both unofficial
        implementations do this).
      seed: if set and no explicit seed/generator is passed, draws use the stateless seed
        (seed, step), so a run is reproducible and every step draws differently.
    Defaults are the IN-100 configuration (1024, 1024, 128), unverified (docs/METHODS.md#mochi).
    """

    # rules beside the fields (hac_tf/schema.py); the config's plugins.mochi section is generated
    # from them (start_step is worked out from its start_epoch; seed -1 there = train.seed)
    num_hardest: int = ranged(1024, 1, 1 << 22)
    num_mixed: int = ranged(1024, 0, 1 << 22)
    num_query_mixed: int = ranged(128, 0, 1 << 22)
    start_step: int = free(0, config_default=CODE_ONLY)
    detach_synthetic: bool = True
    seed: Optional[int] = ranged(None, -1, (1 << 31) - 1, config_default=-1)

    def __post_init__(self) -> None:
        for name in ("num_hardest", "num_mixed", "num_query_mixed", "start_step"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"MochiConfig.{name} must be an int, got {value!r}")
        check_positive("MochiConfig.num_hardest", self.num_hardest)
        check_positive("MochiConfig.num_mixed", self.num_mixed, allow_zero=True)
        check_positive("MochiConfig.num_query_mixed", self.num_query_mixed, allow_zero=True)
        check_positive("MochiConfig.start_step", self.start_step, allow_zero=True)
        schema.check_fields("MochiConfig", self)

    @property
    def num_synthetic(self) -> int:
        """s + s', the number of extra logits per query."""
        return self.num_mixed + self.num_query_mixed

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_value(cls, value: Union["MochiConfig", dict, None]) -> Optional["MochiConfig"]:
        """Accepts a MochiConfig, a dict of its fields, or None."""
        if value is None or isinstance(value, MochiConfig):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"mochi must be a MochiConfig, a dict or None, got {type(value).__name__}")


class MochiDraws(NamedTuple):
    """The random draws of one MoCHi step. Indices are ranks in the hardest set (0 = hardest).

    mix_i, mix_j: int32 [B, s]; alpha: float32 [B, s] in [0, 1);
    query_j: int32 [B, s']; beta: float32 [B, s'] in [0, 0.5).
    """

    mix_i: tf.Tensor
    mix_j: tf.Tensor
    alpha: tf.Tensor
    query_j: tf.Tensor
    beta: tf.Tensor


def resolve_seed(
    config: MochiConfig, seed: Optional[SeedLike], step: StepLike
) -> Optional[tf.Tensor]:
    """Returns the stateless seed to use (int64 [2]) or None for stateful sampling.

    Under a replica context with >1 replicas the replica id is folded in, so replicas draw
    differently from the same seed.
    """
    if seed is not None:
        out = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    elif config.seed is not None:
        step_t = tf.constant(0, tf.int64) if step is None else tf.cast(step, tf.int64)
        out = tf.stack([tf.constant(config.seed, tf.int64), tf.reshape(step_t, [])])
    else:
        return None
    ctx, num_replicas = replica_info()
    if num_replicas > 1:
        out = tf.random.experimental.stateless_fold_in(out, ctx.replica_id_in_sync_group)
    return out


def sample_mochi_draws(
    batch_size: Union[int, tf.Tensor],
    num_hardest: Union[int, tf.Tensor],
    config: MochiConfig,
    rng: Optional[tf.random.Generator] = None,
    seed: Optional[SeedLike] = None,
) -> MochiDraws:
    """Samples indices in [0, num_hardest) and alpha ~ U(0,1), beta ~ U(0,0.5) for B queries.

    `seed` (int [2], stateless) takes precedence over `rng`; with neither, the global TF random
    state is used.
    """
    s, sq = config.num_mixed, config.num_query_mixed
    n = tf.cast(num_hardest, tf.int32)
    shapes = ([batch_size, s], [batch_size, s], [batch_size, s], [batch_size, sq], [batch_size, sq])
    # (minval, maxval, dtype) per draw, in MochiDraws field order.
    specs = ((0, n, tf.int32), (0, n, tf.int32), (0.0, 1.0, tf.float32),
             (0, n, tf.int32), (0.0, 0.5, tf.float32))
    out = []
    if seed is not None:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=len(specs))
        for i, (shape, (lo, hi, dt)) in enumerate(zip(shapes, specs)):
            out.append(tf.random.stateless_uniform(shape, seeds[i], minval=lo, maxval=hi, dtype=dt))
    elif rng is not None:
        for shape, (lo, hi, dt) in zip(shapes, specs):
            out.append(rng.uniform(shape, minval=lo, maxval=hi, dtype=dt))
    else:
        for shape, (lo, hi, dt) in zip(shapes, specs):
            out.append(tf.random.uniform(shape, minval=lo, maxval=hi, dtype=dt))
    return MochiDraws(*out)


def mochi_hardest(
    q: tf.Tensor,
    negatives: tf.Tensor,
    num_hardest: int,
    valid_mask: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """Returns the N hardest negatives per query, hardest first: [B, N', d].

    Args:
      q: [B, d] l2-normalised queries.
      negatives: [K, d] negative pool.
      num_hardest: N; clipped to K, and to the smallest per-row count of valid entries.
      valid_mask: optional bool [B, K]; False entries are never selected.
    Scores are q.n on detached tensors; the gathered rows are not detached here.
    """
    q, negatives = as_float32(q), as_float32(negatives)
    scores = tf.matmul(tf.stop_gradient(q), tf.stop_gradient(negatives), transpose_b=True)
    pool_size = negatives.shape[0]
    n: Union[int, tf.Tensor] = num_hardest if pool_size is None else min(num_hardest, pool_size)
    if pool_size is None:
        n = tf.minimum(num_hardest, tf.shape(negatives)[0])
    if valid_mask is not None:
        scores = tf.where(valid_mask, scores, LARGE_NEGATIVE)
        min_valid = tf.reduce_min(tf.reduce_sum(tf.cast(valid_mask, tf.int32), axis=1))
        n = tf.minimum(n, min_valid)
    indices = tf.math.top_k(scores, k=n, sorted=True).indices  # [B, N]
    return tf.gather(negatives, indices)  # [B, N, d]


def mochi_synthetic_negatives(
    q: tf.Tensor,
    negatives: tf.Tensor,
    config: MochiConfig,
    *,
    draws: Optional[MochiDraws] = None,
    rng: Optional[tf.random.Generator] = None,
    seed: Optional[SeedLike] = None,
    step: StepLike = None,
    valid_mask: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """Synthetic MoCHi negatives, float32 [B, s + s', d], unit norm (the s points, then s').

    Args:
      q: [B, d] queries (l2-normalised here).
      negatives: [K, d] pool (a MoCo queue, assumed l2-normalised; or in-batch rows).
      config: the MoCHi settings; `start_step` is NOT applied here (callers gate on it).
      draws: fixed draws (indices must be < the effective N); sampled when None.
      rng / seed / step: randomness source when `draws` is None, see `sample_mochi_draws`
        and `resolve_seed`.
      valid_mask: optional bool [B, K] restricting each row's pool.
    """
    q = l2_normalize(as_float32(q))
    negatives = as_float32(negatives)
    check_rank2("q", q)
    check_rank2("negatives", negatives)
    hardest = mochi_hardest(q, negatives, config.num_hardest, valid_mask)
    if draws is None:
        draws = sample_mochi_draws(
            tf.shape(q)[0], tf.shape(hardest)[1], config, rng=rng,
            seed=resolve_seed(config, seed, step),
        )
    parts = []
    if config.num_mixed > 0:
        n_i = tf.gather(hardest, draws.mix_i, batch_dims=1)  # [B, s, d]
        n_j = tf.gather(hardest, draws.mix_j, batch_dims=1)
        alpha = as_float32(draws.alpha)[..., tf.newaxis]
        parts.append(l2_normalize(alpha * n_i + (1.0 - alpha) * n_j))
    if config.num_query_mixed > 0:
        n_j = tf.gather(hardest, draws.query_j, batch_dims=1)  # [B, s', d]
        beta = as_float32(draws.beta)[..., tf.newaxis]
        parts.append(l2_normalize(beta * q[:, tf.newaxis, :] + (1.0 - beta) * n_j))
    if not parts:
        return tf.zeros([tf.shape(q)[0], 0, tf.shape(q)[1]], tf.float32)
    synthetic = tf.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    return tf.stop_gradient(synthetic) if config.detach_synthetic else synthetic


def mochi_logits(
    q: tf.Tensor,
    negatives: tf.Tensor,
    config: MochiConfig,
    temperature: Union[float, tf.Tensor],
    **kwargs,
) -> tf.Tensor:
    """Logits of the queries against their synthetic negatives: float32 [B, s + s'] = q.h / tau.

    `q` is l2-normalised here; keyword arguments are those of `mochi_synthetic_negatives`.
    Append the result to the other logits (after the positive) before the softmax.
    """
    check_positive("temperature", temperature)
    qn = l2_normalize(as_float32(q))
    synthetic = mochi_synthetic_negatives(qn, negatives, config, **kwargs)
    return tf.einsum("bd,bmd->bm", qn, synthetic) / as_float32(temperature)


def gate_on_step(
    step: StepLike,
    start_step: int,
    enabled_fn: Callable[[], tf.Tensor],
    disabled_fn: Callable[[], tf.Tensor],
) -> tf.Tensor:
    """Returns enabled_fn() when step >= start_step (or step is None), else disabled_fn().

    Python steps decide in Python; tensor steps use tf.cond (only the taken branch runs).
    """
    if step is None or start_step <= 0:
        return enabled_fn()
    if isinstance(step, numbers.Integral):
        return enabled_fn() if step >= start_step else disabled_fn()
    step_t = tf.cast(step, tf.int64)
    return tf.cond(step_t >= start_step, enabled_fn, disabled_fn)
