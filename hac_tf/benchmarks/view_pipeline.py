"""Throughput of view pipelines through tf.data: the recording add-one pipeline (all 2L views and
their recorded parameters) and the same classical augmentations from plain KerasCV layers (two
views, nothing recorded), on the same smooth synthetic source images.
"""

from __future__ import annotations

import time
from typing import Dict

import numpy as np

__all__ = ["SOURCE_SIZE", "add_one_view_dataset", "images_per_second", "plain_kerascv_dataset", "smooth_source",
           "source_side"]

#: view side -> side of the source images it is cropped from (224 px views come from 256 px photos)
SOURCE_SIZE: Dict[int, int] = {32: 32, 64: 64, 96: 96, 224: 256}


def source_side(size: int, source_size: int = 0) -> int:
    """The side of the source images ``size`` px views are cut from: ``source_size`` when given
    (> 0), else :data:`SOURCE_SIZE`'s entry for ``size`` (``size`` itself when it has none)."""
    return source_size if source_size > 0 else SOURCE_SIZE.get(size, size)


def smooth_source(size: int, n: int = 1024, source_size: int = 0):
    """A repeated, cached ``tf.data`` source of ``n`` smooth random uint8 images ``[S, S, 3]``
    (``S = source_side(size, source_size)``; as compressible as photos, unlike white noise) with
    ``{"label": 0}`` labels."""
    import tensorflow as tf

    src = source_side(size, source_size)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
    imgs = tf.cast(tf.image.resize(small, [src, src]), tf.uint8).numpy()
    labels = {"label": np.zeros(n, np.int32)}
    return tf.data.Dataset.from_tensor_slices((imgs, labels)).cache().repeat()


def add_one_view_dataset(size: int, batch_size: int, num_levels: int, source_size: int = 0):
    """The recording add-one view pipeline (``2 * num_levels`` views of ``size`` px) over
    :func:`smooth_source` (sources of side ``source_side(size, source_size)``), batched."""
    from hac_tf.augment import AddOneViews, AugmentationSettings, make_view_dataset

    policy = AddOneViews(settings=AugmentationSettings(image_size=size), num_levels=num_levels)
    return make_view_dataset(smooth_source(size, source_size=source_size), policy, batch_size, seed=0)


def plain_kerascv_dataset(size: int, batch_size: int, source_size: int = 0):
    """Two views per source image from plain KerasCV layers (crop-and-resize, flip, colour
    jitter, grayscale, and blur above 32 px): the classical SimCLR augmentations, unrecorded."""
    import keras_cv
    import tensorflow as tf

    layers = [
        keras_cv.layers.RandomCropAndResize((size, size), crop_area_factor=(0.2, 1.0),
                                            aspect_ratio_factor=(3 / 4, 4 / 3)),
        keras_cv.layers.RandomFlip("horizontal"),
        keras_cv.layers.RandomApply(
            keras_cv.layers.RandomColorJitter((0, 255), 0.4, 0.4, 0.4, 0.1), rate=0.8),
        keras_cv.layers.RandomApply(keras_cv.layers.Grayscale(output_channels=3), rate=0.2),
    ]
    if size > 32:
        layers.append(keras_cv.layers.RandomApply(
            keras_cv.layers.RandomGaussianBlur(size // 20 * 2 + 1, (0.1, 2.0)), rate=0.5))
    pipeline = keras_cv.layers.Augmenter(layers)

    def two_views(images, labels):
        x = tf.cast(images, tf.float32)
        return {"view_a": pipeline(x), "view_b": pipeline(x), "labels": labels}

    ds = smooth_source(size, source_size=source_size).batch(batch_size, drop_remainder=True)
    return ds.map(two_views, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def images_per_second(ds, batch_size: int, seconds: float) -> float:
    """Source images/s ``ds`` delivers over ``seconds`` (after 3 warm-up batches: tracing, autotune)."""
    it = iter(ds)
    for _ in range(3):
        next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(it)
        n += batch_size
    return n / (time.perf_counter() - t0)
