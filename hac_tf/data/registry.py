"""`build_source(name, split, **kwargs)`: one entry point for every dataset source.

Names: ``fashion_mnist``, ``coloured_fashion_mnist`` (alias ``colored_fashion_mnist``),
``banded_hue_fashion_mnist`` (body hue + an independent band hue, hac_tf/data/banded_hue.py),
``fashion_mnist_overlay`` (garment + colour + a competing drawn overlay label),
``image_folder`` (needs ``root=...``) and ``tfds:<builder>`` for any TFDS dataset. Keyword
arguments go to the source function unchanged (e.g. ``shuffle``, ``seed``, ``with_info``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hac_tf.data.banded_hue import banded_hue_fashion_mnist
from hac_tf.data.coloured import coloured_fashion_mnist
from hac_tf.data.feature_dropout import fashion_mnist_overlay
from hac_tf.data.fashion_mnist import fashion_mnist
from hac_tf.data.image_folder import image_folder
from hac_tf.data.tfds_source import tfds_source

__all__ = ["SOURCES", "TFDS_PREFIX", "available_sources", "build_source"]

TFDS_PREFIX = "tfds:"
SOURCES: dict[str, Callable[..., Any]] = {
    "fashion_mnist": fashion_mnist,
    "coloured_fashion_mnist": coloured_fashion_mnist,
    "banded_hue_fashion_mnist": banded_hue_fashion_mnist,
    "fashion_mnist_overlay": fashion_mnist_overlay,
    "image_folder": image_folder,
}
_ALIASES = {"colored_fashion_mnist": "coloured_fashion_mnist"}


def available_sources() -> tuple[str, ...]:
    """The accepted names (``tfds:<builder>`` stands for any TFDS builder)."""
    return (*SOURCES, f"{TFDS_PREFIX}<builder>")


def build_source(name: str, split: str = "train", **kwargs: Any) -> Any:
    """Builds a source by name.

    Args:
      name: see `available_sources`.
      split: the split (``"train"``/``"test"``; any TFDS split string for ``tfds:``; for
        ``image_folder`` also ``"all"``).
      **kwargs: passed to the source function.

    Returns:
      What the source returns: a ``tf.data.Dataset`` of ``(uint8 [H, W, 3], {key: int32 []})``,
      or ``(dataset, SourceInfo)`` with ``with_info=True``.

    Raises:
      ValueError: unknown name (the message lists the allowed names).
    """
    if name.startswith(TFDS_PREFIX):
        builder = name[len(TFDS_PREFIX):]
        if not builder:
            raise ValueError(f"empty TFDS builder name in {name!r}; use e.g. 'tfds:cifar10'")
        return tfds_source(builder, split, **kwargs)
    key = _ALIASES.get(name, name)
    if key not in SOURCES:
        raise ValueError(f"unknown dataset source {name!r}; allowed: {', '.join(available_sources())}")
    return SOURCES[key](split=split, **kwargs)
