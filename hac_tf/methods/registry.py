"""Name -> base-method class, and builders."""

from __future__ import annotations

from typing import Dict, Tuple, Type

from hac_tf.methods.barlow import BarlowTwins
from hac_tf.methods.base import Method
from hac_tf.methods.byol import BYOL
from hac_tf.methods.moco import MoCo
from hac_tf.methods.simclr import SimCLR
from hac_tf.methods.simsiam import SimSiam
from hac_tf.methods.spec import ModelSpec

METHODS: Dict[str, Type[Method]] = {
    "barlow": BarlowTwins,
    "byol": BYOL,
    "moco": MoCo,
    "simclr": SimCLR,
    "simsiam": SimSiam,
}


def available_methods() -> Tuple[str, ...]:
    return tuple(sorted(METHODS))


def build_method(spec: ModelSpec) -> Method:
    """The spec's base method with its state built."""
    if spec.method not in METHODS:  # unreachable for a validated spec
        raise ValueError(f"unknown method {spec.method!r}; allowed: {', '.join(available_methods())}")
    method = METHODS[spec.method](spec)
    method.build_state()
    return method


def build_model(spec: ModelSpec, **kwargs):
    """``HierarchicalContrastiveModel(spec, **kwargs)``."""
    from hac_tf.methods.model import HierarchicalContrastiveModel

    return HierarchicalContrastiveModel(spec, **kwargs)
