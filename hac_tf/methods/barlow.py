"""Barlow Twins on the projections of a pair (HA supplementary B: lambda 3.9e-3, scale 1/32).

The cross-correlation uses the global batch under a distribution strategy
(``gather_across_replicas=True``), so every replica computes the single-device loss of the global
batch and the MEAN-reduced value equals the single-device one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

import tensorflow as tf

from hac_tf.losses import barlow_twins
from hac_tf.methods.base import Method, MethodSettings, PairOutputs
from hac_tf.methods.registry import register
from hac_tf.schema import ranged


@dataclasses.dataclass(frozen=True)
class BarlowSettings(MethodSettings):
    """barlow_lambd: weight of the off-diagonal terms (3.9e-3); barlow_scale: loss scale (1/32)."""

    barlow_lambd: float = ranged(3.9e-3, 0.0, 10.0)
    barlow_scale: float = ranged(1.0 / 32.0, 0.0, 100.0, lo_inclusive=False)


@register
class BarlowTwins(Method):
    name_ = "barlow"
    projector_defaults = dict(hidden_dim=2048, out_dim=2048, num_layers=3, hidden_bn=True, last_bn=False,
                              hidden_bias=False, last_bias=False)
    settings_class = BarlowSettings

    @classmethod
    def projector_kwargs(cls, overrides: Dict[str, Any]) -> Dict[str, Any]:
        """The defaults with ``overrides``; the projector never has biases (as in Barlow Twins)."""
        return {**cls.projector_defaults, **overrides}

    def level_loss(
        self,
        level: int,
        online: PairOutputs,
        target: Optional[PairOutputs],
        training: bool = True,
        step: Optional[tf.Tensor] = None,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        loss = barlow_twins(
            online.z_a,
            online.z_b,
            lambd=self.settings.barlow_lambd,
            scale=self.settings.barlow_scale,
            gather_across_replicas=True,
        )
        return loss, {}
