"""Lazy TFDS import plus one compatibility shim.

tensorflow-datasets 4.9.10 imports the backport ``importlib_resources`` (declared as a dependency
only for Python < 3.9) inside ``DatasetBuilder.code_path``, which every ``download_and_prepare``
reaches. On Python 3.11 without the backport installed, preparing any dataset fails with
``ModuleNotFoundError: No module named 'importlib_resources'``. The standard library module has
the same API (``files``, ``abc.Traversable``), so we alias it when the backport is missing.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = ["import_tfds"]


def _ensure_importlib_resources() -> None:
    try:
        importlib.import_module("importlib_resources")
    except ImportError:
        importlib.import_module("importlib.resources.abc")  # makes `.abc` an attribute
        sys.modules.setdefault("importlib_resources", importlib.import_module("importlib.resources"))


def import_tfds() -> ModuleType:
    """Imports ``tensorflow_datasets`` (slow, so only when a TFDS path is actually taken)."""
    _ensure_importlib_resources()
    return importlib.import_module("tensorflow_datasets")
