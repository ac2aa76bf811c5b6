"""Banded-hue Fashion-MNIST: colour information finer than the image mean.

Every garment gets a continuous *body* hue and, on a horizontal band of a few rows inside the
garment, an independent continuous *band* hue; one saturation and one value per image (shared
by body and band) and a grey background::

    out = bg + g * (colour(row) - bg)      g = garment intensity in [0, 1] after the resize
                                           colour(row) = HSV(band_hue, s, v) on the band rows,
                                                         HSV(body_hue, s, v) elsewhere

Fashion-MNIST's 28 x 28 grayscale garment is bilinearly resized to ``image_size`` first (the
same matrices as :mod:`hac_tf.data.coloured`) and coloured afterwards, row by row in the output
frame, so every pixel carries exactly one hue (body or band; blending with the grey background
keeps the hue). The band is ``band_rows`` rows high (default 4 at 32 px, scaled with the size),
placed at a hashed position inside the garment's vertical extent (rows whose resized intensity
reaches 0.2).

Why this set (issue 17): on coloured Fashion-MNIST the colour label is the hue of the image's
mean RGB, so any features that keep three numbers reach the colour probe's ceiling. Here:

* ``band_hue`` covers about a seventh of the garment and is independent of ``body_hue``: it
  cannot be read off the image mean (tests/data/test_data_banded_hue.py checks that a linear
  regression from the mean RGB to (cos, sin) of the band hue is near chance) -- a model has to
  keep local colour.
* ``hue_difference`` = band - body (mod 360 degrees) is unchanged by a global hue rotation:
  a hue-jittered copy of an image is (up to uint8 rounding) the image generated with both hues
  shifted by the same angle (tested). Models trained with and without colour jitter should tie
  on it: a control.

Parameters are a pure function of ``(image index, split, seed)`` by SplitMix64 hashing (no numpy
RNG streams, whose output may change between numpy versions), as in the coloured set: hues are
uniform on the circle, saturation uniform in `SATURATION_RANGE`, value in `VALUE_RANGE`,
background grey in `BACKGROUND_RANGE`.

Labels (int32, as every source): ``garment`` (0..9), ``body_hue``, ``band_hue`` and
``hue_difference``, each binned into ``num_bins`` bins centred on the hues ``k * 360 / num_bins``
(bin ``k = round(h * num_bins / 360) mod num_bins``). The continuous values (degrees in
[0, 360)) are not in the labels dict -- the source contract is int32 scalars -- but in
`BandedHueArrays`, indexed like the images: ``banded_hue_fashion_mnist_arrays(split, ...)``
returns them for a whole split, in the dataset's (unshuffled) order, and
`continuous_hues(split, ...)` only the float arrays. The colour measures
(hac_tf/evaluation/colour_measures.py) read them from there.

The whole split is generated once per process per argument tuple and cached (train at 32 px is
60000 x 32 x 32 x 3 = 184 MB).
"""

from __future__ import annotations

import functools
import os
import zlib
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from hac_tf.data import pipeline
from hac_tf.data.coloured import _splitmix64, bilinear_resize_matrix
from hac_tf.data.fashion_mnist import CLASS_NAMES, DEFAULT_DATA_DIR, load_fashion_mnist_arrays
from hac_tf.data.info import SourceInfo

__all__ = [
    "BACKGROUND_RANGE",
    "BAND_THRESHOLD",
    "DEFAULT_NUM_BINS",
    "LABEL_KEYS",
    "SATURATION_RANGE",
    "VALUE_RANGE",
    "BandedHueArrays",
    "BandedHueParameters",
    "banded_hue_fashion_mnist",
    "banded_hue_fashion_mnist_arrays",
    "banded_hue_parameters",
    "band_rows_for",
    "clear_cache",
    "continuous_hues",
    "hue_bin",
    "hue_bin_names",
    "render_banded",
]

DEFAULT_NUM_BINS = 16
#: per-image saturation / value / background grey, drawn uniformly (by hash) from these ranges
SATURATION_RANGE = (0.5, 1.0)
VALUE_RANGE = (0.6, 1.0)
BACKGROUND_RANGE = (0.05, 0.30)
#: a row belongs to the garment's vertical extent when its resized intensity reaches this
BAND_THRESHOLD = 0.2
#: the label keys, in order
LABEL_KEYS = ("garment", "body_hue", "band_hue", "hue_difference")
_CHUNK = 2048
_SALT = 0xBA4D


class BandedHueParameters(NamedTuple):
    """Per-image drawing parameters of a split, float64 ``[N]`` each.

    Hues in degrees in [0, 360); ``band_position`` in [0, 1) places the band inside the
    garment's vertical extent (see `render_banded`).
    """

    body_hue: np.ndarray
    band_hue: np.ndarray
    saturation: np.ndarray
    value: np.ndarray
    background: np.ndarray
    band_position: np.ndarray


