"""BYOL: online predictions regress the EMA target's projections of the other view (docs/METHODS.md#byol).

L = byol(p_a, sg(z'_b)) + byol(p_b, sg(z'_a)), byol(p, z) = mean(2 - 2 cos(p, z)), with z' from
the target network (an EMA of backbone, stage branches, embeddings and projectors: "the extra
heads are EMA-updated too", HA supp. B). The two directions are summed as in the BYOL paper, so a
level's loss lies in [0, 8]. The target decay follows the cosine ramp
tau = 1 - (1 - tau_base)(cos(pi step / T) + 1) / 2.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import tensorflow as tf

from hac_tf.losses import byol_loss
from hac_tf.methods.base import Method, MethodSettings, PairOutputs
from hac_tf.methods.ema import cosine_momentum
from hac_tf.methods.registry import register
from hac_tf.schema import ranged


@dataclasses.dataclass(frozen=True)
class BYOLSettings(MethodSettings):
    """byol_base_momentum: tau_base of the cosine-ramped target decay (0.99, HA supp. B)."""

    byol_base_momentum: float = ranged(0.99, 0.0, 1.0, hi_inclusive=False)


@register
class BYOL(Method):
    name_ = "byol"
    has_predictor = True
    target_kind = "ema"
    projector_defaults = dict(hidden_dim=4096, out_dim=256, num_layers=2, hidden_bn=True, last_bn=False,
                              hidden_bias=True, last_bias=True)
    predictor_hidden_default = 4096
    settings_class = BYOLSettings
    plugins_opt_in = ("equimod",)

    def level_loss(
        self,
        level: int,
        online: PairOutputs,
        target: Optional[PairOutputs],
        training: bool = True,
        step: Optional[tf.Tensor] = None,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        if target is None:
            raise ValueError("BYOL needs the target network's projections")
        if online.p_a is None or online.p_b is None:
            raise ValueError("BYOL needs predictor outputs p_a and p_b")
        z_a = tf.stop_gradient(target.z_a)
        z_b = tf.stop_gradient(target.z_b)
        loss = byol_loss(online.p_a, z_b) + byol_loss(online.p_b, z_a)
        return loss, {}

    def target_momentum(self, step, total_steps) -> tf.Tensor:
        return cosine_momentum(self.settings.byol_base_momentum, step, total_steps)
