"""VICReg on the projections of a pair (Bardes, Ponce & LeCun, ICLR 2022; docs/METHODS.md#vicreg).

L = 25 s(Z, Z') + 25 [v(Z) + v(Z')] + 1 [c(Z) + c(Z')] by default (hac_tf/losses/vicreg.py); no
predictor, no target network, no negatives. The variance and covariance use the global batch under
a distribution strategy (``gather_across_replicas=True``), so every replica computes the
single-device loss of the global batch and the MEAN-reduced value equals the single-device one.
The level's unweighted terms are reported as metrics ``vicreg_invariance``, ``vicreg_variance``
and ``vicreg_covariance``.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import tensorflow as tf

from hac_tf.losses.vicreg import vicreg_terms
from hac_tf.methods.base import Method, MethodSettings, PairOutputs
from hac_tf.methods.registry import register
from hac_tf.schema import ranged


@dataclasses.dataclass(frozen=True)
class VICRegSettings(MethodSettings):
    """vicreg_sim_coeff: weight lambda of the invariance term (25); vicreg_std_coeff: weight mu of
    the variance terms (25); vicreg_cov_coeff: weight nu of the covariance terms (1)."""

    vicreg_sim_coeff: float = ranged(25.0, 0.0, 1e3, lo_inclusive=False)
    vicreg_std_coeff: float = ranged(25.0, 0.0, 1e3)
    vicreg_cov_coeff: float = ranged(1.0, 0.0, 1e3)


@register
class VICReg(Method):
    name_ = "vicreg"
    # the expander of the reference setting: 8192-8192-8192, BN + ReLU in the hidden layers, a
    # bias-free last Linear without BN
    projector_defaults = dict(hidden_dim=8192, out_dim=8192, num_layers=3, hidden_bn=True, last_bn=False,
                              hidden_bias=True, last_bias=False)
    settings_class = VICRegSettings

    def level_loss(
        self,
        level: int,
        online: PairOutputs,
        target: Optional[PairOutputs],
        training: bool = True,
        step: Optional[tf.Tensor] = None,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        terms = vicreg_terms(online.z_a, online.z_b, gather_across_replicas=True)
        s = self.settings
        loss = terms.weighted(s.vicreg_sim_coeff, s.vicreg_std_coeff, s.vicreg_cov_coeff)
        metrics = {"vicreg_invariance": terms.invariance, "vicreg_variance": terms.variance,
                   "vicreg_covariance": terms.covariance}
        return loss, metrics