def _uniforms(num_images: int, count: int, split: str, seed: int) -> np.ndarray:
    """float64 ``[num_images, count]`` in [0, 1): SplitMix64 of (seed, split, index, column)."""
    stream = _splitmix64(np.array([(int(seed) * 1000003 + _SALT) % (1 << 64)], dtype=np.uint64))
    stream = _splitmix64(stream ^ np.uint64(zlib.crc32(split.encode("utf-8"))))
    with np.errstate(over="ignore"):
        keys = _splitmix64(stream + np.arange(num_images * count, dtype=np.uint64))
    return ((keys >> np.uint64(11)).astype(np.float64) / float(1 << 53)).reshape(num_images, count)


def banded_hue_parameters(num_images: int, split: str, seed: int = 0) -> BandedHueParameters:
    """The deterministic parameters of every image of a split (a function of index, split, seed)."""
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    u = _uniforms(num_images, 6, split, seed)

    def scale(col: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
        return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * col

    return BandedHueParameters(
        body_hue=360.0 * u[:, 0], band_hue=360.0 * u[:, 1], saturation=scale(u[:, 2], SATURATION_RANGE),
        value=scale(u[:, 3], VALUE_RANGE), background=scale(u[:, 4], BACKGROUND_RANGE), band_position=u[:, 5])


def hue_bin(degrees: np.ndarray, num_bins: int) -> np.ndarray:
    """int32 bin of each hue: the nearest of the ``num_bins`` centres ``k * 360 / num_bins``."""
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    d = np.mod(np.asarray(degrees, np.float64), 360.0)
    return (np.floor(d * num_bins / 360.0 + 0.5).astype(np.int64) % num_bins).astype(np.int32)


def hue_bin_names(num_bins: int) -> tuple[str, ...]:
    """``("hue_0", "hue_22.5", ...)``: the centre in degrees of every bin."""
    return tuple(f"hue_{360.0 * k / num_bins:g}" for k in range(num_bins))


def band_rows_for(image_size: int) -> int:
    """Default band height: 4 rows at 32 px, scaled with the image side (at least 1)."""
    return max(1, int(round(4 * image_size / 32)))


def render_banded(gray: np.ndarray, params: BandedHueParameters, image_size: int,
                  band_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Resizes and colours grayscale garments.

    Args:
      gray: uint8 ``[N, H, W]`` garment intensities.
      params: `BandedHueParameters` with ``[N]`` arrays (hues in degrees).
      image_size: output side ``S``.
      band_rows: band height in output rows (None: `band_rows_for`).

    Returns:
      ``(images uint8 [N, S, S, 3], band_top int32 [N])``: the band covers output rows
      ``band_top .. band_top + band_rows - 1``.
    """
    from matplotlib.colors import hsv_to_rgb  # imported here: `import hac_tf.data` stays light

    n, h, w = gray.shape
    if len(params.body_hue) != n:
        raise ValueError(f"{n} garments but parameters for {len(params.body_hue)} images")
    rows = band_rows_for(image_size) if band_rows is None else int(band_rows)
    if not 1 <= rows <= image_size:
        raise ValueError(f"band_rows must be in [1, {image_size}], got {band_rows}")
    my = bilinear_resize_matrix(h, image_size)
    mx_t = bilinear_resize_matrix(w, image_size).T
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    band_top = np.empty(n, dtype=np.int32)
    y = np.arange(image_size)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        g = np.matmul(np.matmul(my, gray[start:stop].astype(np.float64) / 255.0), mx_t)  # [n, S, S]
        inside = g.max(axis=2) >= BAND_THRESHOLD  # [n, S]
        any_inside = inside.any(axis=1)
        top = np.where(any_inside, np.argmax(inside, axis=1), 0)
        bottom = np.where(any_inside, image_size - 1 - np.argmax(inside[:, ::-1], axis=1), image_size - 1)
        room = np.maximum(bottom - top + 1 - rows, 0)  # free rows of the extent above/below the band
        first = top + np.floor(params.band_position[start:stop] * (room + 1)).astype(np.int64)
        first = np.minimum(first, image_size - rows)
        band_top[start:stop] = first
        sv = (params.saturation[start:stop], params.value[start:stop])
        body = hsv_to_rgb(np.stack([np.mod(params.body_hue[start:stop], 360.0) / 360.0, *sv], -1))  # [n, 3]
        band = hsv_to_rgb(np.stack([np.mod(params.band_hue[start:stop], 360.0) / 360.0, *sv], -1))
        on_band = (y[None, :] >= first[:, None]) & (y[None, :] < first[:, None] + rows)  # [n, S]
        colour = np.where(on_band[..., None], band[:, None, :], body[:, None, :])[:, :, None, :]  # [n, S, 1, 3]
        bg = params.background[start:stop, None, None, None]
        value = bg + g[..., None] * (colour - bg)
        out[start:stop] = np.clip(np.floor(value * 255.0 + 0.5), 0, 255).astype(np.uint8)
    return out, band_top


class BandedHueArrays(NamedTuple):
    """One generated split, indexed like the images (read-only arrays).

    Attributes:
      images: uint8 ``[N, S, S, 3]``.
      labels: ``{key: int32 [N]}`` for `LABEL_KEYS` (hues binned, see `hue_bin`).
      body_hue, band_hue, hue_difference: float64 ``[N]``, degrees in [0, 360);
        ``hue_difference = (band_hue - body_hue) mod 360``.
      params: the drawing parameters; band_top: int32 ``[N]`` first band row.
      origin: where the Fashion-MNIST split came from.
    """

    images: np.ndarray
    labels: dict
    body_hue: np.ndarray
    band_hue: np.ndarray
    hue_difference: np.ndarray
    params: BandedHueParameters
    band_top: np.ndarray
    origin: str


@functools.lru_cache(maxsize=4)
def _generate(split: str, num_bins: int, image_size: int, seed: int, band_rows: int, data_dir: str,
              allow_download: bool, tfds_data_dir: str | None) -> BandedHueArrays:
    base = load_fashion_mnist_arrays(split, data_dir, allow_download=allow_download, tfds_data_dir=tfds_data_dir)
    params = banded_hue_parameters(len(base.images), split, seed)
    images, band_top = render_banded(base.images, params, image_size, band_rows)
    difference = np.mod(params.band_hue - params.body_hue, 360.0)
    labels = {"garment": base.labels.astype(np.int32), "body_hue": hue_bin(params.body_hue, num_bins),
              "band_hue": hue_bin(params.band_hue, num_bins), "hue_difference": hue_bin(difference, num_bins)}
    arrays = BandedHueArrays(images, labels, params.body_hue, params.band_hue, difference, params, band_top,
                             base.origin)
    for a in (images, band_top, difference, *labels.values(), *params):
        a.flags.writeable = False
    return arrays


def banded_hue_fashion_mnist_arrays(
    split: str = "train",
    num_bins: int = DEFAULT_NUM_BINS,
    image_size: int = 32,
    seed: int = 0,
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    band_rows: int | None = None,
    *,
    allow_download: bool = True,
    tfds_data_dir: str | None = None,
) -> BandedHueArrays:
    """The whole split in numpy (images, int labels and the continuous hues), cached per process."""
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    rows = band_rows_for(image_size) if band_rows is None else int(band_rows)
    if not 1 <= rows <= image_size // 2:
        raise ValueError(f"band_rows must be in [1, {image_size // 2}] at image_size={image_size}, got {band_rows}")
    return _generate(split, int(num_bins), int(image_size), int(seed), rows, os.path.abspath(os.fspath(data_dir)),
                     bool(allow_download), tfds_data_dir)


def continuous_hues(split: str = "train", **kwargs) -> dict[str, np.ndarray]:
    """``{"body_hue", "band_hue", "hue_difference": float64 [N] degrees}`` of a split (the
    arguments of `banded_hue_fashion_mnist_arrays`), in the dataset's unshuffled order."""
    a = banded_hue_fashion_mnist_arrays(split, **kwargs)
    return {"body_hue": a.body_hue, "band_hue": a.band_hue, "hue_difference": a.hue_difference}


def clear_cache() -> None:
    """Drops the generated splits held by this process."""
    _generate.cache_clear()


def banded_hue_fashion_mnist(
    split: str = "train",
    num_bins: int = DEFAULT_NUM_BINS,
    image_size: int = 32,
    seed: int = 0,
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    band_rows: int | None = None,
    *,
    shuffle: bool = False,
    shuffle_seed: int | None = None,
    allow_download: bool = True,
    tfds_data_dir: str | None = None,
    with_info: bool = False,
) -> tf.data.Dataset | tuple[tf.data.Dataset, SourceInfo]:
    """Banded-hue Fashion-MNIST as ``(uint8 [S, S, 3], {key: int32 []})`` for the keys of `LABEL_KEYS`.

    Args:
      split: ``"train"`` or ``"test"``.
      num_bins: bins of the three hue labels (``data.num_colours`` in configs).
      image_size: output side ``S``.
      seed: drives the drawing parameters and, unless ``shuffle_seed`` is given, the shuffle order.
      data_dir, allow_download, tfds_data_dir: where the Fashion-MNIST split comes from.
      band_rows: band height in rows (None: 4 at 32 px, scaled with ``S``).
      shuffle, shuffle_seed: deterministic full-buffer shuffle, reshuffled each epoch.
      with_info: also return a `SourceInfo`.
    """
    arrays = banded_hue_fashion_mnist_arrays(split, num_bins, image_size, seed, data_dir, band_rows,
                                             allow_download=allow_download, tfds_data_dir=tfds_data_dir)
    ds = pipeline.from_arrays(arrays.images, dict(arrays.labels), shuffle=shuffle,
                              seed=seed if shuffle_seed is None else shuffle_seed)
    if not with_info:
        return ds
    bins = hue_bin_names(num_bins)
    info = SourceInfo(
        name="banded_hue_fashion_mnist",
        split=split,
        num_examples=len(arrays.images),
        image_shape=(image_size, image_size, 3),
        label_names={"garment": CLASS_NAMES, "body_hue": bins, "band_hue": bins, "hue_difference": bins},
        num_classes={"garment": len(CLASS_NAMES), "body_hue": num_bins, "band_hue": num_bins,
                     "hue_difference": num_bins},
        origin=arrays.origin,
    )
    return ds, info
