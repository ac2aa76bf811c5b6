"""Frozen-feature extraction: run an encoder once over a labelled source, keep numpy arrays.

Every probe (kNN, linear, multi-task) works on the arrays returned here, so the expensive forward
pass happens once per model, however many (feature, label) probes follow.

Conventions
-----------
*Encoder function*: any callable ``encoder_fn(images) -> dict[str, Tensor [B, D_name]]`` taking
float32 images ``[B, H, W, 3]`` in ``[0, 1]`` (a Keras model, a ``tf.function``, a plain function).
A callable returning a single tensor is treated as ``{"embedding": tensor}``. Outputs of rank > 2
(spatial maps) are global-average-pooled over every axis between batch and channel.

*Labelled source*: a ``tf.data.Dataset`` of ``(image uint8 [H, W, C], labels)`` where ``labels`` is
a dict of int scalars (a bare int label becomes ``{"label": ...}``). Already-batched datasets
(image rank 4) are accepted and re-batched. Single-channel images are tiled to RGB.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

__all__ = [
    "DEFAULT_LABEL_KEY",
    "EncoderFn",
    "extract_features",
    "extract_features_from_arrays",
    "dataset_to_arrays",
    "images_to_float",
]

#: images float32 [B, H, W, 3] in [0, 1] -> {name: [B, D]} (or one tensor).
EncoderFn = Callable[[tf.Tensor], "Mapping[str, tf.Tensor] | tf.Tensor"]

#: Key used when a source yields a bare label instead of a dict.
DEFAULT_LABEL_KEY = "label"
_LOG_EVERY_SECONDS = 10.0


def images_to_float(images) -> tf.Tensor:
    """uint8 ``[B, H, W, C]`` -> float32 in ``[0, 1]`` (float input is only cast); C=1 -> RGB."""
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    else:
        images = tf.cast(images, tf.float32)
    if images.shape[-1] == 1:
        images = tf.tile(images, [1, 1, 1, 3])
    return images


def _as_label_dict(labels) -> dict:
    if isinstance(labels, Mapping):
        return dict(labels)
    return {DEFAULT_LABEL_KEY: labels}


def _normalise_element(image, labels=None):
    """Map a dataset element to ``(image, labels_dict)``."""
    if labels is None:
        raise ValueError("a labelled source must yield (image, labels) pairs")
    return image, _as_label_dict(labels)


def _unbatched(dataset: tf.data.Dataset) -> tf.data.Dataset:
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(f"expected a dataset of (image, labels) pairs, got element_spec {spec}")
    dataset = dataset.map(_normalise_element)
    rank = dataset.element_spec[0].shape.rank
    if rank == 4:
        dataset = dataset.unbatch()
    elif rank not in (3, None):
        raise ValueError(f"images must be [H, W, C] (or batched [B, H, W, C]); got rank {rank}")
    return dataset


def _pool(value) -> np.ndarray:
    array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim > 2:
        array = array.mean(axis=tuple(range(1, array.ndim - 1)))
    return array


def _run_encoder(encoder_fn: EncoderFn, images: tf.Tensor, feature_names) -> dict[str, np.ndarray]:
    outputs = encoder_fn(images)
    if not isinstance(outputs, Mapping):
        outputs = {"embedding": outputs}
    names = list(outputs.keys()) if feature_names is None else list(feature_names)
    missing = [n for n in names if n not in outputs]
    if missing:
        raise KeyError(f"encoder outputs {sorted(outputs)} lack requested features {missing}")
    return {n: _pool(outputs[n]) for n in names}


class _Progress:
    def __init__(self, enabled: bool, what: str, total: int | None):
        self.enabled, self.what, self.total = enabled, what, total
        self.start = self.last = time.perf_counter()

    def update(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.last < _LOG_EVERY_SECONDS:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        verb = "done" if final else "running"
        logging.info("%s %s: %d%s examples, %.1f s, %.0f ex/s", self.what, verb, done, of,
                     now - self.start, rate)


def _concat(chunks: dict[str, list[np.ndarray]], dtype=None) -> dict[str, np.ndarray]:
    return {k: (np.concatenate(v, axis=0) if v else np.zeros((0,), dtype or np.float32))
            for k, v in chunks.items()}


def extract_features(
    encoder_fn: EncoderFn,
    dataset: tf.data.Dataset,
    batch_size: int = 256,
    max_examples: int | None = None,
    feature_names: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run ``encoder_fn`` once over ``dataset`` (in dataset order).

    Returns ``(features, labels)``: ``features[name]`` float32 ``[N, D_name]`` for every requested
    feature (all encoder outputs if ``feature_names`` is None), ``labels[key]`` int64 ``[N]`` for
    every label key of the source. ``max_examples`` keeps the first N examples.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    ds = _unbatched(dataset)
    if max_examples is not None:
        ds = ds.take(int(max_examples))
    total = None
    card = int(ds.cardinality())
    if card >= 0:
        total = card
    ds = ds.batch(batch_size).map(lambda x, y: (images_to_float(x), y),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(2)

    feats: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[np.ndarray]] = {}
    meter = _Progress(progress, "extract_features", total)
    done = 0
    for images, batch_labels in ds:
        out = _run_encoder(encoder_fn, images, feature_names)
        if feature_names is None:
            feature_names = list(out)
        for name, value in out.items():
            feats.setdefault(name, []).append(value)
        for key, value in batch_labels.items():
            labels.setdefault(key, []).append(np.asarray(value).astype(np.int64).reshape(-1))
        done += int(images.shape[0])
        meter.update(done)
    meter.update(done, final=True)
    if done == 0:
        names = list(feature_names or [])
        return ({n: np.zeros((0, 0), np.float32) for n in names},
                {k: np.zeros((0,), np.int64) for k in ds.element_spec[1]})
    return _concat(feats), _concat(labels, np.int64)


def dataset_to_arrays(
    dataset: tf.data.Dataset, max_examples: int | None = None, chunk: int = 1024
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Materialise the first ``max_examples`` of a labelled source as numpy arrays.

    Returns ``(images uint8 [N, H, W, C], labels {key: int64 [N]})`` (images keep their dtype if not
    uint8). Used to cache a fixed evaluation subset once (see `KNNMonitor`).
    """
    ds = _unbatched(dataset)
    if max_examples is not None:
        ds = ds.take(int(max_examples))
    images, labels = [], {}
    for batch_images, batch_labels in ds.batch(chunk).as_numpy_iterator():
        images.append(batch_images)
        for key, value in batch_labels.items():
            labels.setdefault(key, []).append(np.asarray(value).astype(np.int64).reshape(-1))
    if not images:
        shape = tuple(d or 0 for d in ds.element_spec[0].shape)
        return (np.zeros((0,) + shape, ds.element_spec[0].dtype.as_numpy_dtype),
                {k: np.zeros((0,), np.int64) for k in ds.element_spec[1]})
    return np.concatenate(images, axis=0), {k: np.concatenate(v) for k, v in labels.items()}


def extract_features_from_arrays(
    encoder_fn: EncoderFn,
    images: np.ndarray,
    batch_size: int = 256,
    feature_names: Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Like `extract_features` on an in-memory image array (uint8 or float in [0, 1])."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    feats: dict[str, list[np.ndarray]] = {}
    n = int(images.shape[0])
    meter = _Progress(progress, "extract_features", n)
    for start in range(0, n, batch_size):
        batch = images_to_float(images[start:start + batch_size])
        out = _run_encoder(encoder_fn, batch, feature_names)
        if feature_names is None:
            feature_names = list(out)
        for name, value in out.items():
            feats.setdefault(name, []).append(value)
        meter.update(min(start + batch_size, n))
    meter.update(n, final=True)
    if n == 0:
        return {name: np.zeros((0, 0), np.float32) for name in (feature_names or [])}
    return _concat(feats)
