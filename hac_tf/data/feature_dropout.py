"""Fashion-MNIST overlay: a multi-attribute set where two label sets compete in one image.

In the spirit of the Feature Dropout datasets (Tamkin et al., NeurIPS 2023; docs/METHODS.md#feature-dropout:
CIFAR-10 + shapes / digits / letters overlays), every coloured Fashion-MNIST garment (labels
``garment`` and ``colour``, see :mod:`hac_tf.data.coloured`) gets a drawn overlay with its own
label ``overlay``:

* ``digits``: a seven-segment digit 0-9 (10 classes), drawn from segments (no external data:
  MNIST is not available offline; the glyphs are "digit-like shapes").
* ``shapes``: a filled rectangle, triangle, ellipse or cross (4 classes; cifar10shapes has the
  first three).

The overlay has one random colour per image (uniform RGB, as in the Feature Dropout sets) and is
alpha-blended (``alpha`` 0.7 ~ 180/255) over the garment. It is drawn ``copies`` times (default
4, one per image quadrant at a random offset inside it, like the digit/letter sets) so that most
crops keep at least part of one copy; ``copies=1`` puts a single overlay anywhere. Glyphs are
rasterised with 4x4 supersampling (anti-aliased edges) directly at the output size.

A multi-task probe with ``label_keys=(garment, colour, overlay)`` then measures which attributes
an encoder keeps: label-destroying augmentations (crops that cut the overlay out, a Viewmaker that
paints over it, colour jitter for ``colour``) show up as lost accuracy on that label.

Deviation from the Feature Dropout sets: the overlay (class, colour, position) is a fixed
function of ``(image index, split, seed)`` (SplitMix64 hashing, as the coloured set) instead of
being re-sampled at every fetch; classes are exactly balanced (rank r gets class r mod K). Both
views of a pair share one overlaid image in both cases.
"""

from __future__ import annotations

import functools
import os
import zlib
from typing import Dict, NamedTuple, Tuple

import numpy as np

from hac_tf.data import pipeline
from hac_tf.data.coloured import DEFAULT_NUM_COLOURS, _splitmix64, coloured_fashion_mnist_arrays, colour_names
from hac_tf.data.fashion_mnist import CLASS_NAMES, DEFAULT_DATA_DIR
from hac_tf.data.info import SourceInfo

__all__ = [
    "OVERLAYS",
    "overlay_class_names",
    "glyph_mask",
    "overlay_parameters",
    "composite_overlays",
    "OverlayArrays",
    "fashion_mnist_overlay_arrays",
    "fashion_mnist_overlay",
]

# seven-segment layout on a 5 x 9 unit box: segment -> (x0, y0, x1, y1)
_SEGMENTS: Dict[str, Tuple[float, float, float, float]] = {
    "a": (0.0, 0.0, 5.0, 1.0), "b": (4.0, 0.0, 5.0, 5.0), "c": (4.0, 4.0, 5.0, 9.0), "d": (0.0, 8.0, 5.0, 9.0),
    "e": (0.0, 4.0, 1.0, 9.0), "f": (0.0, 0.0, 1.0, 5.0), "g": (0.0, 4.0, 5.0, 5.0),
}
_DIGIT_SEGMENTS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")
_SHAPES = ("rectangle", "triangle", "ellipse", "cross")
#: overlay kind -> (class names, glyph aspect width / height)
OVERLAYS: Dict[str, Tuple[Tuple[str, ...], float]] = {
    "digits": (tuple(str(d) for d in range(10)), 5.0 / 9.0),
    "shapes": (_SHAPES, 1.0),
}
_SUPERSAMPLE = 4


def overlay_class_names(overlay: str) -> Tuple[str, ...]:
    if overlay not in OVERLAYS:
        raise ValueError(f"overlay must be one of {sorted(OVERLAYS)}, got {overlay!r}")
    return OVERLAYS[overlay][0]


