"""The resolution stage: bringing images of any size to a batchable form.

Sources may yield images of any size (TFDS imagenet2012, tf_flowers, caltech101, image folders).
Before batching, each image goes through one of two per-image stages:

Training (:func:`to_canvas`, :func:`training_stage`)
  The image is downscaled -- antialiased, aspect ratio kept -- only when its longer side exceeds
  ``max_source_side`` = C, then placed in the top-left corner of a square canvas uint8
  ``[C, C, 3]`` whose other pixels replicate the image's last row / column (so bilinear samples
  at the border behave like torchvision's edge handling). The valid extent int32 ``[2]`` =
  (h, w) travels with it. Memory: C * C * 3 bytes per image, i.e. B * C^2 * 3 per batch of B
  (automatic C = 2 x image_size: 12 * B * S^2 bytes, 154 MB for B = 256 at S = 224, 28 MB at
  S = 96; the views themselves take 2L * B * S^2 * 12 bytes in float32, 8x that for 4 levels).
  The view policy draws each random resized crop inside the valid region, relative to (h, w)
  (hac_tf/augment/geometric.py, ``RecordingRandomResizedCrop``).

Evaluation (:func:`evaluation_resize`, :func:`evaluation_stage`)
  A deterministic clean image: the shorter side resized (antialiased) to
  ``round(S / crop_fraction)``, then the centre ``S x S`` crop. The default crop fraction is 1.0
  (resize the shorter side to S, keep the central square: the most content a square view can
  hold); an image already ``S x S`` comes out unchanged. ``crop_fraction=0.875`` gives
  torchvision's usual Resize(S / 0.875) + CenterCrop(S).

Automatic ``max_source_side`` (config ``data.max_source_side: 0``): ``2 * image_size``. Then a
full-image crop shrinks by at most 2x (one mip level above the source suffices for
antialiasing, hac_tf/augment/geometric.py), crops of a quarter of the area or more are cut
without upsampling, and the canvas memory above stays small next to the views'.

Sources already of one fixed size whose longer side is <= C (coloured Fashion-MNIST 32 px,
CIFAR-10, STL-10 96 px at 96) need no stage at all (:func:`needs_training_stage` is False): their
batches are formed as before and every image is valid in full.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

__all__ = [
    "SOURCE_SIDE_FACTOR",
    "canvas_bytes",
    "downscale_to_fit",
    "evaluation_resize",
    "evaluation_resize_batch",
    "evaluation_stage",
    "needs_evaluation_stage",
    "needs_training_stage",
    "resolve_max_source_side",
    "to_canvas",
    "training_stage",
]

#: automatic ``max_source_side`` = SOURCE_SIDE_FACTOR * image_size
SOURCE_SIDE_FACTOR = 2


def resolve_max_source_side(max_source_side: int, image_size: int) -> int:
    """The canvas side C: ``max_source_side``, or ``2 * image_size`` when it is 0 (automatic).

    Raises:
      ValueError: ``image_size`` < 1, or ``max_source_side`` is neither 0 nor >= ``image_size``
        (a smaller canvas would upsample every view).
    """
    image_size, max_source_side = int(image_size), int(max_source_side)
    if image_size < 1:
        raise ValueError(f"data.image_size must be positive, got {image_size}")
    if max_source_side == 0:
        return SOURCE_SIDE_FACTOR * image_size
    if max_source_side < image_size:
        raise ValueError(f"data.max_source_side={max_source_side} must be 0 (automatic: "
                         f"{SOURCE_SIDE_FACTOR} x data.image_size) or >= data.image_size={image_size}")
    return max_source_side


def canvas_bytes(max_source_side: int, batch_size: int = 1) -> int:
    """Bytes of ``batch_size`` training canvases of side ``max_source_side`` (uint8 RGB)."""
    return int(batch_size) * int(max_source_side) ** 2 * 3


def needs_training_stage(image_shape: Sequence[int | None], max_source_side: int) -> bool:
    """False when every image has one known size whose longer side is <= ``max_source_side``.

    ``image_shape`` is ``SourceInfo.image_shape``: ``(H, W, 3)`` with None (or 0) for sizes that
    vary from image to image.
    """
    height, width = image_shape[0], image_shape[1]
    return not (height and width and max(int(height), int(width)) <= int(max_source_side))


def needs_evaluation_stage(image_shape: Sequence[int | None], image_size: int) -> bool:
    """False when every image is already ``image_size x image_size``."""
    return not (image_shape[0] == image_size and image_shape[1] == image_size)


def _check_image(image: tf.Tensor, what: str) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8 or image.shape.rank != 3 or image.shape[-1] not in (None, 3):
        raise ValueError(f"{what} expects one uint8 RGB image [H, W, 3], got {image.dtype.name} {image.shape}")
    return image


def _resize_uint8(image: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Antialiased bilinear resize of uint8 [H,W,3] to ``size`` (int32 [2]), rounded to uint8."""
    out = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def downscale_to_fit(image: tf.Tensor, max_side: int) -> tf.Tensor:
    """uint8 [H,W,3] -> uint8 [h,w,3] with max(h, w) <= ``max_side``, aspect ratio kept.

    Images that fit are returned as they are (no resampling); larger ones are shrunk
    (antialiased bilinear) so that the longer side is ``max_side`` and the shorter one is
    ``round(shorter * max_side / longer)`` (at least 1).
    """
    image = _check_image(image, "downscale_to_fit")
    max_side = int(max_side)
    shape = tf.shape(image)[:2]
    longer = tf.reduce_max(shape)

    def shrink() -> tf.Tensor:
        scaled = tf.round(tf.cast(shape, tf.float32) * (max_side / tf.cast(longer, tf.float32)))
        size = tf.clip_by_value(tf.cast(scaled, tf.int32), 1, max_side)
        return _resize_uint8(image, size)

    return tf.cond(longer > max_side, shrink, lambda: tf.identity(image))


