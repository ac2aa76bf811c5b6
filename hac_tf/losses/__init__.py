"""hac_tf.losses: pure contrastive loss functions (the methods in hac_tf/methods call them).

Every function returns a float32 scalar tf tensor and computes in float32 whatever the input
float dtype. Inputs are rank 2 [B, d] with matching shapes (ValueError otherwise, at trace time).

One re-export convention: each loss module (``hac_tf/losses/<name>.py``; ``_common`` holds the
shared checks) lists its public names in ``__all__``, and this package re-exports exactly those,
derived when it is imported, so a new loss module needs no edit here. Import a loss from the package
(``from hac_tf.losses import nt_xent``) or from its module; both are the same object.

  barlow    barlow_twins(z_a, z_b, lambd=3.9e-3, scale=1/32, eps=1e-5, gather_across_replicas=False)
  cosine    negative_cosine(p, z), symmetric_negative_cosine(p1, z1, p2, z2), byol_loss(p, z)
  infonce   infonce_queue(q, k, queue, temperature=0.2, mochi=None, step=None)
  mochi     MochiConfig, MochiDraws, sample_mochi_draws, mochi_synthetic_negatives, mochi_logits
  ntxent    nt_xent(z_a, z_b, temperature=0.5, gather_across_replicas=True, mochi=None, step=None),
            equimod_nt_xent(y_t, y_hat_t, temperature=0.2)
  stats     similarity_stats(z_a, z_b) -> {"pos_sim", "neg_sim", "embedding_std"}
  vicreg    vicreg_terms(z_a, z_b, ...) -> VICRegTerms, vicreg_loss(z_a, z_b, ...)
"""

import importlib
import pkgutil
from typing import Dict, List

__all__: List[str] = []


def _export_modules() -> None:
    """Imports every public module of this package and re-exports the names of its ``__all__``."""
    owners: Dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name in module.__all__:
            if name in owners:
                raise ImportError(f"hac_tf.losses: {name!r} is exported by both {owners[name]} and {info.name}")
            owners[name] = info.name
            globals()[name] = getattr(module, name)
    __all__.extend(sorted(owners))


_export_modules()
