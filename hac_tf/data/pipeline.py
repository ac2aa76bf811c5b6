"""Shared tf.data helpers: RGB conversion, in-memory sources, shuffling, batching.

Shuffling convention used by every source: ``shuffle=True, seed=s`` applies
``Dataset.shuffle(buffer, seed=s, reshuffle_each_iteration=True)``. A fresh dataset built with the
same seed yields the same sequence of epoch orders (epoch 1, epoch 2, ... each different, each
reproducible); a different seed yields different orders. As everywhere in TensorFlow, the op seed is
combined with the global seed: if the program calls ``tf.random.set_seed(g)``, the orders are a
function of ``(g, s)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from absl import logging

__all__ = [
    "AUTOTUNE",
    "DEFAULT_MAX_CACHE_BYTES",
    "to_rgb_uint8",
    "from_arrays",
    "shuffle_and_prefetch",
    "batched",
]

AUTOTUNE = tf.data.AUTOTUNE
#: Sources cache decoded images in memory automatically when they take at most this many bytes.
DEFAULT_MAX_CACHE_BYTES = 1 << 30

Labels = dict[str, tf.Tensor]


def to_rgb_uint8(image: tf.Tensor) -> tf.Tensor:
    """Converts one image to uint8 RGB.

    Args:
      image: ``[H, W]`` or ``[H, W, C]`` with C in {1, 2, 3, 4}; uint8, uint16 (scaled by 1/257,
        so 8-bit values stored as 16-bit map back exactly) or another integer type (saturated).

    Returns:
      uint8 ``[H, W, 3]``: 1 channel (or gray+alpha) repeated, alpha composited over black
      (``rgb * alpha / 255``, rounded), i.e. the same rule as the image-folder decoder.
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    if image.dtype == tf.uint16:
        image = tf.cast((tf.cast(image, tf.int32) + 128) // 257, tf.uint8)
    elif image.dtype != tf.uint8:
        image = tf.saturate_cast(image, tf.uint8)
    channels = image.shape[-1]
    if channels is None:
        return _to_rgb_dynamic(image)
    return _to_rgb_static(image, int(channels))


def _composite_over_black(colour: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    value = (tf.cast(colour, tf.int32) * tf.cast(alpha, tf.int32) + 127) // 255
    return tf.cast(value, tf.uint8)


def _to_rgb_static(image: tf.Tensor, channels: int) -> tf.Tensor:
    if channels == 3:
        return image
    if channels == 1:
        return tf.repeat(image, 3, axis=-1)
    if channels == 2:
        gray = _composite_over_black(image[..., :1], image[..., 1:])
        return tf.repeat(gray, 3, axis=-1)
    if channels == 4:
        return _composite_over_black(image[..., :3], image[..., 3:])
    raise ValueError(f"cannot convert an image with {channels} channels to RGB")


def _to_rgb_dynamic(image: tf.Tensor) -> tf.Tensor:
    channels = tf.shape(image)[-1]
    branches = {c: (lambda c=c: _to_rgb_static(image[..., :c], c)) for c in (1, 2, 3, 4)}
    return tf.switch_case(tf.clip_by_value(channels, 1, 4) - 1, [branches[c] for c in (1, 2, 3, 4)])


def shuffle_and_prefetch(
    ds: tf.data.Dataset,
    *,
    shuffle: bool,
    seed: int | None,
    buffer_size: int,
    cache: bool = False,
) -> tf.data.Dataset:
    """The tail every source ends with: ``[cache] -> [shuffle] -> prefetch``.

    Caching comes before shuffling so every epoch gets a fresh (deterministic) order.
    """
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(max(1, int(buffer_size)), seed=seed, reshuffle_each_iteration=True)
    return ds.prefetch(AUTOTUNE)


def from_arrays(
    images: np.ndarray,
    labels: Mapping[str, np.ndarray],
    *,
    shuffle: bool = False,
    seed: int | None = 0,
) -> tf.data.Dataset:
    """An in-memory source: ``from_tensor_slices`` + full-buffer shuffle + RGB conversion + prefetch.

    Args:
      images: uint8 ``[N, H, W]`` or ``[N, H, W, C]``.
      labels: ``{key: int array [N]}``.
      shuffle, seed: see the module docstring.

    Returns:
      Dataset of ``(uint8 [H, W, 3], {key: int32 []})``.
    """
    images = np.asarray(images)
    n = len(images)
    label_arrays = {}
    for key, value in labels.items():
        value = np.asarray(value)
        if value.shape != (n,):
            raise ValueError(f"label {key!r} has shape {value.shape}, expected ({n},)")
        label_arrays[key] = value.astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((images, label_arrays))
    if shuffle:
        ds = ds.shuffle(max(1, n), seed=seed, reshuffle_each_iteration=True)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        ds = ds.map(lambda image, lab: (to_rgb_uint8(image), lab), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def batched(
    ds: tf.data.Dataset,
    batch_size: int,
    *,
    drop_remainder: bool = True,
    shuffle_buffer: int | None = None,
    seed: int | None = None,
    num_examples: int | None = None,
) -> tf.data.Dataset:
    """Batches a source: ``[shuffle] -> batch -> prefetch``, refusing to produce an empty epoch.

    Args:
      ds: a dataset of ``(image, labels)`` (any structure works).
      batch_size: examples per batch.
      drop_remainder: drop the last partial batch (static batch shape, as training needs).
      shuffle_buffer: if given, shuffle with this buffer (``seed``, reshuffled each epoch) first.
      seed: shuffle seed.
      num_examples: size of ``ds`` when its cardinality is unknown (e.g. ``info.num_examples``).

    Returns:
      Dataset of batches: images ``[B, H, W, 3]``, labels ``{key: [B]}``.

    Raises:
      ValueError: ``batch_size < 1``, or the dataset is empty, or it has fewer than ``batch_size``
        examples while ``drop_remainder=True`` (which would silently give zero batches).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = int(ds.cardinality()) if num_examples is None else int(num_examples)
    if n == tf.data.UNKNOWN_CARDINALITY:
        logging.warning(
            "batched(): dataset cardinality is unknown and num_examples was not given, so a dataset "
            "smaller than one batch (%d) cannot be detected up front.", batch_size)
    elif n != tf.data.INFINITE_CARDINALITY:
        if n == 0:
            raise ValueError("batched(): the dataset is empty")
        if drop_remainder and n < batch_size:
            raise ValueError(
                f"batched(): the dataset has only {n} examples, fewer than one batch of {batch_size}; "
                "with drop_remainder=True every epoch would be empty. Use a smaller batch_size or "
                "drop_remainder=False.")
    if shuffle_buffer:
        ds = ds.shuffle(int(shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
