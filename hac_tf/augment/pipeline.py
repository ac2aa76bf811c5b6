"""tf.data glue: a source of (image, labels) -> batches of views with recorded parameters."""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf

from hac_tf.augment.policies import ViewPolicy


def make_view_dataset(
    source: tf.data.Dataset,
    policy: ViewPolicy,
    batch_size: int,
    seed: int = 0,
    start_batch: int = 0,
    drop_remainder: bool = True,
    options: Optional[tf.data.Options] = None,
) -> tf.data.Dataset:
    """Batches ``source`` and maps the view policy over each batch.

    Args:
      source: elements ``(image uint8 [H,W,3], labels dict)``; shuffle/repeat it beforehand.
      policy: a ViewPolicy.
      batch_size: source images per batch (each yields 2L views).
      seed: base seed; batch i uses the stateless seed (seed, i), so the views of every batch
        are a pure function of (seed, i) whatever the parallelism -- and a resumed run
        regenerates exactly the same views.
      start_batch: skip this many batches (resume); the views of batch i are unchanged.

    Returns:
      Dataset of ``{"level_k": {...}, ..., "labels": {...}, "images": uint8 [B,H,W,3]}``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    ds = source.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.enumerate()
    if start_batch:
        ds = ds.skip(start_batch)

    def to_views(index: tf.Tensor, element: Any) -> Dict[str, Any]:
        images, labels = element
        views = policy(images, seed=tf.stack([tf.constant(seed, tf.int64), index]))
        views["labels"] = labels
        views["images"] = images
        return views

    ds = ds.map(to_views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if options is None:
        options = tf.data.Options()
        options.deterministic = True
    ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)
