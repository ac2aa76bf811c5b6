"""Coloured Fashion-MNIST: a two-attribute dataset (garment class x garment colour).

Every garment is tinted with one of ``N`` hues evenly spaced around the colour wheel
(``hue = k / N``, saturation 1, value 1) and laid on a dark grey background::

    out = bg + g * (colour_k - bg)        g = garment intensity in [0, 1], per pixel
                                          bg = per-image grey level in [0.06, 0.10)

then bilinearly resized 28 -> ``image_size`` (half-pixel centres, no antialiasing: the same
sampling as ``tf.image.resize(..., "bilinear")``) and rounded to uint8. Because the compositing is
affine in ``g`` and bilinear weights sum to one, the implementation resizes the grayscale image
first and colours it afterwards (3x less resize work); the result is mathematically identical.

Why ``N = 16`` by default: neighbouring hues are 360/16 = 22.5 degrees apart, finer than the
+-36 degrees hue jitter of SimCLR-style ``ColorJitter(hue=0.1)`` (0.1 of the colour wheel). A
jittered view therefore routinely lands one or two colour classes away: the augmentation destroys
the colour label, so a colour probe measures exactly what jitter-invariant training throws away
and what hierarchical / expanded-view training is meant to keep. Sixteen classes are still far
apart enough to stay unambiguous after uint8 rounding (blending with the grey background keeps the
hue exactly, since adding grey changes no channel difference ratios).

Colour and background assignment is a pure function of ``(image index, split, seed)`` built on
SplitMix64 integer hashing (no numpy RNG, whose streams may change between numpy versions), so it
is identical across runs, machines and library versions. Colours are exactly balanced: the images
are ranked by their hash and rank ``r`` gets colour ``r mod N``.

The whole split is generated once per process per ``(split, N, size, seed, data origin)`` and
cached (train at 32x32 is 60000x32x32x3 = 184 MB); it is served with ``from_tensor_slices``.
"""

from __future__ import annotations

import functools
import os
import zlib
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from hac_tf.data import pipeline
from hac_tf.data.fashion_mnist import CLASS_NAMES, DEFAULT_DATA_DIR, load_fashion_mnist_arrays
from hac_tf.data.info import SourceInfo

__all__ = [
    "DEFAULT_NUM_COLOURS",
    "BACKGROUND_RANGE",
    "hue_palette",
    "colour_names",
    "colour_assignment",
    "bilinear_resize_matrix",
    "colourise",
    "ColouredArrays",
    "coloured_fashion_mnist_arrays",
    "coloured_fashion_mnist",
    "clear_cache",
]

