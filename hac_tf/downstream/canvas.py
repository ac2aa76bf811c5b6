"""Fashion-MNIST canvases: a small, generated detection / segmentation set.

Each canvas is a ``S x S`` RGB image (e.g. 64 or 96) holding 1..3 real Fashion-MNIST garments,
each bilinearly resized from 28x28 to a random side ``s`` and (optionally) tinted with a random
colour, placed at a random position on a dark, slightly noisy background. Labels per canvas:

  ``boxes``           float32 ``[M, 4]`` ``(ymin, xmin, ymax, xmax)`` in pixels, continuous
                      coordinates: a garment whose visible mask covers rows ``r0..r1`` and
                      columns ``c0..c1`` (inclusive) has the box ``(r0, c0, r1 + 1, c1 + 1)``.
  ``classes``         int32 ``[M]`` Fashion-MNIST garment ids ``0..9`` (see
                      ``hac_tf.data.FASHION_MNIST_CLASSES``).
  ``num_objects``     int32 ``[]`` — the first ``num_objects`` rows are real, the rest padding
                      (boxes ``-1``, classes ``-1``, masks 0); ``M = max_objects``.
  ``instance_masks``  uint8 ``[M, S, S]`` in {0, 1}: the visible pixels of each garment.
  ``semantic_mask``   uint8 ``[S, S]``: 0 = background, ``1 + class`` = garment pixel.
  ``source_id``       int64 ``[]``: a unique id of the canvas (``index + 1``; ``+ 10**6`` for the
                      test split), usable as a COCO image id.
  ``garment_index``   int32 ``[M]``: index of each garment in the Fashion-MNIST split (-1 = pad).

Masks come from the garment intensities: after the resize, a pixel belongs to the garment when
its intensity exceeds ``mask_threshold`` (Fashion-MNIST backgrounds are exactly 0). Garments are
alpha-composited in order (alpha = intensity); where a later garment's mask covers an earlier
one, the pixel belongs to the later one (occlusion), so instance masks never overlap and the
semantic mask is their union. Placement uses rejection sampling so that at most
``max_mask_overlap`` of a garment's own mask may be covered by later ones (default 0: no
occlusion at all); a garment that cannot be placed is skipped (at least ``min_objects`` are kept
whenever possible: the first garment always fits).

Determinism: canvas ``i`` of split ``split`` is a pure function of
``(seed, split, i, spec, Fashion-MNIST split)`` — it is drawn from its own
``numpy.random.Generator(PCG64(SeedSequence([seed, crc32(split), i])))`` — so any subset or
order of indices gives the same canvases, and the same numpy version gives the same bytes
everywhere. (numpy documents that its distribution algorithms may change between versions.)
"""

from __future__ import annotations

import colorsys
import dataclasses
import os
import zlib
from typing import Dict, NamedTuple, Optional, Sequence, Union

import numpy as np

from hac_tf.data.coloured import bilinear_resize_matrix
from hac_tf.data.fashion_mnist import CLASS_NAMES, DEFAULT_DATA_DIR, load_fashion_mnist_arrays

__all__ = [
    "NUM_GARMENT_CLASSES",
    "CanvasSpec",
    "CanvasArrays",
    "generate_canvas",
    "generate_canvases",
    "canvas_dataset",
    "masks_to_boxes",
]

NUM_GARMENT_CLASSES = len(CLASS_NAMES)
_TEST_ID_OFFSET = 10 ** 6
_MAX_ATTEMPTS = 40


