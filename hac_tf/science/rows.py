"""The rows of the colour benchmark: config overrides over one base config.

The base config is one-level SimCLR on banded-hue Fashion-MNIST
(hac_tf/configs/banded_simclr_baseline.yaml); every row is a list of ``--params_override``
strings applied on top of it. The same rows apply to another base config of the same shape
(e.g. a SimSiam one) given with ``--base_config``.

Hierarchical rows use the paper order ``[crop_jitter, grayscale, blur, flip]`` or the colour-late
order ``[crop, flip, blur, jitter_grayscale]`` (every colour op at level 4, hac_tf/augment/policies.py)
with level k contrasted at depth k; "embedding" rows embed the recorded colour-jitter factors
(``model.embed_fields=[colour]``) at depths > 1.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

__all__ = ["Row", "ROWS", "GATE_ROWS", "DEFAULT_BASE_CONFIG", "row_by_name"]

DEFAULT_BASE_CONFIG = "banded_simclr_baseline"

_HIERARCHY = ("augment.policy=add_one", "augment.num_levels=4", "model.level_depths=[1,2,3,4]")
_PAPER = ("augment.order=[crop_jitter,grayscale,blur,flip]",)
_COLOUR_LATE = ("augment.order=[crop,flip,blur,jitter_grayscale]",)
_EMBED = ("model.embed_fields=[colour]",)
_NO_EMBED = ("model.embed_fields=[]",)


@dataclasses.dataclass(frozen=True)
class Row:
    """One row: ``overrides`` over the base config; ``train=False`` evaluates the initial weights."""

    name: str
    what: str
    overrides: Tuple[str, ...] = ()
    train: bool = True


ROWS: Dict[str, Row] = {r.name: r for r in (
    Row("random_init", "floor for garment, reference for colour (the base architecture, untrained)", train=False),
    Row("no_jitter", "the colour-keeping anchor: one level, no colour jitter, no grayscale",
        ("augment.groups=[crop,blur,flip]",)),
    Row("baseline", "one level, full augmentation"),
    Row("baseline_embed", "one level + colour embedding: embeddings alone", _EMBED),
    Row("baseline_shuffled_embed", "one level + the embedding of another image: information vs capacity",
        _EMBED + ("model.embed_shuffle=true",)),
    Row("uniform", "four depths, full augmentation at each (the paper's control)",
        ("augment.policy=uniform", "augment.num_levels=4", "augment.groups=[crop_jitter,grayscale,blur,flip]",
         "model.level_depths=[1,2,3,4]") + _NO_EMBED),
    Row("hierarchy_paper", "add-one, paper order, no embedding", _HIERARCHY + _PAPER + _NO_EMBED),
    Row("hierarchy_colour_late", "add-one, colour at the last level, no embedding",
        _HIERARCHY + _COLOUR_LATE + _NO_EMBED),
    Row("hai", "HAI as released: paper order + colour embedding", _HIERARCHY + _PAPER + _EMBED),
    Row("hai_colour_late", "colour-late order + colour embedding", _HIERARCHY + _COLOUR_LATE + _EMBED),
    Row("hai_light_aux", "HAI with auxiliary loss weights (0.25, 0.25, 0.25, 1)",
        _HIERARCHY + _PAPER + _EMBED + ("model.loss_weights=[0.25,0.25,0.25,1.0]",)),
)}
#: the rows of the gate (docs/RESULTS.md): run before any other
GATE_ROWS: Tuple[str, ...] = ("random_init", "no_jitter", "baseline")


def row_by_name(name: str) -> Row:
    """The row called ``name``; ValueError listing the names otherwise."""
    if name not in ROWS:
        raise ValueError(f"unknown benchmark row {name!r}; rows: {', '.join(ROWS)}")
    return ROWS[name]