DEFAULT_NUM_COLOURS = 16
#: Per-image background grey level is drawn (by hash) uniformly from this half-open range.
BACKGROUND_RANGE = (0.06, 0.10)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 2048


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 output function applied elementwise to uint64 ``x`` (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MUL1
        z = (z ^ (z >> np.uint64(27))) * _MUL2
        return z ^ (z >> np.uint64(31))


def hue_palette(num_colours: int) -> np.ndarray:
    """float64 ``[N, 3]`` RGB in [0, 1] of hues ``k / N`` at full saturation and value."""
    if num_colours < 1:
        raise ValueError(f"num_colours must be >= 1, got {num_colours}")
    h6 = np.arange(num_colours, dtype=np.float64) * 6.0 / num_colours
    sector = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    one, zero, up, down = np.ones_like(f), np.zeros_like(f), f, 1.0 - f
    table = np.stack([
        np.stack([one, up, zero], -1),    # red -> yellow
        np.stack([down, one, zero], -1),  # yellow -> green
        np.stack([zero, one, up], -1),    # green -> cyan
        np.stack([zero, down, one], -1),  # cyan -> blue
        np.stack([up, zero, one], -1),    # blue -> magenta
        np.stack([one, zero, down], -1),  # magenta -> red
    ])  # [6, N, 3]
    return table[sector, np.arange(num_colours)]


def colour_names(num_colours: int) -> tuple[str, ...]:
    """``("hue_0", "hue_22.5", ...)``: the hue in degrees of each colour label."""
    return tuple(f"hue_{360.0 * k / num_colours:g}" for k in range(num_colours))


def colour_assignment(num_images: int, split: str, num_colours: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic colour label and background level of every image of a split.

    Returns:
      ``colours``: int32 ``[num_images]`` in ``0..N-1``, each value used ``floor`` or ``ceil`` of
      ``num_images / N`` times; ``background``: float64 ``[num_images]`` in `BACKGROUND_RANGE`.
    """
    stream = _splitmix64(np.array([seed % (1 << 64)], dtype=np.uint64))
    stream = _splitmix64(stream ^ np.uint64(zlib.crc32(split.encode("utf-8"))))
    with np.errstate(over="ignore"):
        keys = _splitmix64(stream + np.arange(num_images, dtype=np.uint64))
    order = np.argsort(keys, kind="stable")
    colours = np.empty(num_images, dtype=np.int32)
    colours[order] = np.arange(num_images, dtype=np.int64) % num_colours
    unit = (_splitmix64(keys) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    lo, hi = BACKGROUND_RANGE
    return colours, lo + (hi - lo) * unit


def bilinear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """float64 ``[out_size, in_size]`` matrix ``M`` with ``resize(x) = M @ x`` along one axis.

    Half-pixel centres, edge clamping, no antialias (equal to ``tf.image.resize`` bilinear).
    """
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    src = np.clip(src, 0.0, in_size - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    m = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def colourise(
    gray: np.ndarray, colours: np.ndarray, background: np.ndarray, num_colours: int, image_size: int
) -> np.ndarray:
    """Tints grayscale garments and resizes them.

    Args:
      gray: uint8 ``[N, H, W]`` garment intensities.
      colours: int ``[N]`` colour labels in ``0..num_colours-1``.
      background: float ``[N]`` background grey levels in [0, 1].
      num_colours: size of the hue palette.
      image_size: output side ``S``.

    Returns:
      uint8 ``[N, S, S, 3]``.
    """
    n, h, w = gray.shape
    my = bilinear_resize_matrix(h, image_size)
    mx_t = bilinear_resize_matrix(w, image_size).T
    palette = hue_palette(num_colours)
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        g = gray[start:stop].astype(np.float64) / 255.0
        g = np.matmul(np.matmul(my, g), mx_t)  # [n, S, S]
        bg = background[start:stop, None, None, None]
        colour = palette[colours[start:stop]][:, None, None, :]
        value = bg + g[..., None] * (colour - bg)
        out[start:stop] = np.clip(np.floor(value * 255.0 + 0.5), 0, 255).astype(np.uint8)
    return out


class ColouredArrays(NamedTuple):
    """One generated split: images uint8 ``[N, S, S, 3]``, garment/colour int32 ``[N]``."""

    images: np.ndarray
    garment: np.ndarray
    colour: np.ndarray
    origin: str


@functools.lru_cache(maxsize=4)
def _generate(split: str, num_colours: int, image_size: int, seed: int, data_dir: str,
              allow_download: bool, tfds_data_dir: str | None) -> ColouredArrays:
    base = load_fashion_mnist_arrays(split, data_dir, allow_download=allow_download, tfds_data_dir=tfds_data_dir)
    colours, background = colour_assignment(len(base.images), split, num_colours, seed)
    images = colourise(base.images, colours, background, num_colours, image_size)
    garment = base.labels.astype(np.int32)
    for a in (images, garment, colours):
        a.flags.writeable = False
    return ColouredArrays(images, garment, colours, base.origin)


def coloured_fashion_mnist_arrays(
    split: str = "train",
    num_colours: int = DEFAULT_NUM_COLOURS,
    image_size: int = 32,
    seed: int = 0,
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    allow_download: bool = True,
    tfds_data_dir: str | None = None,
) -> ColouredArrays:
    """The whole split in numpy, generated on first use and cached per process (read-only arrays)."""
    if num_colours < 1:
        raise ValueError(f"num_colours must be >= 1, got {num_colours}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return _generate(split, int(num_colours), int(image_size), int(seed), os.path.abspath(os.fspath(data_dir)),
                     bool(allow_download), tfds_data_dir)


def clear_cache() -> None:
    """Drops the generated splits held by this process."""
    _generate.cache_clear()


def coloured_fashion_mnist(
    split: str = "train",
    num_colours: int = DEFAULT_NUM_COLOURS,
    image_size: int = 32,
    seed: int = 0,
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    shuffle: bool = False,
    shuffle_seed: int | None = None,
    allow_download: bool = True,
    tfds_data_dir: str | None = None,
    with_info: bool = False,
) -> tf.data.Dataset | tuple[tf.data.Dataset, SourceInfo]:
    """Coloured Fashion-MNIST as ``(uint8 [S, S, 3], {"garment": int32 [], "colour": int32 []})``.

    Args:
      split: ``"train"`` or ``"test"``.
      num_colours: number of hue classes ``N`` (labels ``0..N-1``, hue ``k * 360 / N`` degrees).
      image_size: output side ``S``.
      seed: drives the colour/background assignment and, unless ``shuffle_seed`` is given, the
        shuffle order.
      data_dir, allow_download, tfds_data_dir: where the Fashion-MNIST split comes from.
      shuffle, shuffle_seed: deterministic full-buffer shuffle, reshuffled each epoch.
      with_info: also return a `SourceInfo`.
    """
    arrays = coloured_fashion_mnist_arrays(split, num_colours, image_size, seed, data_dir,
                                           allow_download=allow_download, tfds_data_dir=tfds_data_dir)
    ds = pipeline.from_arrays(
        arrays.images, {"garment": arrays.garment, "colour": arrays.colour},
        shuffle=shuffle, seed=seed if shuffle_seed is None else shuffle_seed,
    )
    if not with_info:
        return ds
    info = SourceInfo(
        name="coloured_fashion_mnist",
        split=split,
        num_examples=len(arrays.images),
        image_shape=(image_size, image_size, 3),
        label_names={"garment": CLASS_NAMES, "colour": colour_names(num_colours)},
        num_classes={"garment": len(CLASS_NAMES), "colour": num_colours},
        origin=arrays.origin,
    )
    return ds, info
