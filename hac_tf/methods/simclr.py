"""SimCLR: NT-Xent over the 2B projections of a pair (docs/METHODS.md#simclr), optional MoCHi negatives.

Under a distribution strategy the negatives are all-gathered (``nt_xent``'s convention: each
replica returns the mean over its own rows against the global batch).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import tensorflow as tf

from hac_tf.losses import nt_xent
from hac_tf.methods.base import Method, MethodSettings, PairOutputs
from hac_tf.methods.registry import register
from hac_tf.schema import ranged


@dataclasses.dataclass(frozen=True)
class SimCLRSettings(MethodSettings):
    """temperature: softmax temperature of NT-Xent (0.5)."""

    temperature: float = ranged(0.5, 0.0, 100.0, lo_inclusive=False)


@register
class SimCLR(Method):
    name_ = "simclr"
    softmax_temperature = True
    projector_defaults = dict(hidden_dim=2048, out_dim=128, num_layers=2, hidden_bn=True, last_bn=False,
                              hidden_bias=True, last_bias=True)
    settings_class = SimCLRSettings
    plugins_opt_in = ("equimod",)

    def level_loss(
        self,
        level: int,
        online: PairOutputs,
        target: Optional[PairOutputs],
        training: bool = True,
        step: Optional[tf.Tensor] = None,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        loss = nt_xent(
            online.z_a,
            online.z_b,
            temperature=self.settings.temperature,
            gather_across_replicas=True,
            mochi=self.spec.mochi,
            step=step,
        )
        return loss, {}
