"""Any TFDS dataset as an ``(image, labels)`` source.

Images become uint8 RGB ``[H, W, 3]`` (1 channel repeated, alpha composited over black, uint16
scaled to 8 bits); the chosen label features become an int32 labels dict. Nothing is downloaded
unless ``download=True`` (config ``data.download: true``); a dataset that is not prepared otherwise
raises `hac_tf.data.tfds_prepare.DatasetNotPreparedError`, whose message names the command that
prepares it (``python tools/prepare_data.py --dataset=tfds:<name>`` or ``tfds build <name>``) and,
for datasets that need a manual download (imagenet2012), where to put the files.

Pipeline: ``as_dataset -> map(convert) -> [cache] -> [shuffle] -> prefetch``. With ``cache=None``
the decoded split is cached in memory when its size is known and fits ``max_cache_bytes``; then
the shuffle buffer covers the whole split. Otherwise shards are shuffled by TFDS (seeded) and
examples through a ``shuffle_buffer``-sized buffer (seeded, reshuffled each epoch).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from hac_tf.data import pipeline
from hac_tf.data._tfds_compat import import_tfds
from hac_tf.data.info import SourceInfo
from hac_tf.data.tfds_prepare import DatasetNotPreparedError, not_prepared_message, prepare_tfds_dataset

__all__ = ["tfds_source"]


def _resolve_split(split: str, available: Sequence[str], name: str) -> str:
    """Checks the split names in a TFDS split string; maps ``"test"`` to ``"validation"`` if needed."""
    if split == "test" and "test" not in available and "validation" in available:
        logging.info("TFDS dataset %r has no 'test' split; using 'validation' as the test split", name)
        return "validation"
    for part in split.split("+"):
        base = re.sub(r"\[.*\]$", "", part.strip())
        if base not in available:
            raise ValueError(f"TFDS dataset {name!r} has no split {base!r} (in {split!r}); "
                             f"available: {sorted(available)}")
    return split


def tfds_source(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    image_key: str = "image",
    label_keys: Sequence[str] = ("label",),
    download: bool = False,
    *,
    shuffle: bool = False,
    seed: int | None = 0,
    shuffle_buffer: int = 10_000,
    cache: bool | None = None,
    max_cache_bytes: int = pipeline.DEFAULT_MAX_CACHE_BYTES,
    with_info: bool = False,
) -> tf.data.Dataset | tuple[tf.data.Dataset, SourceInfo]:
    """A TFDS builder as ``(uint8 [H, W, 3], {key: int32 []})``.

    Args:
      name: TFDS builder name (optionally ``name/config:version``), registered or found prepared
        in ``data_dir``.
      split: TFDS split string (``"train"``, ``"test"``, ``"train[:10%]"``...); ``"test"`` falls back
        to ``"validation"`` for datasets without a test split.
      data_dir: TFDS data directory (None: the TFDS default).
      image_key: the image feature.
      label_keys: integer scalar features returned in the labels dict.
      download: allow ``download_and_prepare`` when the dataset is not prepared yet (datasets
        that need a manual download also need their files in TFDS's manual_dir).
      shuffle, seed, shuffle_buffer: deterministic shuffling (see module docstring).
      cache, max_cache_bytes: in-memory caching policy (see module docstring).
      with_info: also return a `SourceInfo`.

    Raises:
      DatasetNotPreparedError (a FileNotFoundError): the dataset is not prepared in ``data_dir`` and
        ``download`` is False, or its manual files are missing; the message names the fix.
      ValueError: unknown dataset, split or feature keys, or a non-scalar label.
    """
    tfds = import_tfds()
    data_dir = None if data_dir is None else os.fspath(data_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"unknown TFDS dataset {name!r} (not registered and not prepared in "
                         f"data_dir={data_dir!r}): {e}") from e
    if not builder.is_prepared():
        if not download:
            raise DatasetNotPreparedError(not_prepared_message(builder, name, data_dir))
        prepare_tfds_dataset(builder, name, data_dir)

    info = builder.info
    split = _resolve_split(split, list(info.splits.keys()), name)
    features = info.features
    missing = [k for k in (image_key, *label_keys) if k not in features]
    if missing:
        raise ValueError(f"TFDS dataset {name!r} has no feature(s) {missing}; features: {sorted(features.keys())}")
    label_names: dict[str, tuple[str, ...]] = {}
    num_classes: dict[str, int] = {}
    for key in label_keys:
        feature = features[key]
        if tuple(feature.shape) != () or not np.issubdtype(feature.np_dtype, np.integer):
            raise ValueError(f"TFDS feature {key!r} of {name!r} is {feature.np_dtype} {feature.shape}, "
                             "not an integer scalar label")
        if isinstance(feature, tfds.features.ClassLabel):
            label_names[key] = tuple(feature.names)
            num_classes[key] = int(feature.num_classes)
        else:
            label_names[key], num_classes[key] = (), -1
    image_shape = tuple(features[image_key].shape)
    if len(image_shape) not in (2, 3):
        raise ValueError(f"TFDS feature {image_key!r} of {name!r} has shape {image_shape}, not an image")
    height, width = image_shape[0], image_shape[1]
    num_examples = int(info.splits[split].num_examples)

    if cache is None:
        cache = bool(height and width) and num_examples * height * width * 3 <= max_cache_bytes
    shuffle_files = bool(shuffle and not cache)
    # Shuffling was asked for explicitly, so also for datasets stored in a fixed order.
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False, enable_ordering_guard=not shuffle_files)
    ds = builder.as_dataset(split=split, shuffle_files=shuffle_files, read_config=read_config)
    keys = tuple(label_keys)

    def convert(example: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        image = pipeline.to_rgb_uint8(example[image_key])
        return image, {k: tf.cast(example[k], tf.int32) for k in keys}

    ds = ds.map(convert, num_parallel_calls=pipeline.AUTOTUNE)
    buffer = num_examples if cache else min(shuffle_buffer, max(1, num_examples))
    ds = pipeline.shuffle_and_prefetch(ds, shuffle=shuffle, seed=seed, buffer_size=buffer, cache=bool(cache))
    if not with_info:
        return ds
    source_info = SourceInfo(
        name=f"tfds:{name}",
        split=split,
        num_examples=num_examples,
        image_shape=(height, width, 3),
        label_names=label_names,
        num_classes=num_classes,
        origin=f"tfds:{name} ({os.fspath(builder.data_dir)})",
    )
    return ds, source_info
