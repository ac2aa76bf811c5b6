"""Fashion-MNIST from the original IDX files (offline), with a TFDS fallback.

The Debian package ``dataset-fashion-mnist`` installs the four gzipped IDX files into
`DEFAULT_DATA_DIR`. When the files for the requested split are not there, the split is loaded with
``tfds.load("fashion_mnist", data_dir=tfds_data_dir)`` instead (a logged decision; this may
download), unless ``allow_download=False``, which raises `FileNotFoundError`.

Note: TFDS stores the examples in a different order than the IDX files, so index-based derived
data (e.g. the coloured variant) differs between the two origins.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from absl import logging

from hac_tf.data import pipeline
from hac_tf.data._tfds_compat import import_tfds
from hac_tf.data.idx import read_idx
from hac_tf.data.info import SourceInfo

__all__ = [
    "DEFAULT_DATA_DIR",
    "CLASS_NAMES",
    "SPLITS",
    "FashionMnistArrays",
    "idx_paths",
    "load_fashion_mnist_arrays",
    "fashion_mnist",
]

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
#: Label id -> name (the order of the original release and of TFDS).
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_SIZE = 28
#: split -> (images file stem, labels file stem)
SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class FashionMnistArrays(NamedTuple):
    """One split in memory. ``images``: uint8 ``[N, 28, 28]``; ``labels``: uint8 ``[N]`` in 0..9."""

    images: np.ndarray
    labels: np.ndarray
    origin: str


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Fashion-MNIST split must be one of {sorted(SPLITS)}, got {split!r}")


def idx_paths(split: str, data_dir: str | os.PathLike[str]) -> tuple[str, str] | None:
    """``(images_path, labels_path)`` of ``split`` in ``data_dir`` (``.gz`` preferred), or None if absent."""
    _check_split(split)
    found = []
    for stem in SPLITS[split]:
        candidates = [os.path.join(os.fspath(data_dir), stem + ext) for ext in (".gz", "")]
        path = next((p for p in candidates if os.path.isfile(p)), None)
        if path is None:
            return None
        found.append(path)
    return found[0], found[1]


@functools.lru_cache(maxsize=4)
def _read_idx_pair(images_path: str, labels_path: str, _stamp: tuple[float, float]) -> FashionMnistArrays:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{images_path!r}: expected uint8 [N, 28, 28] images, got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{labels_path!r}: expected uint8 [N] labels, got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path!r} has {len(images)} images but {labels_path!r} has {len(labels)} labels")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{labels_path!r}: label {labels.max()} out of range 0..{len(CLASS_NAMES) - 1}")
    images.flags.writeable = False  # shared through the cache
    labels.flags.writeable = False
    return FashionMnistArrays(images, labels, os.path.dirname(images_path))


@functools.lru_cache(maxsize=4)
def _load_from_tfds(split: str, tfds_data_dir: str | None) -> FashionMnistArrays:
    tfds = import_tfds()
    data = tfds.as_numpy(
        tfds.load("fashion_mnist", split=split, data_dir=tfds_data_dir, batch_size=-1, download=True)
    )
    images = np.ascontiguousarray(data["image"][..., 0], dtype=np.uint8)
    labels = np.asarray(data["label"], dtype=np.uint8)
    images.flags.writeable = False
    labels.flags.writeable = False
    return FashionMnistArrays(images, labels, "tfds:fashion_mnist")


def load_fashion_mnist_arrays(
    split: str = "train",
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    allow_download: bool = True,
    tfds_data_dir: str | None = None,
) -> FashionMnistArrays:
    """Loads one split into numpy (cached per process; the arrays are read-only).

    Args:
      split: ``"train"`` (60k) or ``"test"`` (10k).
      data_dir: directory with the IDX files (``.gz`` or uncompressed).
      allow_download: when the IDX files are missing, fall back to TFDS (may download).
      tfds_data_dir: TFDS data directory for the fallback (None: the TFDS default).

    Raises:
      FileNotFoundError: the IDX files are missing and ``allow_download`` is False.
      ValueError: an IDX file is corrupt (never silently replaced by the fallback).
    """
    _check_split(split)
    paths = idx_paths(split, data_dir)
    if paths is not None:
        stamp = tuple(os.stat(p).st_mtime for p in paths)
        return _read_idx_pair(os.path.abspath(paths[0]), os.path.abspath(paths[1]), stamp)
    wanted = " and ".join(f"{stem}[.gz]" for stem in SPLITS[split])
    if not allow_download:
        raise FileNotFoundError(
            f"Fashion-MNIST {split!r} split: {wanted} not found in {os.fspath(data_dir)!r}, and "
            "allow_download=False forbids the TFDS fallback. Install the Debian package "
            "dataset-fashion-mnist or point data_dir at the IDX files.")
    logging.warning(
        "Fashion-MNIST IDX files (%s) not found in %r; falling back to "
        "tfds.load('fashion_mnist', split=%r, data_dir=%r), which may download.",
        wanted, os.fspath(data_dir), split, tfds_data_dir)
    return _load_from_tfds(split, tfds_data_dir)


def fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    shuffle: bool = False,
    seed: int | None = 0,
    allow_download: bool = True,
    tfds_data_dir: str | None = None,
    with_info: bool = False,
) -> tf.data.Dataset | tuple[tf.data.Dataset, SourceInfo]:
    """Fashion-MNIST as ``(uint8 [28, 28, 3], {"label": int32 []})`` (gray repeated to 3 channels).

    Args:
      split: ``"train"`` or ``"test"``.
      data_dir: IDX directory; see `load_fashion_mnist_arrays` for the fallback.
      shuffle, seed: deterministic full-buffer shuffle, reshuffled each epoch (see `pipeline`).
      allow_download, tfds_data_dir: the TFDS fallback.
      with_info: also return a `SourceInfo`.
    """
    arrays = load_fashion_mnist_arrays(split, data_dir, allow_download=allow_download, tfds_data_dir=tfds_data_dir)
    ds = pipeline.from_arrays(arrays.images, {"label": arrays.labels}, shuffle=shuffle, seed=seed)
    if not with_info:
        return ds
    info = SourceInfo(
        name="fashion_mnist",
        split=split,
        num_examples=len(arrays.images),
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        label_names={"label": CLASS_NAMES},
        num_classes={"label": len(CLASS_NAMES)},
        origin=arrays.origin,
    )
    return ds, info
