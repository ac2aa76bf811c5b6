"""The recorded-parameter contract shared by every augmentation and every consumer.

Every view carries one dict of float32 tensors with *every* key present; an augmentation
that was not applied writes its identity value, so all views of all levels share one
structure (required by tf.data and by the embedding/EquiMod/AugSelf encoders).

Keys and shapes (B = batch size):
  crop            [B,4]  (y0, x0, y1, x1), normalised to [0,1] in the source image
  flip            [B,1]  1 if horizontally mirrored
  jitter          [B,4]  (brightness, contrast, saturation factors, hue shift); identity (1,1,1,0)
  jitter_applied  [B,1]  1 if colour jitter was applied
  jitter_order    [B,4]  op indices in the order applied (0=b,1=c,2=s,3=h); identity (0,1,2,3)
  grayscale       [B,1]  1 if converted to grayscale
  blur_sigma      [B,1]  Gaussian blur sigma in pixels, 0 = no blur
  solarize        [B,1]  1 if solarized
  rotation        [B,1]  k of a k*90 degree counter-clockwise rotation (0..3)
"""

from __future__ import annotations

from typing import Dict, Mapping

import tensorflow as tf

ParamDict = Dict[str, tf.Tensor]

PARAM_WIDTHS: Mapping[str, int] = {
    "crop": 4,
    "flip": 1,
    "jitter": 4,
    "jitter_applied": 1,
    "jitter_order": 4,
    "grayscale": 1,
    "blur_sigma": 1,
    "solarize": 1,
    "rotation": 1,
}

IDENTITY_VALUES: Mapping[str, tuple] = {
    "crop": (0.0, 0.0, 1.0, 1.0),
    "flip": (0.0,),
    "jitter": (1.0, 1.0, 1.0, 0.0),
    "jitter_applied": (0.0,),
    "jitter_order": (0.0, 1.0, 2.0, 3.0),
    "grayscale": (0.0,),
    "blur_sigma": (0.0,),
    "solarize": (0.0,),
    "rotation": (0.0,),
}

PARAM_KEYS = tuple(PARAM_WIDTHS.keys())


def identity_params(batch_size: tf.Tensor | int) -> ParamDict:
    """Returns the identity parameter dict for a batch: every key, float32 [B, width]."""
    out = {}
    for key in PARAM_KEYS:
        row = tf.constant(IDENTITY_VALUES[key], tf.float32)[tf.newaxis, :]
        out[key] = tf.tile(row, [batch_size, 1])
    return out


def param_signature(batch_size: int | None = None) -> Dict[str, tf.TensorSpec]:
    """tf.TensorSpec for every key, e.g. for tf.data element specs."""
    return {k: tf.TensorSpec([batch_size, w], tf.float32) for k, w in PARAM_WIDTHS.items()}


def validate_params(params: Mapping[str, tf.Tensor]) -> None:
    """Raises ValueError if a key is missing, unknown, or has the wrong width/dtype."""
    missing = [k for k in PARAM_KEYS if k not in params]
    unknown = [k for k in params if k not in PARAM_WIDTHS]
    if missing or unknown:
        raise ValueError(f"recorded params: missing keys {missing}, unknown keys {unknown}")
    for k, v in params.items():
        if v.dtype != tf.float32:
            raise ValueError(f"recorded param {k!r} must be float32, got {v.dtype.name}")
        if v.shape.rank != 2 or (v.shape[-1] is not None and v.shape[-1] != PARAM_WIDTHS[k]):
            raise ValueError(f"recorded param {k!r} must be [B,{PARAM_WIDTHS[k]}], got {v.shape}")


def colour_vector(params: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """The paper's colour 4-vector [B,4]: raw (b, c, s, h); identity (1,1,1,0) when not applied."""
    return params["jitter"]


def encode_fields(params: Mapping[str, tf.Tensor], fields: tuple[str, ...]) -> tf.Tensor:
    """Concatenates the chosen fields into one float32 [B, sum(widths)] matrix.

    Field names are PARAM_KEYS, plus the aliases ``colour`` (= jitter) and ``crop``.
    """
    cols = []
    for f in fields:
        key = "jitter" if f in ("colour", "color") else f
        if key not in PARAM_WIDTHS:
            raise ValueError(f"unknown parameter field {f!r}; allowed: {sorted(PARAM_KEYS) + ['colour']}")
        cols.append(tf.cast(params[key], tf.float32))
    return tf.concat(cols, axis=-1)


def field_width(fields: tuple[str, ...]) -> int:
    """Width of encode_fields(params, fields)."""
    return sum(PARAM_WIDTHS["jitter" if f in ("colour", "color") else f] for f in fields)
