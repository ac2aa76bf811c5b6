"""A guard against a TensorFlow 2.20 oneDNN crash when training narrow backbones on larger images.

Measured on this stack (TF 2.20 CPU wheel, oneDNN on by default): the filter gradient of a 1x1
stride-2 VALID convolution — the ResNet down-sampling shortcut of stage 2 — corrupts the heap
("corrupted size vs. prev_size", "double free or corruption", or SIGSEGV) when the input has few
channels and a side of 45 px or more, e.g.::

    x  = tf.random.uniform((4, 64, 64, 8)); dy = tf.random.uniform((4, 32, 32, 16))
    tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[1, 1, 8, 16], out_backprop=dy,
                                    strides=[1, 2, 2, 1], padding="VALID")   # crashes

Crashes: 4 or 8 input channels at sides 45..128 (8->8, 8->16, 4->8); fine: 12, 16, 32, 64 input
channels, 8->32, or sides <= 44. With ``TF_ENABLE_ONEDNN_OPTS=0`` it always works (slower; the
figure is in README.md). A width-0.125 ResNet (8 stage-1 channels) with the CIFAR stem therefore crashes in
training (fine-tuning) at 48 or 64 px images, whatever is on top of it (Keras 3, tf_keras, a
restored SavedModel). Inference is not affected.

The flag must be set before TensorFlow is imported; this module does not import TensorFlow, so
tools can call :func:`configure_onednn` first.
"""

from __future__ import annotations

import json
import math
import os
from typing import Optional

from hac_tf.export.serving_layout import ExportNotFoundError, resolve_version_dir

__all__ = ["ONEDNN_ENV", "onednn_enabled", "conv_backprop_crash_risk", "configure_onednn"]

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
_METADATA_FILE = "hac_tf_metadata.json"  # = hac_tf.export.savedmodel.METADATA_FILE (not imported: no TF)
_MAX_SAFE_SIDE = 44
_MIN_SAFE_CHANNELS = 12


def onednn_enabled() -> bool:
    """Whether TensorFlow uses (or will use) oneDNN kernels: on unless the variable says 0/false."""
    return os.environ.get(ONEDNN_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def conv_backprop_crash_risk(export_dir: str, image_side: int) -> Optional[str]:
    """Why training this export on ``image_side`` px images may hit the oneDNN crash, or None.

    Reads the export's metadata (stage-1 channels and stem); returns None when it cannot tell.
    """
    try:
        version_dir = resolve_version_dir(export_dir)
    except ExportNotFoundError:
        return None
    try:
        with open(os.path.join(version_dir, _METADATA_FILE), encoding="utf-8") as f:
            meta = json.load(f)
        channels = int(meta["level_channels"]["2"])
        stem = (meta.get("backbone") or {}).get("stem") or "cifar"
    except (OSError, ValueError, KeyError, TypeError):
        return None
    side = int(image_side) if stem == "cifar" else math.ceil(math.ceil(int(image_side) / 2) / 2)
    if channels < _MIN_SAFE_CHANNELS and side > _MAX_SAFE_SIDE:
        return (f"stage-1 maps of {side}x{side}x{channels} feed a 1x1 stride-2 convolution whose "
                "filter gradient crashes TF 2.20's oneDNN kernels (heap corruption) at this size")
    return None


def configure_onednn(mode: str, export_dir: Optional[str], image_side: int, training: bool = True) -> str:
    """Sets ``TF_ENABLE_ONEDNN_OPTS`` for a tool run; call before importing TensorFlow.

    ``mode``: "on", "off", or "auto" (off only when training and
    :func:`conv_backprop_crash_risk` reports a risk; an explicit environment value wins).
    Returns a one-line description of the decision.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"onednn mode must be auto, on or off, got {mode!r}")
    if mode in ("on", "off"):
        os.environ[ONEDNN_ENV] = "1" if mode == "on" else "0"
        return f"oneDNN {mode} (--onednn={mode})"
    if ONEDNN_ENV in os.environ:
        return f"oneDNN {'on' if onednn_enabled() else 'off'} ({ONEDNN_ENV}={os.environ[ONEDNN_ENV]})"
    reason = conv_backprop_crash_risk(export_dir, image_side) if training and export_dir else None
    if reason:
        os.environ[ONEDNN_ENV] = "0"
        return f"oneDNN off ({reason}; about 2x slower, use --onednn=on to override)"
    return "oneDNN on (TensorFlow default)"
