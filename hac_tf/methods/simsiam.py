"""SimSiam / HAC: L = 1/2 D(p_a, sg(z_b)) + 1/2 D(p_b, sg(z_a)), D = negative cosine (docs/METHODS.md#simsiam).

The stop-gradient lives in :func:`hac_tf.losses.negative_cosine`: the projections z enter the
loss only as constants, so gradients reach the encoder through the predictor inputs alone.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf

from hac_tf.losses import symmetric_negative_cosine
from hac_tf.methods.base import Method, PairOutputs
from hac_tf.methods.registry import register


@register
class SimSiam(Method):
    name_ = "simsiam"
    has_predictor = True
    projector_defaults = dict(hidden_dim=2048, out_dim=2048, num_layers=3, hidden_bn=True, last_bn=True,
                              hidden_bias=True, last_bias=False)
    predictor_hidden_default = 512

    def level_loss(
        self,
        level: int,
        online: PairOutputs,
        target: Optional[PairOutputs],
        training: bool = True,
        step: Optional[tf.Tensor] = None,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        if online.p_a is None or online.p_b is None:
            raise ValueError("SimSiam needs predictor outputs p_a and p_b")
        loss = symmetric_negative_cosine(online.p_a, online.z_a, online.p_b, online.z_b)
        return loss, {}
