"""SimCLR: NT-Xent over the 2B projections of a pair (docs/METHODS.md#simclr), optional MoCHi negatives.

Under a distribution strategy the negatives are all-gathered (``nt_xent``'s convention: each
replica returns the mean over its own rows against the global batch).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf

from hac_tf.losses import nt_xent
from hac_tf.methods.base import Method, PairOutputs


class SimCLR(Method):
    name_ = "simclr"

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
            temperature=self.spec.setting("temperature"),
            gather_across_replicas=True,
            mochi=self.spec.setting("mochi"),
            step=step,
        )
        return loss, {}
