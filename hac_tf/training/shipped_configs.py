"""The experiment configs shipped with the package (``hac_tf/configs/*.yaml``, package data).

``--config_file`` accepts a bare shipped name (``cfmnist_simsiam_hierarchical`` or
``cfmnist_simsiam_hierarchical.yaml``) when no file of that name exists, so an installed
``hac-train`` finds the configs without a checkout. In a checkout, ``configs/`` at the
repository root is a symlink to ``hac_tf/configs``.
"""

from __future__ import annotations

import importlib.resources
import os
from typing import List, Optional

CONFIG_SUFFIX = ".yaml"


def shipped_config_dir() -> str:
    """Filesystem path of the shipped configs (``<site-packages or checkout>/hac_tf/configs``)."""
    return str(importlib.resources.files("hac_tf").joinpath("configs"))


def shipped_config_names() -> List[str]:
    """Sorted names (without ``.yaml``) of the shipped configs."""
    try:
        entries = os.listdir(shipped_config_dir())
    except OSError:
        return []
    return sorted(e[: -len(CONFIG_SUFFIX)] for e in entries if e.endswith(CONFIG_SUFFIX))


def shipped_config_path(name: str) -> Optional[str]:
    """Path of the shipped config ``name`` (with or without ``.yaml``; no directory part), or None."""
    if not name or os.sep in name or (os.altsep and os.altsep in name):
        return None
    stem = name[: -len(CONFIG_SUFFIX)] if name.endswith(CONFIG_SUFFIX) else name
    if stem not in shipped_config_names():
        return None
    return os.path.join(shipped_config_dir(), stem + CONFIG_SUFFIX)