@dataclasses.dataclass(frozen=True)
class CanvasSpec:
    """How canvases are drawn.

    Attributes:
      canvas_size: side ``S`` of the square canvas in pixels.
      min_objects, max_objects: garments per canvas (uniform in the closed range);
        ``max_objects`` is also the padded length ``M`` of the label arrays.
      min_garment_size, max_garment_size: side ``s`` of the resized 28x28 garment image;
        0 = ``S // 4`` and ``S // 2``.
      max_mask_overlap: largest fraction of an earlier garment's mask a later one may cover.
      mask_threshold: garment intensity (in [0, 1], after resizing) above which a pixel is in
        the mask.
      tint: colour garments with a random hue (saturation 0.5..1, value 0.7..1); else white.
      background_max: the background grey level is uniform in ``[0, background_max]``.
      noise_std: std of the Gaussian pixel noise added to the whole canvas (in [0, 1] units).
      min_visible_pixels: a garment whose visible mask is smaller than this is not placed.
    """

    canvas_size: int = 64
    min_objects: int = 1
    max_objects: int = 3
    min_garment_size: int = 0
    max_garment_size: int = 0
    max_mask_overlap: float = 0.0
    mask_threshold: float = 0.2
    tint: bool = True
    background_max: float = 0.25
    noise_std: float = 0.02
    min_visible_pixels: int = 16

    def resolved(self) -> "CanvasSpec":
        """The spec with the size defaults filled in, validated."""
        s = int(self.canvas_size)
        lo = int(self.min_garment_size) or max(8, s // 4)
        hi = int(self.max_garment_size) or max(lo, s // 2)
        spec = dataclasses.replace(self, canvas_size=s, min_garment_size=lo, max_garment_size=hi)
        if s < 8:
            raise ValueError(f"canvas_size must be >= 8, got {s}")
        if not 1 <= spec.min_objects <= spec.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {spec.min_objects}, {spec.max_objects}")
        if not 1 <= lo <= hi <= s:
            raise ValueError(f"need 1 <= min_garment_size <= max_garment_size <= canvas_size, got {lo}, {hi}, {s}")
        if not 0.0 <= spec.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in [0, 1), got {spec.mask_threshold}")
        if not 0.0 <= spec.max_mask_overlap <= 1.0:
            raise ValueError(f"max_mask_overlap must be in [0, 1], got {spec.max_mask_overlap}")
        return spec


class CanvasArrays(NamedTuple):
    """A generated split (see the module docstring for the fields); ``N`` canvases."""

    images: np.ndarray          # uint8 [N, S, S, 3]
    boxes: np.ndarray           # float32 [N, M, 4]
    classes: np.ndarray         # int32 [N, M]
    num_objects: np.ndarray     # int32 [N]
    instance_masks: np.ndarray  # uint8 [N, M, S, S]
    semantic_masks: np.ndarray  # uint8 [N, S, S]
    source_ids: np.ndarray      # int64 [N]
    garment_index: np.ndarray   # int32 [N, M]

    def as_dict(self) -> Dict[str, np.ndarray]:
        return {
            "image": self.images, "boxes": self.boxes, "classes": self.classes,
            "num_objects": self.num_objects, "instance_masks": self.instance_masks,
            "semantic_mask": self.semantic_masks, "source_id": self.source_ids,
            "garment_index": self.garment_index,
        }


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """float32 ``[K, 4]`` ``(ymin, xmin, ymax, xmax)`` of binary ``[K, H, W]`` masks (exclusive max).

    An empty mask gives ``(-1, -1, -1, -1)``.
    """
    masks = np.asarray(masks).astype(bool)
    out = np.full((masks.shape[0], 4), -1.0, dtype=np.float32)
    for k, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if rows.size:
            out[k] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return out


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(split.encode()), int(index)])))


_RESIZE_CACHE: Dict[tuple, np.ndarray] = {}


def _resize_matrix(size: int) -> np.ndarray:
    m = _RESIZE_CACHE.get((28, size))
    if m is None:
        m = _RESIZE_CACHE[(28, size)] = bilinear_resize_matrix(28, size)
    return m


