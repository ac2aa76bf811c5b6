"""Geometric recording augmentations: random resized crop, horizontal flip, rotation by k*90.

All batched: one ``tf.image.crop_and_resize`` for the whole batch, ``tf.where`` selects for flips
and rotations. Images are float32 [N,H,W,3] in [0,1].

Crops that shrink their region by 2x or more read a mip pyramid of the sources (2x2 box
averages, all levels in one atlas image, :func:`build_mip_atlas`): each view is cut bilinearly
from the level nearest its shrink factor (log scale, :func:`atlas_boxes`), so big sources give
antialiased views (close to ``tf.image.resize(crop, antialias=True)``, tested in
tests/augment/test_crop_extents.py).
Sources smaller than twice the view size (L == 0) take the plain bilinear path unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Sequence, Tuple

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


# ----------------------------------------------------------------------------- antialiasing
def mip_levels(source_side: Optional[int], out_size: int) -> int:
    """Number L of halved levels a crop pyramid needs: floor(log2(source_side / out_size)), >= 0.

    A crop from a source of side ``source_side`` shrinks by at most ``source_side / out_size``;
    with levels 0..L every crop finds a level where it shrinks by less than 2x (the rounding
    rule of :func:`atlas_boxes` uses level L for shrinks from 1.41 x 2^L up). L == 0 (sources
    smaller than twice the view) means plain bilinear crops; ``None`` (unknown side) also gives 0.
    """
    if not source_side or source_side <= 0:
        return 0
    return max(0, int(math.floor(math.log2(source_side / float(out_size)) + 1e-9)))


@dataclasses.dataclass(frozen=True)
class MipLayout:
    """Where the levels of a mip pyramid sit in one atlas image (static, in pixels).

    Level l is the source averaged over 2^l x 2^l blocks: ``level_shapes[l]`` = (ceil(H/2^l),
    ceil(W/2^l)). Each level is padded by one replicated edge pixel on every side and placed with
    its padded top-left corner at ``offsets[l]`` (row, col): level 0 on the left, levels 1..L
    stacked in a column to its right. ``atlas_shape`` = (rows, cols) of the whole atlas.
    """

    level_shapes: Tuple[Tuple[int, int], ...]
    offsets: Tuple[Tuple[int, int], ...]
    atlas_shape: Tuple[int, int]

    @property
    def num_levels(self) -> int:
        """L: the number of halved levels (the pyramid has L + 1)."""
        return len(self.level_shapes) - 1


def mip_layout(height: int, width: int, num_levels: int) -> MipLayout:
    """The atlas layout of an [H, W] source with levels 0..``num_levels``."""
    shapes = [(int(height), int(width))]
    for _ in range(int(num_levels)):
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    offsets = [(0, 0)]
    row, col = 0, shapes[0][1] + 2
    for h, _ in shapes[1:]:
        offsets.append((row, col))
        row += h + 2
    rows = max(shapes[0][0] + 2, row)
    cols = col + (shapes[1][1] + 2 if num_levels else 0)
    return MipLayout(tuple(shapes), tuple(offsets), (rows, cols))


def _replicate_edge(images: tf.Tensor) -> tf.Tensor:
    """[M,H,W,C] -> [M,H+2,W+2,C], the edge pixels repeated (as :func:`pad_for_crop`; slices and
    concats: MirrorPad is several times slower on uint8)."""
    images = tf.concat([images[:, :1], images, images[:, -1:]], axis=1)
    return tf.concat([images[:, :, :1], images, images[:, :, -1:]], axis=2)


def build_mip_atlas(images: tf.Tensor, layout: MipLayout) -> tf.Tensor:
    """The pyramid of ``images`` [M,H,W,C] as one atlas [M, rows, cols, C] of the same dtype.

    Each level is the previous one averaged over 2x2 blocks (an odd last row/column averages
    the pixels it has, i.e. replicates the edge); uint8 levels are rounded to uint8 (error at
    most 0.5/255 per level), float levels stay float. The gaps between levels are zero and never
    sampled: every level carries its own one-pixel replicated edge (:func:`pad_for_crop`).
    """
    rows, cols = layout.atlas_shape
    level = images
    padded = [_replicate_edge(images)]
    for _ in range(layout.num_levels):
        mean = tf.nn.avg_pool2d(tf.cast(level, tf.float32), 2, 2, "SAME")
        level = tf.cast(tf.round(mean), tf.uint8) if images.dtype == tf.uint8 else tf.cast(mean, images.dtype)
        padded.append(_replicate_edge(level))
    if layout.num_levels == 0:
        return padded[0]
    column_width = cols - layout.offsets[1][1]
    column = tf.concat([tf.pad(p, [[0, 0], [0, 0], [0, column_width - w - 2], [0, 0]])
                        for p, (_, w) in zip(padded[1:], layout.level_shapes[1:])], axis=1)
    column = tf.pad(column, [[0, 0], [0, rows - layout.offsets[-1][0] - layout.level_shapes[-1][0] - 2],
                             [0, 0], [0, 0]])
    left = tf.pad(padded[0], [[0, 0], [0, rows - layout.level_shapes[0][0] - 2], [0, 0], [0, 0]])
    return tf.concat([left, column], axis=2)


def atlas_boxes(region_px: tf.Tensor, layout: MipLayout, out_size: int,
                mirror: tf.Tensor | None = None) -> tf.Tensor:
    """``crop_and_resize`` boxes [N,4] into the atlas of :func:`build_mip_atlas`.

    Args:
      region_px: float32 [N,4] (y0, x0, y1, x1), the crops in level-0 source pixels (continuous
        coordinates: 0 = top/left edge of the source, H or W = bottom/right edge).
      layout: the atlas layout.
      out_size: side S of the square views.
      mirror: optional bool [N]: these rows are sampled right to left (horizontally flipped).

    Returns:
      float32 [N,4]. Each row reads the level nearest to its shrink factor on a log scale (the
      GPU nearest-mipmap rule): l = clip(round(log2(f)), 0, L), f = max(crop height, crop width)
      / S, so that on level l the crop shrinks by r = f / 2^l in [0.71, 1.41) and the bilinear
      samples (at the centres of S equal cells, half-pixel convention) see content already
      box-averaged over 2^l x 2^l pixels. Taking floor(log2(f)) instead (r in [1, 2)) keeps a
      little more detail but aliases patterns just above the view's Nyquist frequency: on a
      checkerboard of 2-pixel squares shrunk 3-8x its error against an antialiased resize was
      0.12 vs 0.006 with rounding (tests/augment/test_crop_extents.py). Level-l coordinates are
      level-0 coordinates / 2^l.
    """
    y0, x0, y1, x1 = tf.unstack(tf.cast(region_px, tf.float32), axis=-1)
    s = float(out_size)
    shrink = tf.maximum(y1 - y0, x1 - x0) / s
    level = tf.round(tf.math.log(tf.maximum(shrink, 1.0)) / math.log(2.0))
    level = tf.cast(tf.clip_by_value(level, 0.0, float(layout.num_levels)), tf.int32)
    scale = tf.pow(0.5, tf.cast(level, tf.float32))
    offsets = tf.constant(layout.offsets, tf.float32)
    off_y = tf.gather(offsets[:, 0], level) + 1.0  # + the level's one-pixel edge
    off_x = tf.gather(offsets[:, 1], level) + 1.0
    rh, rw = (y1 - y0) * scale, (x1 - x0) * scale
    first_y = y0 * scale + 0.5 * rh / s - 0.5 + off_y
    first_x = x0 * scale + 0.5 * rw / s - 0.5 + off_x
    last_y = first_y + rh * (s - 1.0) / s
    last_x = first_x + rw * (s - 1.0) / s
    den_y = float(max(layout.atlas_shape[0] - 1, 1))
    den_x = float(max(layout.atlas_shape[1] - 1, 1))
    if mirror is not None:
        mirror = tf.cast(mirror, tf.bool)
        first_x, last_x = tf.where(mirror, last_x, first_x), tf.where(mirror, first_x, last_x)
    return tf.stack([first_y / den_y, first_x / den_x, last_y / den_y, last_x / den_x], axis=-1)


def crop_atlas(atlas: tf.Tensor, boxes: tf.Tensor, source_index: tf.Tensor, out_size: int) -> tf.Tensor:
    """Bilinear crops float32 [N,S,S,C] of an atlas (uint8 atlases scaled by 1/255 into [0,1])."""
    out = tf.image.crop_and_resize(atlas, boxes, tf.cast(source_index, tf.int32), [out_size, out_size],
                                   method="bilinear")
    if atlas.dtype == tf.uint8:
        out = out * (1.0 / 255.0)
    return out


def regions_in_pixels(region: tf.Tensor, extents: tf.Tensor) -> tf.Tensor:
    """float32 [N,4]: crops given as fractions of each valid region -> source pixels.

    ``region`` [N,4] (y0, x0, y1, x1) fractions of the valid region, ``extents`` [N,2] (h, w) of
    that region in pixels (it starts at the top-left corner of its canvas).
    """
    ext = tf.cast(extents, tf.float32)
    return tf.cast(region, tf.float32) * tf.tile(ext, [1, 2])


def static_source_side(images: tf.Tensor) -> Optional[int]:
    """max(H, W) of [M,H,W,C] when both are static, else None."""
    h, w = images.shape[1], images.shape[2]
    return None if h is None or w is None else max(int(h), int(w))


def crop_layout(images: tf.Tensor, out_size: int, extents: tf.Tensor | None = None) -> Optional[MipLayout]:
    """How crops of ``images`` [M,H,W,C] are cut: None = plain bilinear from the edge-padded
    sources (fixed-size sources below 2x the view: :func:`crop_boxes`), else the layout of the
    mip atlas to crop from (:func:`atlas_boxes`).

    Sources with ``extents`` (canvases of the resolution stage, hac_tf/data/resolution.py) always
    take the atlas path (with L == 0 it is just the padded canvas); they need a static H and W.
    """
    levels = mip_levels(static_source_side(images), out_size)
    if extents is None and levels == 0:
        return None
    if static_source_side(images) is None:
        raise ValueError(f"crops of canvases with extents need a static image size, got shape {images.shape}")
    return mip_layout(int(images.shape[1]), int(images.shape[2]), levels)


def apply_crop(images: tf.Tensor, region: tf.Tensor, out_size: int,
               source_index: tf.Tensor | None = None, mirror: tf.Tensor | None = None,
               extents: tf.Tensor | None = None) -> tf.Tensor:
    """Crops ``region`` [N,4] out of ``images`` [M,H,W,C] and resizes to [N,S,S,C] (bilinear).

    Row n is cut from image ``source_index[n]`` (default: n, with M == N). Rows where ``mirror``
    (bool [N]) is True come out horizontally flipped (see :func:`crop_boxes`).

    ``region`` is (y0, x0, y1, x1) as fractions of the row's valid region: the whole image, or
    with ``extents`` (int32 [N,2] per ROW: (h, w) of its source's valid region, which starts at
    the canvas's top-left corner) the top-left h x w pixels. Crops that shrink their region by 2x
    or more are antialiased (mip atlas, :func:`atlas_boxes`); on fixed-size sources smaller than
    twice ``out_size`` this is the plain bilinear crop. Float images keep their dtype; uint8
    images give float32 in [0, 1] on the atlas path.
    """
    if source_index is None:
        source_index = tf.range(tf.shape(region)[0])
    layout = crop_layout(images, out_size, extents)
    if layout is None:
        shape = tf.shape(images)
        boxes = crop_boxes(region, shape[1], shape[2], out_size, mirror)
        return crop_padded(pad_for_crop(images), boxes, source_index, out_size)
    if extents is None:
        extents = tf.tile(tf.constant([layout.level_shapes[0]], tf.int32), [tf.shape(region)[0], 1])
    boxes = atlas_boxes(regions_in_pixels(region, extents), layout, out_size, mirror)
    out = crop_atlas(build_mip_atlas(images, layout), boxes, source_index, out_size)
    return out if images.dtype == tf.uint8 else tf.cast(out, images.dtype)


class RecordingRandomResizedCrop(RecordingAugmentation):
    """torchvision-style RandomResizedCrop that records the crop box.

    Samples an area fraction in ``scale`` and a log-uniform aspect ratio in ``ratio``; up to 10
    attempts per image (vectorised), falling back to the whole image. Box sides are whole
    pixels, as in torchvision. Records ``crop`` = (y0, x0, y1, x1) normalised.

    Coordinate frame: everything is relative to each image's VALID REGION -- the whole image,
    or with ``extents`` (int32 [N,2] = (h, w) per row, passed to
    ``get_random_transformation_batch``) the top-left h x w pixels of a canvas from the
    resolution stage (hac_tf/data/resolution.py). The area fraction is of h * w, the aspect
    ratio is in pixels, the sides are whole pixels of that region, and the recorded ``crop``
    is in fractions of it (0 = its top/left edge, 1 = its bottom/right edge), i.e. of the
    original image (downscaled, when the stage shrank it, by the same factor on both axes).

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

    def get_random_transformation_batch(self, batch_size, images=None, extents=None, **kwargs):
        """As the base class; ``extents``: optional int32 [N,2] valid (h, w) per row (None: the
        whole image), see the class docstring."""
        seed = self._stateless_seed(kwargs.get("seed"))
        fire = self.fire_mask(batch_size, seed, kwargs.get("probability"), kwargs.get("enabled"))
        return self.sample(batch_size, images, seed, fire, kwargs.get("magnitude"), extents)

    def sample(self, batch_size, images, seed, fire, magnitude, extents=None):
        if extents is None:  # one size for all: scalars
            shape = tf.shape(images)
            h = h_try = tf.cast(shape[1], tf.float32)
            w = w_try = tf.cast(shape[2], tf.float32)
        else:  # per row [N], and [N,1] against the attempts
            h, w = tf.unstack(tf.cast(extents, tf.float32), axis=-1)
            h_try, w_try = h[:, None], w[:, None]
        tries = [batch_size, _CROP_ATTEMPTS]
        lo = self.scale[0] if magnitude is None else tf.cast(magnitude, tf.float32)[:, None]
        u_area = tf.random.stateless_uniform(tries, seed=self.sub_seed(seed, 1))
        frac = lo + (self.scale[1] - lo) * u_area
        log_r = tf.random.stateless_uniform(
            tries, seed=self.sub_seed(seed, 2), minval=math.log(self.ratio[0]), maxval=math.log(self.ratio[1])
        )
        aspect = tf.exp(log_r)
        area = frac * h_try * w_try
        cw = tf.round(tf.sqrt(area * aspect))
        ch = tf.round(tf.sqrt(area / aspect))
        valid = (cw > 0) & (cw <= w_try) & (ch > 0) & (ch <= h_try)
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
        if extents is None:
            return {"region": region}
        return {"region": region, "extents": tf.cast(extents, tf.int32)}

    def apply(self, images, transformation):
        return apply_crop(images, transformation["region"], self.size, transformation.get("source_index"),
                          transformation.get("mirror"), transformation.get("extents"))

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
