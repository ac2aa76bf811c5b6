"""Geometric recording augmentations: random resized crop, horizontal flip, rotation by k*90.

All batched: one ``tf.image.crop_and_resize`` for the whole batch, ``tf.where`` selects for flips
and rotations. Images are float32 [N,H,W,3] in [0,1].
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import tensorflow as tf

from hac_tf.augment.base import RecordingAugmentation, apply_to_rows, fire_float, where_images
from hac_tf.augment.params import ParamDict

_CROP_ATTEMPTS = 10


def region_to_sampling_box(region: tf.Tensor, height: tf.Tensor, width: tf.Tensor, out_size: int,
                           pad: int = 0) -> tf.Tensor:
    """Converts crop regions to ``tf.image.crop_and_resize`` boxes with half-pixel sampling.

    Args:
      region: float32 [N,4] (y0, x0, y1, x1), the crop as a fraction of the source image
        (continuous coordinates: 0 = top/left edge, 1 = bottom/right edge).
      height, width: source image size in pixels.
      out_size: side of the square output.
      pad: the boxes are for the image padded by ``pad`` pixels on every side (``apply_crop``
        pads 1 edge pixel so that samples within half a pixel of the border replicate the edge,
        like torchvision, instead of reading crop_and_resize's zero extrapolation value).

    Returns:
      float32 [N,4] boxes such that crop_and_resize samples output pixel r at the centre of
      the r-th of ``out_size`` equal cells of the region (the align_corners=False convention
      of torchvision's resize). A full-image region at out_size == H == W is an exact identity.
    """
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    s = float(out_size)
    y0, x0, y1, x1 = tf.unstack(region, axis=-1)
    rh = (y1 - y0) * h
    rw = (x1 - x0) * w
    first_y = y0 * h + 0.5 * rh / s - 0.5 + pad
    first_x = x0 * w + 0.5 * rw / s - 0.5 + pad
    last_y = first_y + rh * (s - 1.0) / s
    last_x = first_x + rw * (s - 1.0) / s
    den_h = tf.maximum(h + 2.0 * pad - 1.0, 1.0)
    den_w = tf.maximum(w + 2.0 * pad - 1.0, 1.0)
    return tf.stack([first_y / den_h, first_x / den_w, last_y / den_h, last_x / den_w], axis=-1)


def crop_boxes(region: tf.Tensor, height: tf.Tensor, width: tf.Tensor, out_size: int,
               mirror: tf.Tensor | None = None) -> tf.Tensor:
    """float32 [N,4] ``crop_and_resize`` boxes of ``region`` [N,4] in the edge-padded sources.

    The sources are [M,H,W,C] images padded by one edge pixel (:func:`pad_for_crop`). Rows where
    ``mirror`` (bool [N]) is True get a box that runs from right to left: their crop comes out
    horizontally flipped at no cost (equal to flipping the crop up to float rounding, < 1e-5).
    """
    boxes = region_to_sampling_box(region, height, width, out_size, pad=1)
    if mirror is None:
        return boxes
    y0, x0, y1, x1 = tf.unstack(boxes, axis=-1)
    mirror = tf.cast(mirror, tf.bool)
    return tf.stack([y0, tf.where(mirror, x1, x0), y1, tf.where(mirror, x0, x1)], axis=-1)


def pad_for_crop(images: tf.Tensor) -> tf.Tensor:
    """[M,H,W,C] -> [M,H+2,W+2,C], replicating the edge pixels.

    Samples within half a pixel of the border then replicate the edge, like torchvision, instead
    of reading crop_and_resize's zero extrapolation value.
    """
    return tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")


def crop_padded(padded: tf.Tensor, boxes: tf.Tensor, source_index: tf.Tensor, out_size: int) -> tf.Tensor:
    """Bilinear crops [N,S,S,C] of the padded sources: row n cut from ``padded[source_index[n]]``."""
    out = tf.image.crop_and_resize(
        padded, boxes, tf.cast(source_index, tf.int32), [out_size, out_size], method="bilinear"
    )
    return tf.cast(out, padded.dtype)


def apply_crop(images: tf.Tensor, region: tf.Tensor, out_size: int,
               source_index: tf.Tensor | None = None, mirror: tf.Tensor | None = None) -> tf.Tensor:
    """Crops ``region`` [N,4] out of ``images`` [M,H,W,C] and resizes to [N,S,S,C] (bilinear).

    Row n is cut from image ``source_index[n]`` (default: n, with M == N). Rows where ``mirror``
    (bool [N]) is True come out horizontally flipped (see :func:`crop_boxes`).
    """
    shape = tf.shape(images)
    boxes = crop_boxes(region, shape[1], shape[2], out_size, mirror)
    if source_index is None:
        source_index = tf.range(tf.shape(region)[0])
    return crop_padded(pad_for_crop(images), boxes, source_index, out_size)


class RecordingRandomResizedCrop(RecordingAugmentation):
    """torchvision-style RandomResizedCrop that records the crop box.

    Samples an area fraction in ``scale`` and a log-uniform aspect ratio in ``ratio``; up to 10
    attempts per image (vectorised), falling back to the whole image. Box sides are whole
    pixels, as in torchvision. Records ``crop`` = (y0, x0, y1, x1) normalised.

    ``magnitude`` (optional, per image) overrides the minimum area fraction (``scale[0]``).

    Args:
      size: output side S (square).
      scale: (min, max) fraction of the source area.
      ratio: (min, max) aspect ratio w/h.
    """

    records = ("crop",)

    def __init__(
        self,
        size: int,
        scale: Sequence[float] = (0.2, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        probability: float = 1.0,
        seed: Optional[int] = None,
        **kwargs: Any,
    ):
        super().__init__(probability=probability, seed=seed, **kwargs)
        if int(size) <= 0:
            raise ValueError(f"RandomResizedCrop: size must be positive, got {size}")
        if not (0.0 < scale[0] <= scale[1] <= 1.0):
            raise ValueError(f"RandomResizedCrop: need 0 < scale[0] <= scale[1] <= 1, got {tuple(scale)}")
        if not (0.0 < ratio[0] <= ratio[1]):
            raise ValueError(f"RandomResizedCrop: need 0 < ratio[0] <= ratio[1], got {tuple(ratio)}")
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))

    def sample(self, batch_size, images, seed, fire, magnitude):
        shape = tf.shape(images)
        h = tf.cast(shape[1], tf.float32)
        w = tf.cast(shape[2], tf.float32)
        tries = [batch_size, _CROP_ATTEMPTS]
        lo = self.scale[0] if magnitude is None else tf.cast(magnitude, tf.float32)[:, None]
        u_area = tf.random.stateless_uniform(tries, seed=self.sub_seed(seed, 1))
        frac = lo + (self.scale[1] - lo) * u_area
        log_r = tf.random.stateless_uniform(
            tries, seed=self.sub_seed(seed, 2), minval=math.log(self.ratio[0]), maxval=math.log(self.ratio[1])
        )
        aspect = tf.exp(log_r)
        area = frac * h * w
        cw = tf.round(tf.sqrt(area * aspect))
        ch = tf.round(tf.sqrt(area / aspect))
        valid = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        any_valid = tf.reduce_any(valid, axis=1)
        first = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)
        ch = tf.gather(ch, first, batch_dims=1)
        cw = tf.gather(cw, first, batch_dims=1)
        use = any_valid & fire
        ch = tf.where(use, ch, h)
        cw = tf.where(use, cw, w)
        u_pos = tf.random.stateless_uniform([batch_size, 2], seed=self.sub_seed(seed, 3))
        top = tf.minimum(tf.floor(u_pos[:, 0] * (h - ch + 1.0)), h - ch)
        left = tf.minimum(tf.floor(u_pos[:, 1] * (w - cw + 1.0)), w - cw)
        region = tf.stack([top / h, left / w, (top + ch) / h, (left + cw) / w], axis=-1)
        return {"region": region}

    def apply(self, images, transformation):
        return apply_crop(images, transformation["region"], self.size, transformation.get("source_index"),
                          transformation.get("mirror"))

    def record(self, params: ParamDict, transformation) -> ParamDict:
        params["crop"] = transformation["region"]
        return params

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"size": self.size, "scale": self.scale, "ratio": self.ratio})
        return config


class RecordingRandomFlip(RecordingAugmentation):
    """Horizontal flip with probability p; records ``flip`` (1 = mirrored)."""

    records = ("flip",)

    def __init__(self, probability: float = 0.5, seed: Optional[int] = None, **kwargs: Any):
        super().__init__(probability=probability, seed=seed, **kwargs)

    def sample(self, batch_size, images, seed, fire, magnitude):
        return {"fire": fire}

    def apply(self, images, transformation):
        return apply_to_rows(transformation["fire"], images, lambda rows, _: tf.reverse(rows, axis=[2]))

    def record(self, params: ParamDict, transformation) -> ParamDict:
        # XOR with an earlier flip keeps the record equal to the net effect.
        prev = params["flip"]
        this = fire_float(transformation["fire"])
        params["flip"] = tf.abs(prev - this)
        return params


class RecordingRandomRotation90(RecordingAugmentation):
    """Counter-clockwise rotation by k*90 degrees, k uniform in {0,1,2,3}, with probability p.

    Records ``rotation`` = k (0 when not applied). Needs square images (apply after the crop).
    """

    records = ("rotation",)

    def __init__(self, probability: float = 0.5, seed: Optional[int] = None, **kwargs: Any):
        super().__init__(probability=probability, seed=seed, **kwargs)

    def sample(self, batch_size, images, seed, fire, magnitude):
        k = tf.random.stateless_uniform([batch_size], seed=self.sub_seed(seed, 1), minval=0, maxval=4, dtype=tf.int32)
        return {"k": tf.where(fire, k, tf.zeros_like(k))}

    def apply(self, images, transformation):
        shape = images.shape
        if shape[1] is not None and shape[2] is not None and shape[1] != shape[2]:
            raise ValueError(f"RandomRotation90 needs square images, got {shape}")
        k = transformation["k"]
        out = images
        for turns in (1, 2, 3):
            out = where_images(tf.equal(k, turns), tf.image.rot90(images, turns), out)
        return out

    def record(self, params: ParamDict, transformation) -> ParamDict:
        params["rotation"] = tf.cast(transformation["k"], tf.float32)[:, None]
        return params