def _resized(garment: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[h, w]`` garment -> float64 ``[size, size]`` intensities in [0, 1]."""
    h, w = garment.shape
    my = _resize_matrix(size) if h == 28 else bilinear_resize_matrix(h, size)
    mx = _resize_matrix(size) if w == 28 else bilinear_resize_matrix(w, size)
    return np.clip(my @ (garment.astype(np.float64) / 255.0) @ mx.T, 0.0, 1.0)


def generate_canvas(index: int, garments: np.ndarray, labels: np.ndarray, spec: CanvasSpec,
                    seed: int = 0, split: str = "train") -> Dict[str, np.ndarray]:
    """One canvas (a dict with the fields of the module docstring, unbatched).

    Args:
      index: canvas index within the split (selects its random stream).
      garments: uint8 ``[G, 28, 28]`` garment images; labels: int ``[G]`` their classes.
      spec: a :class:`CanvasSpec` (resolved here).
      seed, split: the other parts of the random stream's key.
    """
    spec = spec.resolved()
    rng = _rng(seed, split, index)
    s, m_max = spec.canvas_size, spec.max_objects
    n_wanted = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    background = rng.uniform(0.0, spec.background_max)
    canvas = np.full((s, s, 3), background, dtype=np.float64)

    placed_alpha, placed_colour, placed_class, placed_garment = [], [], [], []
    full_masks, visible = [], []  # visible[k]: garment k's mask minus every later garment's
    for _ in range(n_wanted):
        for _attempt in range(_MAX_ATTEMPTS):
            g_idx = int(rng.integers(0, len(garments)))
            size = int(rng.integers(spec.min_garment_size, spec.max_garment_size + 1))
            y0, x0 = (int(v) for v in rng.integers(0, s - size + 1, size=2))
            hue, sat, val = rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.7, 1.0)
            alpha = np.zeros((s, s), dtype=np.float64)
            alpha[y0:y0 + size, x0:x0 + size] = _resized(garments[g_idx], size)
            mask = alpha > spec.mask_threshold
            if int(mask.sum()) < spec.min_visible_pixels:
                continue
            # The new garment covers parts of the earlier ones: each must keep enough.
            new_visible = [v & ~mask for v in visible]
            if not all(int(full.sum() - nv.sum()) <= spec.max_mask_overlap * full.sum()
                       and int(nv.sum()) >= spec.min_visible_pixels
                       for full, nv in zip(full_masks, new_visible)):
                continue
            visible = new_visible + [mask]
            full_masks.append(mask)
            placed_alpha.append(alpha)
            placed_colour.append(np.array(colorsys.hsv_to_rgb(hue, sat, val) if spec.tint
                                          else (1.0, 1.0, 1.0)))
            placed_class.append(int(labels[g_idx]))
            placed_garment.append(g_idx)
            break

    for alpha, colour in zip(placed_alpha, placed_colour):
        canvas = canvas * (1.0 - alpha[..., None]) + alpha[..., None] * colour
    if spec.noise_std > 0:
        canvas = canvas + rng.normal(0.0, spec.noise_std, size=canvas.shape)
    image = np.clip(np.floor(canvas * 255.0 + 0.5), 0, 255).astype(np.uint8)

    n = len(visible)
    instance = np.zeros((m_max, s, s), dtype=np.uint8)
    classes = np.full((m_max,), -1, dtype=np.int32)
    garment_index = np.full((m_max,), -1, dtype=np.int32)
    semantic = np.zeros((s, s), dtype=np.uint8)
    for k in range(n):
        instance[k] = visible[k]
        classes[k] = placed_class[k]
        garment_index[k] = placed_garment[k]
        semantic[visible[k]] = placed_class[k] + 1
    boxes = np.full((m_max, 4), -1.0, dtype=np.float32)
    if n:
        boxes[:n] = masks_to_boxes(instance[:n])
    source_id = index + 1 + (_TEST_ID_OFFSET if split == "test" else 0)
    return {"image": image, "boxes": boxes, "classes": classes, "num_objects": np.int32(n),
            "instance_masks": instance, "semantic_mask": semantic, "source_id": np.int64(source_id),
            "garment_index": garment_index}


def generate_canvases(
    num_canvases: int,
    split: str = "train",
    spec: Optional[CanvasSpec] = None,
    seed: int = 0,
    data_dir: Union[str, os.PathLike] = DEFAULT_DATA_DIR,
    *,
    garments: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    allow_download: bool = False,
    start: int = 0,
) -> CanvasArrays:
    """Canvases ``start .. start + num_canvases - 1`` of ``split`` as numpy arrays.

    Garments come from the Fashion-MNIST ``split`` in ``data_dir`` (train canvases use only train
    garments, test canvases only test garments), or from ``garments``/``labels`` when given.
    ``allow_download`` is passed to :func:`hac_tf.data.load_fashion_mnist_arrays` (TFDS fallback).
    """
    spec = (spec or CanvasSpec()).resolved()
    if garments is None:
        arrays = load_fashion_mnist_arrays(split, data_dir, allow_download=allow_download)
        garments, labels = arrays.images, arrays.labels
    garments = np.asarray(garments)
    labels = np.asarray(labels)
    if garments.ndim == 4:
        garments = garments[..., 0]
    if garments.ndim != 3 or len(garments) == 0 or len(garments) != len(labels):
        raise ValueError(f"garments must be a non-empty [G, H, W] array with G labels, got "
                         f"{garments.shape} and {labels.shape}")
    items = [generate_canvas(i, garments, labels, spec, seed, split)
             for i in range(start, start + int(num_canvases))]
    s, m = spec.canvas_size, spec.max_objects

    def stack(key, shape, dtype):
        if not items:
            return np.zeros((0, *shape), dtype=dtype)
        return np.stack([it[key] for it in items]).astype(dtype, copy=False)

    return CanvasArrays(
        images=stack("image", (s, s, 3), np.uint8),
        boxes=stack("boxes", (m, 4), np.float32),
        classes=stack("classes", (m,), np.int32),
        num_objects=stack("num_objects", (), np.int32),
        instance_masks=stack("instance_masks", (m, s, s), np.uint8),
        semantic_masks=stack("semantic_mask", (s, s), np.uint8),
        source_ids=stack("source_id", (), np.int64),
        garment_index=stack("garment_index", (m,), np.int32),
    )


def canvas_dataset(
    num_canvases: int,
    split: str = "train",
    spec: Optional[CanvasSpec] = None,
    seed: int = 0,
    data_dir: Union[str, os.PathLike] = DEFAULT_DATA_DIR,
    *,
    shuffle: bool = False,
    shuffle_seed: Optional[int] = None,
    keys: Optional[Sequence[str]] = None,
    allow_download: bool = False,
):
    """The canvases as a ``tf.data.Dataset`` of dicts (unbatched; fields as in the module doc).

    ``keys`` selects fields (default: all). ``shuffle`` reshuffles the whole split each epoch,
    deterministically for a given ``shuffle_seed`` (default ``seed``). Every element has static
    shapes, so the dataset batches directly.
    """
    import tensorflow as tf

    arrays = generate_canvases(num_canvases, split, spec, seed, data_dir, allow_download=allow_download)
    data = arrays.as_dict()
    if keys is not None:
        unknown = sorted(set(keys) - set(data))
        if unknown:
            raise ValueError(f"unknown canvas keys {unknown}; available: {sorted(data)}")
        data = {k: data[k] for k in keys}
    ds = tf.data.Dataset.from_tensor_slices(data)
    if shuffle and num_canvases > 1:
        ds = ds.shuffle(int(num_canvases), seed=seed if shuffle_seed is None else shuffle_seed,
                        reshuffle_each_iteration=True)
    return ds