def _inside(overlay: str, cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether the points (u, v) in [0, 1]^2 of the glyph box (u right, v down) are inside."""
    if overlay == "digits":
        x, y = u * 5.0, v * 9.0
        out = np.zeros(u.shape, bool)
        for seg in _DIGIT_SEGMENTS[cls]:
            x0, y0, x1, y1 = _SEGMENTS[seg]
            out |= (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
        return out
    name = _SHAPES[cls]
    if name == "rectangle":
        return (u >= 0.1) & (u < 0.9) & (v >= 0.2) & (v < 0.8)
    if name == "triangle":  # apex at the top centre, base at the bottom
        return (v >= 0.05) & (v < 0.95) & (np.abs(u - 0.5) <= 0.5 * (v - 0.05) / 0.9)
    if name == "ellipse":
        return ((u - 0.5) / 0.5) ** 2 + ((v - 0.5) / 0.38) ** 2 <= 1.0
    if name == "cross":
        return ((np.abs(u - 0.5) < 0.15) | (np.abs(v - 0.5) < 0.15))
    raise ValueError(name)  # pragma: no cover


@functools.lru_cache(maxsize=64)
def glyph_mask(overlay: str, cls: int, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of class ``cls``'s glyph in a ``height x width`` box (float64)."""
    names = overlay_class_names(overlay)
    if not 0 <= cls < len(names):
        raise ValueError(f"class {cls} out of range for overlay {overlay!r} ({len(names)} classes)")
    s = _SUPERSAMPLE
    v = (np.arange(height * s) + 0.5) / (height * s)
    u = (np.arange(width * s) + 0.5) / (width * s)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    inside = _inside(overlay, cls, uu, vv).astype(np.float64)
    mask = inside.reshape(height, s, width, s).mean(axis=(1, 3))
    mask.flags.writeable = False
    return mask


def _glyph_size(overlay: str, image_size: int, copies: int) -> Tuple[int, int]:
    aspect = OVERLAYS[overlay][1]
    frac = 0.375 if copies > 1 else 0.5
    h = max(5, int(round(frac * image_size)))
    if copies > 1:
        h = min(h, image_size // 2)
    w = max(3, int(round(h * aspect)))
    return h, w


def _uniforms(num: int, count: int, split: str, seed: int, salt: int) -> np.ndarray:
    """Deterministic float64 [num, count] uniforms in [0, 1) (SplitMix64 of (seed, split, salt, i, j))."""
    stream = _splitmix64(np.array([(seed * 1000003 + salt) % (1 << 64)], dtype=np.uint64))
    stream = _splitmix64(stream ^ np.uint64(zlib.crc32(split.encode("utf-8"))))
    idx = np.arange(num * count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        keys = _splitmix64(stream + idx)
    return ((keys >> np.uint64(11)).astype(np.float64) / float(1 << 53)).reshape(num, count)


def overlay_parameters(num_images: int, split: str, overlay: str, image_size: int, seed: int = 0,
                       copies: int = 4) -> Dict[str, np.ndarray]:
    """The overlay of every image: ``label`` int32 [N] (exactly balanced), ``colour`` float [N, 3]
    in [0, 1], ``top`` / ``left`` int [N, copies] pixel positions of each copy."""
    num_classes = len(overlay_class_names(overlay))
    order_keys = _uniforms(num_images, 1, split, seed, salt=11)[:, 0]
    order = np.argsort(order_keys, kind="stable")
    label = np.empty(num_images, dtype=np.int32)
    label[order] = np.arange(num_images) % num_classes
    colour = _uniforms(num_images, 3, split, seed, salt=12)
    gh, gw = _glyph_size(overlay, image_size, copies)
    pos = _uniforms(num_images, 2 * copies, split, seed, salt=13)
    if copies == 1:
        top = np.floor(pos[:, :1] * (image_size - gh + 1)).astype(np.int64)
        left = np.floor(pos[:, 1:2] * (image_size - gw + 1)).astype(np.int64)
    else:
        half = image_size // 2
        qy = np.array([(k // 2) % 2 for k in range(copies)]) * half
        qx = np.array([k % 2 for k in range(copies)]) * half
        top = qy + np.floor(pos[:, 0::2] * (half - gh + 1)).astype(np.int64)
        left = qx + np.floor(pos[:, 1::2] * (half - gw + 1)).astype(np.int64)
    return {"label": label, "colour": colour, "top": top, "left": left}


def composite_overlays(images: np.ndarray, params: Dict[str, np.ndarray], overlay: str, alpha: float = 0.7,
                       chunk: int = 4096) -> np.ndarray:
    """Blends the overlays onto uint8 ``[N, S, S, 3]`` images (returns a new uint8 array).

    ``out = (1 - alpha * m) * image + alpha * m * colour`` with m the glyph coverage (copies
    combined by max), rounded to uint8. Processed in chunks of ``chunk`` images.
    """
    n, size = images.shape[0], images.shape[1]
    copies = params["top"].shape[1]
    gh, gw = _glyph_size(overlay, size, copies)
    masks = np.stack([glyph_mask(overlay, c, gh, gw) for c in range(len(overlay_class_names(overlay)))])
    out = np.empty_like(images)
    dy = np.arange(gh)[None, :, None]
    dx = np.arange(gw)[None, None, :]
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        rows = np.arange(hi - lo)[:, None, None]
        glyph = masks[params["label"][lo:hi]]  # [n, gh, gw]
        coverage = np.zeros((hi - lo, size, size), np.float64)
        for k in range(copies):  # every image's k-th copy at once (no repeated index within one copy)
            idx = (rows, params["top"][lo:hi, k][:, None, None] + dy, params["left"][lo:hi, k][:, None, None] + dx)
            coverage[idx] = np.maximum(coverage[idx], glyph)
        a = (alpha * coverage)[..., None]
        colour = params["colour"][lo:hi, None, None, :]
        value = (1.0 - a) * (images[lo:hi].astype(np.float64) / 255.0) + a * colour
        out[lo:hi] = np.clip(np.floor(value * 255.0 + 0.5), 0, 255).astype(np.uint8)
    return out


class OverlayArrays(NamedTuple):
    """One generated split: images uint8 [N, S, S, 3] and int32 [N] labels."""

    images: np.ndarray
    garment: np.ndarray
    colour: np.ndarray
    overlay: np.ndarray
    origin: str


@functools.lru_cache(maxsize=2)
def _generate(split: str, overlay: str, num_colours: int, image_size: int, seed: int, copies: int, alpha: float,
              data_dir: str, allow_download: bool, tfds_data_dir) -> OverlayArrays:
    base = coloured_fashion_mnist_arrays(split, num_colours, image_size, seed, data_dir,
                                         allow_download=allow_download, tfds_data_dir=tfds_data_dir)
    params = overlay_parameters(len(base.images), split, overlay, image_size, seed, copies)
    images = composite_overlays(base.images, params, overlay, alpha)
    out = OverlayArrays(images, base.garment, base.colour, params["label"], base.origin)
    for a in (out.images, out.overlay):
        a.flags.writeable = False
    return out


def fashion_mnist_overlay_arrays(
    split: str = "train",
    overlay: str = "digits",
    num_colours: int = DEFAULT_NUM_COLOURS,
    image_size: int = 32,
    seed: int = 0,
    copies: int = 4,
    alpha: float = 0.7,
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    allow_download: bool = True,
    tfds_data_dir: str | None = None,
) -> OverlayArrays:
    """The whole split in numpy, generated on first use and cached per process (read-only arrays)."""
    overlay_class_names(overlay)
    if copies not in (1, 2, 3, 4):
        raise ValueError(f"copies must be 1..4, got {copies}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 for legible overlays, got {image_size}")
    return _generate(split, overlay, int(num_colours), int(image_size), int(seed), int(copies), float(alpha),
                     os.path.abspath(os.fspath(data_dir)), bool(allow_download), tfds_data_dir)


def fashion_mnist_overlay(
    split: str = "train",
    overlay: str = "digits",
    num_colours: int = DEFAULT_NUM_COLOURS,
    image_size: int = 32,
    seed: int = 0,
    copies: int = 4,
    alpha: float = 0.7,
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    shuffle: bool = False,
    shuffle_seed: int | None = None,
    allow_download: bool = True,
    tfds_data_dir: str | None = None,
    with_info: bool = False,
):
    """``(uint8 [S, S, 3], {"garment", "colour", "overlay": int32 []})`` (see the module docstring).

    Args:
      split: ``"train"`` or ``"test"``.
      overlay: ``"digits"`` (10 classes) or ``"shapes"`` (4 classes).
      num_colours, image_size, seed, data_dir, allow_download, tfds_data_dir: as
        :func:`hac_tf.data.coloured_fashion_mnist` (seed also drives the overlays).
      copies: overlays per image (4: one per quadrant).
      alpha: overlay opacity.
      shuffle, shuffle_seed, with_info: as the other sources.
    """
    arrays = fashion_mnist_overlay_arrays(split, overlay, num_colours, image_size, seed, copies, alpha, data_dir,
                                          allow_download=allow_download, tfds_data_dir=tfds_data_dir)
    ds = pipeline.from_arrays(
        arrays.images, {"garment": arrays.garment, "colour": arrays.colour, "overlay": arrays.overlay},
        shuffle=shuffle, seed=seed if shuffle_seed is None else shuffle_seed,
    )
    if not with_info:
        return ds
    names = overlay_class_names(overlay)
    info = SourceInfo(
        name="fashion_mnist_overlay",
        split=split,
        num_examples=len(arrays.images),
        image_shape=(image_size, image_size, 3),
        label_names={"garment": CLASS_NAMES, "colour": colour_names(num_colours), "overlay": names},
        num_classes={"garment": len(CLASS_NAMES), "colour": num_colours, "overlay": len(names)},
        origin=arrays.origin,
    )
    return ds, info
