"""MoCHi hard-negative mixing as a plug-in: wiring only (docs/METHODS.md#mochi).

The mixing itself lives in :mod:`hac_tf.losses.mochi` (top-N hardest negatives on detached
logits, s mixed negatives, s' query-mixed negatives with beta < 0.5, renormalised, never
enqueued, optional stop-gradient) and is applied by ``nt_xent`` (SimCLR, in-batch negatives:
each row's pool is every other row except itself and its positive) and ``infonce_queue`` (MoCo,
the queue). ``ModelSpec.mochi`` carries a :class:`~hac_tf.losses.MochiConfig`; this module turns
the ``plugins.mochi`` config section into one:

* ``start_epoch`` (docs/METHODS.md#mochi: ~10) -> ``start_step = round(start_epoch * steps_per_epoch)``;
  before that step the loss is plain InfoNCE / NT-Xent (the gate is a ``tf.cond`` on the step).
* ``seed < 0`` -> the training seed, so the draws are the stateless function of (seed, step) and
  a resumed run mixes exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Optional

from hac_tf.losses import MochiConfig
from hac_tf.schema import ranged

#: place in the build and hook order of the plug-ins (hac_tf/plugins/registry.py)
ORDER = 10
#: the plug-in's settings (ModelSpec.mochi); the config's plugins.mochi section is generated from it
CONFIG_CLASS = MochiConfig
#: keys of the config's plugins.mochi section that are not fields of MochiConfig: the start in
#: epochs (-> MochiConfig.start_step with the run's steps per epoch)
SECTION_FIELDS = {"start_epoch": ranged(10.0, 0.0, 1e6)}  # plain loss before it (docs/METHODS.md#mochi: ~10)
#: what a base method needs for MoCHi (its ``softmax_temperature`` trait, hac_tf/methods/base.py)
APPLIES_TO = "methods whose loss is a softmax over negatives with a temperature"


def applies_to(method: Any) -> bool:
    """Whether MoCHi composes with the base-method class ``method``: it needs negatives to mix."""
    return bool(getattr(method, "softmax_temperature", False))


def check_config(config: Any, facts: Any) -> None:
    """``plugins.mochi`` on a method without negatives says what MoCHi needs (hac_tf/plugins/base.py)."""
    if facts.section.enabled and config.model.method not in facts.applicable:
        raise ValueError(f"plugins.mochi needs a method with negatives ({list(facts.applicable)}), "
                         f"not {config.model.method!r}")


def resolve(value: Any, num_levels: int) -> MochiConfig:
    """``ModelSpec.mochi`` (a MochiConfig or its dict) checked; MoCHi applies at every level."""
    del num_levels
    return MochiConfig.from_value(value)


def mochi_config(
    num_hardest: int = 1024,
    num_mixed: int = 1024,
    num_query_mixed: int = 128,
    start_epoch: float = 0.0,
    steps_per_epoch: int = 1,
    detach_synthetic: bool = True,
    seed: Optional[int] = None,
) -> MochiConfig:
    """``MochiConfig`` (N, s, s') starting after ``start_epoch`` epochs of ``steps_per_epoch``."""
    if start_epoch < 0:
        raise ValueError(f"mochi start_epoch must be >= 0, got {start_epoch}")
    start_step = int(round(float(start_epoch) * max(int(steps_per_epoch), 1)))
    return MochiConfig(num_hardest=int(num_hardest), num_mixed=int(num_mixed), num_query_mixed=int(num_query_mixed),
                       start_step=start_step, detach_synthetic=bool(detach_synthetic),
                       seed=None if seed is None or seed < 0 else int(seed))


def mochi_from_section(section: Any, steps_per_epoch: int, train_seed: int) -> MochiConfig:
    """``plugins.mochi`` config section -> MochiConfig (seed < 0 -> ``train_seed``)."""
    seed = section.seed if section.seed >= 0 else train_seed
    return mochi_config(section.num_hardest, section.num_mixed, section.num_query_mixed, section.start_epoch,
                        steps_per_epoch, section.detach_synthetic, seed)


def from_section(section: Any, facts: Any) -> MochiConfig:
    """``plugins.mochi`` -> MochiConfig: the start step from the run's steps per epoch (read only
    when ``start_epoch`` > 0), seed -1 -> train.seed."""
    steps = facts.steps_per_epoch() if section.start_epoch > 0 else 1
    return mochi_from_section(section, steps, facts.train_seed)


def build_layer(config: MochiConfig, feature_dim: int, sync_bn: bool = False) -> None:
    """MoCHi has no part of the model: the losses mix the negatives (ModelSpec.mochi)."""
    return None
