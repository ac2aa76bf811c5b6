"""Barlow Twins on the projections of a pair (HA supplementary B: lambda 3.9e-3, scale 1/32).

The cross-correlation uses the global batch under a distribution strategy
(``gather_across_replicas=True``), so every replica computes the single-device loss of the global
batch and the MEAN-reduced value equals the single-device one.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf

from hac_tf.losses import barlow_twins
from hac_tf.methods.base import Method, PairOutputs


class BarlowTwins(Method):
    name_ = "barlow"

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
            lambd=self.spec.setting("barlow_lambd"),
            scale=self.spec.setting("barlow_scale"),
            gather_across_replicas=True,
        )
        return loss, {}