def to_canvas(image: tf.Tensor, max_side: int) -> tuple[tf.Tensor, tf.Tensor]:
    """One training image -> (canvas uint8 [C, C, 3], extent int32 [2]), C = ``max_side``.

    The image (downscaled by :func:`downscale_to_fit` when its longer side exceeds C) fills the
    top-left h x w pixels; every pixel right of / below it repeats the image's last column / row
    (the bottom-right block its corner pixel). extent = (h, w). A C x C image is returned
    unchanged with extent (C, C).
    """
    image = downscale_to_fit(image, max_side)
    side = int(max_side)
    shape = tf.shape(image)[:2]
    rows = tf.minimum(tf.range(side), shape[0] - 1)
    cols = tf.minimum(tf.range(side), shape[1] - 1)
    canvas = tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)
    return tf.ensure_shape(canvas, [side, side, 3]), tf.cast(shape, tf.int32)


def training_stage(ds: tf.data.Dataset, max_side: int) -> tf.data.Dataset:
    """``(image, labels)`` -> ``(canvas uint8 [C,C,3], labels, extent int32 [2])`` per element.

    ``hac_tf.augment.make_view_dataset`` accepts these 3-tuples and hands the batched extents
    to the view policy. Deterministic (ordered parallel map).
    """

    def convert(image: tf.Tensor, labels):
        canvas, extent = to_canvas(image, max_side)
        return canvas, labels, extent

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def evaluation_resize(image: tf.Tensor, size: int, crop_fraction: float = 1.0) -> tf.Tensor:
    """One evaluation image uint8 [H,W,3] -> uint8 [size, size, 3], deterministic.

    The shorter side is resized (antialiased bilinear when shrinking, bilinear when enlarging)
    to ``round(size / crop_fraction)`` with the aspect ratio kept, then the centre ``size x
    size`` is cut (offset ``(extra) // 2``). When the shorter side already has that length the
    image is not resampled, so a ``size x size`` image comes out unchanged at crop_fraction 1.
    """
    image = _check_image(image, "evaluation_resize")
    size = int(size)
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    target = max(size, int(round(size / crop_fraction)))
    shape = tf.shape(image)[:2]
    shorter = tf.reduce_min(shape)

    def resize() -> tf.Tensor:
        scaled = tf.round(tf.cast(shape, tf.float32) * (target / tf.cast(shorter, tf.float32)))
        return _resize_uint8(image, tf.maximum(tf.cast(scaled, tf.int32), target))

    image = tf.cond(tf.equal(shorter, target), lambda: tf.identity(image), resize)
    shape = tf.shape(image)[:2]
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return tf.ensure_shape(image[top:top + size, left:left + size], [size, size, 3])


def evaluation_stage(ds: tf.data.Dataset, size: int, crop_fraction: float = 1.0) -> tf.data.Dataset:
    """``(image, labels)`` -> ``(uint8 [size, size, 3], labels)`` by :func:`evaluation_resize`."""
    return ds.map(lambda image, labels: (evaluation_resize(image, size, crop_fraction), labels),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def evaluation_resize_batch(canvases: tf.Tensor, extents: tf.Tensor, size: int) -> tf.Tensor:
    """The :func:`evaluation_resize` of each canvas's valid region: uint8 [B,C,C,3] + int32 [B,2]
    -> uint8 [B, size, size, 3] (e.g. EquiMod's original image x_0 of a batch of canvases)."""

    def one(args):
        canvas, extent = args
        return evaluation_resize(canvas[:extent[0], :extent[1]], size)

    return tf.map_fn(one, (canvases, tf.cast(extents, tf.int32)),
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
