"""hac_tf.losses: pure contrastive loss functions (the methods in hac_tf/methods call them).

Every function returns a float32 scalar tf tensor and computes in float32 whatever the input
float dtype. Inputs are rank 2 [B, d] with matching shapes (ValueError otherwise, at trace time).

Functions:
  nt_xent(z_a, z_b, temperature=0.5, gather_across_replicas=True, mochi=None, step=None)
  equimod_nt_xent(y_t, y_hat_t, temperature=0.2)
  infonce_queue(q, k, queue, temperature=0.2, mochi=None, step=None)
  negative_cosine(p, z), symmetric_negative_cosine(p1, z1, p2, z2), byol_loss(p, z)
  barlow_twins(z_a, z_b, lambd=3.9e-3, scale=1/32, eps=1e-5, gather_across_replicas=False)
  similarity_stats(z_a, z_b) -> {"pos_sim", "neg_sim", "embedding_std"}
MoCHi: MochiConfig, MochiDraws, sample_mochi_draws, mochi_synthetic_negatives, mochi_logits.
"""

from hac_tf.losses.barlow import barlow_twins
from hac_tf.losses.cosine import byol_loss, negative_cosine, symmetric_negative_cosine
from hac_tf.losses.infonce import infonce_queue
from hac_tf.losses.mochi import (
    MochiConfig,
    MochiDraws,
    mochi_logits,
    mochi_synthetic_negatives,
    sample_mochi_draws,
)
from hac_tf.losses.ntxent import equimod_nt_xent, nt_xent
from hac_tf.losses.stats import similarity_stats

__all__ = [
    "MochiConfig",
    "MochiDraws",
    "barlow_twins",
    "byol_loss",
    "equimod_nt_xent",
    "infonce_queue",
    "mochi_logits",
    "mochi_synthetic_negatives",
    "negative_cosine",
    "nt_xent",
    "sample_mochi_draws",
    "similarity_stats",
    "symmetric_negative_cosine",
]
