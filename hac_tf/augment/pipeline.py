"""tf.data glue: a source of (image, labels) -> batches of views with recorded parameters."""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf

from hac_tf.augment.policies import ViewPolicy
from hac_tf.data.resolution import evaluation_resize_batch


def make_view_dataset(
    source: tf.data.Dataset,
    policy: ViewPolicy,
    batch_size: int,
    seed: int = 0,
    start_batch: int = 0,
    drop_remainder: bool = True,
    options: Optional[tf.data.Options] = None,
    keep_images: bool = True,
) -> tf.data.Dataset:
    """Batches ``source`` and maps the view policy over each batch.

    Args:
      source: elements ``(image uint8 [H,W,3], labels dict)``, or the resolution stage's
        ``(canvas uint8 [C,C,3], labels dict, extent int32 [2])`` (hac_tf/data/resolution.py:
        the crops are drawn inside each extent); shuffle/repeat it beforehand.
      policy: a ViewPolicy.
      batch_size: source images per batch (each yields 2L views).
      seed: base seed; batch i uses the stateless seed (seed, i), so the views of every batch
        are a pure function of (seed, i) whatever the parallelism -- and a resumed run
        regenerates exactly the same views.
      start_batch: skip this many batches (resume); the views of batch i are unchanged.
      keep_images: also return the source images (EquiMod's x_0) under ``"images"``.

    Returns:
      Dataset of ``{"level_k": {...}, ..., "labels": {...}, "images": uint8 [B,H,W,3]}``.
      For canvases ``"images"`` is the evaluation resize of each valid region, uint8
      ``[B,S,S,3]`` at the policy's view size S (``resolution.evaluation_resize``).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    ds = source.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.enumerate()
    if start_batch:
        ds = ds.skip(start_batch)

    def to_views(index: tf.Tensor, element: Any) -> Dict[str, Any]:
        if len(element) == 3:  # canvases of the resolution stage
            images, labels, extents = element
        else:
            (images, labels), extents = element, None
        views = policy(images, seed=tf.stack([tf.constant(seed, tf.int64), index]), extents=extents)
        views["labels"] = labels
        if keep_images:
            views["images"] = images if extents is None else evaluation_resize_batch(
                images, extents, policy.settings.image_size)
        return views

    # tf.data runs its map functions through autograph, which would transpile every function the
    # policy calls (KerasCV's layers included: ~100 functions, about 3 s of a tiny training run's
    # start on 2 cores); the view code has no data-dependent Python control flow, so it is traced
    # as is
    to_views = tf.autograph.experimental.do_not_convert(to_views)
    ds = ds.map(to_views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if options is None:
        options = tf.data.Options()
        options.deterministic = True
    ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)
