"""View policies: how a batch of source images becomes the per-level view pairs.

A policy is called on a uint8 batch [B,H,W,3] and returns the level dict

    {"level_1": {"view_a": float32 [B,S,S,3] in [0,1], "view_b": ...,
                 "params_a": recorded-parameter dict, "params_b": ...},
     "level_2": {...}, ...}

usable directly as (part of) a ``tf.data`` element.

All 2L views of all L levels are produced in ONE pass of the recording layers over a batch of
2L*B rows: every layer runs once per call, and which groups may fire at which level is a
per-row mask (``enabled``), with per-row probability/strength overrides for the
hierarchical-strength ablation. The crop reads straight from the B source images
(``source_index``), so the sources are never copied 2L times.

Sources of any size arrive as canvases of the resolution stage (hac_tf/data/resolution.py) with
``extents`` int32 [B,2]: each crop is drawn inside its image's valid (h, w) region, and the
recorded ``crop`` (y0, x0, y1, x1) is in fractions of that region -- of the original image, not
of the canvas. Crops that shrink by 2x or more are cut from a mip atlas of the sources
(antialiased, hac_tf/augment/geometric.py); fixed-size sources below twice the view size take
the plain bilinear path.

Augmentation groups (names used in configs):
  crop_jitter  random resized crop + colour jitter (p=0.8)
  crop         random resized crop alone
  jitter       colour jitter alone (p=0.8)
  jitter_grayscale
               colour jitter (p=0.8) + random grayscale (p=0.2): all colour ops as one group,
               e.g. last in the colour-late order [crop, flip, blur, jitter_grayscale]. A level
               with crop and jitter draws exactly the views of crop_jitter (the same layers and
               random draws; which groups are on only sets the per-row masks).
  grayscale    random grayscale (p=0.2)
  blur         Gaussian blur (p=0.5; the paper code uses p=0 at S <= 32)
  flip         horizontal flip (p=0.5)
  rotation     rotation by k*90 degrees (p=0.5; not in the released code)
  solarize     solarize (p=0.2; BYOL's asymmetric augmentation)
  viewmaker    learned views (hac_tf.plugins.viewmaker): no data-side op; marks the levels whose
               views the model passes through the Viewmaker generator (after this level's other
               groups). In an add-one order it must be the last group.
The pipeline order is fixed: crop -> flip -> jitter -> grayscale -> blur -> solarize -> rotation
(the flip is done by the crop itself, sampling the flipped rows from right to left).
Flip commutes with the colour ops and the (symmetric) blur, and grayscale commutes with blur,
so this order yields the same distribution as the code's per-level orders (docs/METHODS.md#hierarchy-deviations; L4's
two independent p=0.5 flips are one p=0.5 flip).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from hac_tf.augment.base import RecordingAugmentation
from hac_tf.augment.blur import RecordingGaussianBlur, default_kernel_size
from hac_tf.augment.colour import RecordingColorJitter, RecordingRandomGrayscale, RecordingRandomSolarize
from hac_tf.augment.geometric import (
    RecordingRandomFlip,
    RecordingRandomResizedCrop,
    RecordingRandomRotation90,
    atlas_boxes,
    build_mip_atlas,
    crop_atlas,
    crop_boxes,
    crop_layout,
    crop_padded,
    pad_for_crop,
    regions_in_pixels,
)
from hac_tf.augment.geometric import MipLayout
from hac_tf.augment.params import identity_params

GROUPS: Tuple[str, ...] = ("crop_jitter", "grayscale", "blur", "flip", "rotation", "solarize", "viewmaker", "crop",
                           "jitter", "jitter_grayscale")
#: groups that turn on the crop / the colour jitter / the random grayscale
CROP_GROUPS: Tuple[str, ...] = ("crop_jitter", "crop")
JITTER_GROUPS: Tuple[str, ...] = ("crop_jitter", "jitter", "jitter_grayscale")
GRAYSCALE_GROUPS: Tuple[str, ...] = ("grayscale", "jitter_grayscale")
#: add-one order with every colour op at the last level (issue 17: colour invariance only deepest)
COLOUR_LATE_ORDER: Tuple[str, ...] = ("crop", "flip", "blur", "jitter_grayscale")
#: groups applied by the model rather than by the data pipeline
MODEL_GROUPS: Tuple[str, ...] = ("viewmaker",)
#: the paper code's add-one order (docs/METHODS.md#add-one-views)
DEFAULT_ORDER: Tuple[str, ...] = ("crop_jitter", "grayscale", "blur", "flip")
#: the classical SimCLR/SimSiam pipeline
CLASSICAL_GROUPS: Tuple[str, ...] = ("crop_jitter", "grayscale", "blur", "flip")
#: Size of the row chunks the crop and the later ops run on together (float32 view bytes).
#: Each op reads and writes every view; on a whole 96-224 px batch (60-300 MB) that traffic
#: goes to DRAM, while a 4 MiB chunk stays in this CPU's cache (1 MiB L2 per core, 32 MiB L3)
#: from its crop to its last op. 4 MiB was the fastest of a chunk-size sweep at 96 and 224 px
#: (1, 2 and 8 MiB were slower; no change at 32 px); the figures are in docs/PERFORMANCE.md,
#: optimisation 6.
DEFAULT_CHUNK_BYTES: int = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class AugmentationSettings:
    """Strengths of the classical pipeline (the strongest level).

    ``blur_probability=None`` follows the paper code: 0.5, or 0 when image_size <= 32.
    ``blur_kernel_size=None`` uses image_size // 20 * 2 + 1.
    """

    image_size: int = 32
    crop_scale: Tuple[float, float] = (0.2, 1.0)
    crop_ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    jitter_strength: Tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: Optional[float] = None
    blur_sigma: Tuple[float, float] = (0.1, 2.0)
    blur_kernel_size: Optional[int] = None
    flip_probability: float = 0.5
    rotation_probability: float = 0.5
    solarize_probability: float = 0.2

    def resolved_blur_probability(self) -> float:
        if self.blur_probability is not None:
            return float(self.blur_probability)
        return 0.0 if self.image_size <= 32 else 0.5

    def resolved_kernel_size(self) -> int:
        k = self.blur_kernel_size or default_kernel_size(self.image_size)
        return max(1, min(int(k), 2 * (self.image_size // 2) - 1))


@dataclasses.dataclass(frozen=True)
class LevelSpec:
    """What one level's two views get: enabled groups and strength offsets.

    ``strength_delta`` d weakens every enabled augmentation (hierarchical-strength ablation):
    probabilities of flip/grayscale/blur -0.05 d, jitter strengths -0.02 d, crop min-scale +0.1 d.
    """

    groups: Tuple[str, ...]
    strength_delta: int = 0


class ViewPolicy:
    """Base class: produces the level dict for a list of ``LevelSpec``.

    Args:
      levels: one LevelSpec per level (level 1 first).
      settings: the classical strengths.
      seed: seed of the fallback generator when ``__call__`` gets no stateless seed.
      jit_compile: XLA-compile the ops after the crop (off: measured slower on CPU).
      chunk_bytes: the views are produced in chunks of this many float32 bytes (at least one
        row each); ``None`` or 0 makes the whole batch one chunk. Chunking does not change the
        views: every op is per row and all random draws are made for the whole batch first.
    """

    def __init__(self, levels: Sequence[LevelSpec], settings: AugmentationSettings = AugmentationSettings(),
                 seed: Optional[int] = None, jit_compile: bool = False,
                 chunk_bytes: Optional[int] = DEFAULT_CHUNK_BYTES):
        if not levels:
            raise ValueError("a view policy needs at least one level")
        for spec in levels:
            unknown = [g for g in spec.groups if g not in GROUPS]
            if unknown:
                raise ValueError(f"unknown augmentation group(s) {unknown}; allowed: {list(GROUPS)}")
        self.levels = list(levels)
        self.settings = settings
        self.seed = seed
        s = settings
        # The layers always get a stateless seed from __call__; their own generator is never used,
        # so give them a fixed one (None would touch TF's global generator, which op determinism forbids).
        seed_arg = seed
        seed = 0 if seed is None else seed
        self._crop = RecordingRandomResizedCrop(s.image_size, s.crop_scale, s.crop_ratio, seed=seed)
        self._flip = RecordingRandomFlip(s.flip_probability, seed=seed)
        self._jitter = RecordingColorJitter(*s.jitter_strength, probability=s.jitter_probability, seed=seed)
        self._gray = RecordingRandomGrayscale(s.grayscale_probability, seed=seed)
        self._blur = RecordingGaussianBlur(
            s.resolved_kernel_size(), s.blur_sigma, s.resolved_blur_probability(), seed=seed
        )
        self._solarize = RecordingRandomSolarize(s.solarize_probability, seed=seed)
        self._rotation = RecordingRandomRotation90(s.rotation_probability, seed=seed)
        self._generator = tf.random.Generator.from_seed(seed_arg) if seed_arg is not None else None
        # Optionally XLA-compile everything after the crop (XLA has no CropAndResize kernel).
        # Off by default: measured slower on CPU (flip/grayscale/depthwise blur lose more under
        # XLA than the colour ops gain); the hue rotation alone is always compiled (colour.py).
        self.jit_compile = bool(jit_compile)
        self._after_crop = tf.function(self._after_crop_impl, jit_compile=self.jit_compile, autograph=False)
        if chunk_bytes is not None and int(chunk_bytes) < 0:
            raise ValueError(f"chunk_bytes must be >= 0 (0 or None: no chunking), got {chunk_bytes}")
        self.chunk_bytes = int(chunk_bytes or 0)

    def chunk_rows(self) -> Optional[int]:
        """Rows per chunk (None: the whole batch), from ``chunk_bytes`` and the view size."""
        if not self.chunk_bytes:
            return None
        row_bytes = self.settings.image_size ** 2 * 3 * 4
        return max(1, self.chunk_bytes // row_bytes)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def level_names(self) -> List[str]:
        return [f"level_{k + 1}" for k in range(self.num_levels)]

    def levels_with_group(self, group: str) -> Tuple[int, ...]:
        """0-based indices of the levels whose groups include ``group``."""
        return tuple(k for k, spec in enumerate(self.levels) if group in spec.groups)

    def groups_used(self) -> Tuple[str, ...]:
        used = []
        for spec in self.levels:
            used += [g for g in spec.groups if g not in used]
        return tuple(used)

    # ------------------------------------------------------------------ per-row settings
    def _row_settings(self, batch_size: tf.Tensor) -> Dict[str, Dict[str, tf.Tensor]]:
        """Per-row (2L*B) enabled masks, probabilities and magnitudes for every layer."""
        s = self.settings
        cols: Dict[str, Dict[str, list]] = {}

        def add(layer: str, key: str, value: float | Sequence[float]) -> None:
            cols.setdefault(layer, {}).setdefault(key, []).append(value)

        for spec in self.levels:
            d = float(spec.strength_delta)
            on = set(spec.groups)
            add("crop", "enabled", bool(on.intersection(CROP_GROUPS)))
            add("crop", "magnitude", min(s.crop_scale[0] + 0.1 * d, s.crop_scale[1]))
            add("jitter", "enabled", bool(on.intersection(JITTER_GROUPS)))
            add("jitter", "magnitude", [max(v - 0.02 * d, 0.0) for v in s.jitter_strength])
            add("gray", "enabled", bool(on.intersection(GRAYSCALE_GROUPS)))
            add("gray", "probability", max(s.grayscale_probability - 0.05 * d, 0.0))
            add("blur", "enabled", "blur" in on)
            add("blur", "probability", max(s.resolved_blur_probability() - 0.05 * d, 0.0))
            add("flip", "enabled", "flip" in on)
            add("flip", "probability", max(s.flip_probability - 0.05 * d, 0.0))
            add("rotation", "enabled", "rotation" in on)
            add("solarize", "enabled", "solarize" in on)

        out: Dict[str, Dict[str, tf.Tensor]] = {}
        for layer, entries in cols.items():
            out[layer] = {}
            for key, values in entries.items():
                per_level = tf.constant(values, tf.bool if key == "enabled" else tf.float32)
                # each level has 2 views of B rows: repeat level-wise (2B rows per level)
                out[layer][key] = tf.repeat(per_level, 2 * batch_size, axis=0)
        return out

    def _after_crop_steps(self) -> List[Tuple[str, RecordingAugmentation]]:
        """(row-settings key, layer) of the ops after the crop, in pipeline order.

        The flip happens inside the crop. A layer that can never fire is left out (e.g. blur
        at <= 32 px).
        """
        used = set(self.groups_used())
        steps = [("jitter", self._jitter, JITTER_GROUPS), ("gray", self._gray, GRAYSCALE_GROUPS),
                 ("blur", self._blur, ("blur",)), ("solarize", self._solarize, ("solarize",)),
                 ("rotation", self._rotation, ("rotation",))]
        return [(key, layer) for key, layer, groups in steps
                if used.intersection(groups) and layer.probability > 0.0]

    def _after_crop_impl(self, images: tf.Tensor, transformations: List[Dict[str, tf.Tensor]]) -> tf.Tensor:
        """Applies the after-crop ops to a chunk of views [n,S,S,3] with its transformation rows."""
        for (_, layer), transformation in zip(self._after_crop_steps(), transformations):
            images = layer.apply(images, transformation)
        return images

    def _make_views(self, sources: tf.Tensor, crop: Dict[str, tf.Tensor],
                    transformations: List[Dict[str, tf.Tensor]], layout: Optional[MipLayout] = None) -> tf.Tensor:
        """All N = 2L*B views [N,S,S,3], produced chunk by chunk (crop, then the later ops).

        Args:
          sources: float32 [B,H,W,3]; with a ``layout``, uint8 or float32 [B,H,W,3].
          crop: {"boxes": [N,4] boxes in the edge-padded sources (with a ``layout``: in their mip
            atlas), "source_index": int32 [N]}.
          transformations: one dict of [N,...] tensors per after-crop step.
          layout: None, or the mip-atlas layout the views are cut from (antialiased crops).
        """
        size = self.settings.image_size
        padded = pad_for_crop(sources) if layout is None else build_mip_atlas(sources, layout)
        cut = crop_padded if layout is None else crop_atlas
        num_rows = tf.shape(crop["boxes"])[0]

        def rows(chunk: Tuple[Dict[str, tf.Tensor], List[Dict[str, tf.Tensor]]]) -> tf.Tensor:
            views = cut(padded, chunk[0]["boxes"], chunk[0]["source_index"], size)
            return self._after_crop(views, chunk[1])

        chunk = self.chunk_rows()
        if chunk is None:
            return rows((crop, transformations))
        num_chunks = (num_rows + chunk - 1) // chunk
        order = self.chunk_order(transformations)
        if order is None:
            order = tf.range(num_rows)
        # one element per row, each view written back to its own position
        views = tf.TensorArray(tf.float32, size=num_rows, element_shape=[size, size, 3])

        def body(i: tf.Tensor, views: tf.TensorArray):
            start = i * chunk
            index = order[start:tf.minimum(start + chunk, num_rows)]
            out = rows(tf.nest.map_structure(lambda t: tf.gather(t, index), (crop, transformations)))
            return i + 1, views.scatter(index, out)

        # two chunks in flight, one per core
        _, views = tf.while_loop(lambda i, _: i < num_chunks, body, [tf.constant(0), views], parallel_iterations=2)
        return tf.ensure_shape(views.stack(), [None, size, size, 3])

    def chunk_order(self, transformations: List[Dict[str, tf.Tensor]]) -> Optional[tf.Tensor]:
        """The order in which the chunks take the rows: int32 [N], or None for 0..N-1.

        Rows are sorted (stably) by the after-crop layers' ``row_group`` (fires or not; for the
        jitter also the position of its hue rotation), so that most chunks are uniform: a layer
        that fires on no row of a chunk is skipped, one that fires on all of them runs without
        gather/scatter, and the jitter runs 3 of its 6 affine slots. The views are written back
        to their own rows: the order changes no output.
        """
        groups = [layer.row_group(transformation)
                  for (_, layer), transformation in zip(self._after_crop_steps(), transformations)]
        groups = [g for g in groups if g is not None]
        if not groups:
            return None
        key, radix = groups[0][0], groups[0][1]  # mixed-radix key: one digit per layer
        for group, num_groups in groups[1:]:
            key, radix = key + group * radix, radix * num_groups
        return tf.argsort(key, stable=True)

    # ------------------------------------------------------------------ call
    def __call__(self, images: tf.Tensor, seed: Optional[tf.Tensor] = None,
                 extents: Optional[tf.Tensor] = None) -> Dict[str, Dict[str, tf.Tensor]]:
        """uint8 [B,H,W,3] (or float in [0,1]) -> level dict (see module docstring).

        ``extents``: optional int32 [B,2], the valid (h, w) of each image, which then is a canvas
        of the resolution stage (hac_tf/data/resolution.py): the image in its top-left h x w
        pixels, edge-replicated beyond. None = every image is valid in full. The crops are drawn
        and recorded relative to the valid regions (see RecordingRandomResizedCrop). Sources of
        2x the view size or more (and all canvases) are cropped from a mip atlas (antialiased,
        hac_tf/augment/geometric.py); smaller fixed-size sources take the plain bilinear path.
        """
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4 or (images.shape[-1] is not None and images.shape[-1] != 3):
            raise ValueError(f"view policy expects a batch of RGB images [B,H,W,3], got shape {images.shape}")
        if extents is not None:
            extents = tf.ensure_shape(tf.cast(extents, tf.int32), [images.shape[0], 2])
        layout = crop_layout(images, self.settings.image_size, extents)
        if images.dtype == tf.uint8:
            if layout is None:  # the atlas path crops the uint8 sources (a quarter of the memory)
                images = tf.image.convert_image_dtype(images, tf.float32)
        elif images.dtype.is_floating:
            images = tf.cast(images, tf.float32)
        else:
            raise ValueError(f"view policy expects uint8 or float images, got {images.dtype.name}")
        if seed is None:
            if self._generator is None:
                seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
            else:
                seed = self._generator.make_seeds(1)[:, 0]
        seed = tf.cast(tf.reshape(seed, [2]), tf.int64)

        batch_size = tf.shape(images)[0]
        num_views = 2 * self.num_levels
        num_rows = batch_size * num_views
        rows = self._row_settings(batch_size)
        # Every random draw is made for the whole batch first (the same draws as running each
        # layer on the whole batch), then the views are produced chunk by chunk.
        # The flip runs right after the crop; its draws are handed to the crop, which samples the
        # flipped rows right to left: no separate gather/scatter over the views.
        flip = None
        if "flip" in self.groups_used() and self._flip.probability > 0.0:
            flip = self._flip.get_random_transformation_batch(num_rows, seed=seed, **rows["flip"])
        row_extents = None if extents is None else tf.tile(extents, [num_views, 1])  # row r: source r % B
        crop = self._crop.get_random_transformation_batch(num_rows, images=images, seed=seed, extents=row_extents,
                                                          **rows["crop"])
        steps = self._after_crop_steps()
        transformations = [layer.get_random_transformation_batch(num_rows, seed=seed, **rows[key])
                           for key, layer in steps]

        params = self._crop.record(identity_params(num_rows), crop)
        if flip is not None:
            params = self._flip.record(params, flip)
        for (_, layer), transformation in zip(steps, transformations):
            params = layer.record(params, transformation)

        mirror = None if flip is None else flip["fire"]
        if layout is None:
            shape = tf.shape(images)
            boxes = crop_boxes(crop["region"], shape[1], shape[2], self.settings.image_size, mirror)
        else:
            if row_extents is None:
                row_extents = tf.tile(tf.constant([layout.level_shapes[0]], tf.int32), [num_rows, 1])
            boxes = atlas_boxes(regions_in_pixels(crop["region"], row_extents), layout, self.settings.image_size,
                                mirror)
        source_index = tf.tile(tf.range(batch_size), [num_views])
        views = self._make_views(images, {"boxes": boxes, "source_index": source_index}, transformations, layout)

        views = tf.split(views, num_views, axis=0)
        params = {k: tf.split(v, num_views, axis=0) for k, v in params.items()}
        result = {}
        for level in range(self.num_levels):
            a, b = 2 * level, 2 * level + 1
            result[f"level_{level + 1}"] = {
                "view_a": views[a],
                "view_b": views[b],
                "params_a": {k: v[a] for k, v in params.items()},
                "params_b": {k: v[b] for k, v in params.items()},
            }
        return result


class AddOneViews(ViewPolicy):
    """The paper's add-one views: pair k applies the first k groups of ``order``."""

    def __init__(self, order: Sequence[str] = DEFAULT_ORDER, settings: AugmentationSettings = AugmentationSettings(),
                 num_levels: Optional[int] = None, seed: Optional[int] = None, jit_compile: bool = False,
                 chunk_bytes: Optional[int] = DEFAULT_CHUNK_BYTES):
        order = tuple(order)
        if len(set(order)) != len(order):
            raise ValueError(f"add-one order repeats a group: {order}")
        for crop_group in CROP_GROUPS:
            if crop_group in order and order[0] != crop_group:
                raise ValueError(f"'{crop_group}' must be the first add-one group (it sets the view size); "
                                 f"got {order}")
        if "viewmaker" in order and order[-1] != "viewmaker":
            raise ValueError(f"'viewmaker' must be the last add-one group (learned views as the last level); "
                             f"got {order}")
        n = len(order) if num_levels is None else int(num_levels)
        if not 1 <= n <= len(order):
            raise ValueError(f"num_levels must be in [1, {len(order)}], got {num_levels}")
        self.order = order
        super().__init__([LevelSpec(order[: k + 1]) for k in range(n)], settings, seed, jit_compile, chunk_bytes)


class UniformViews(ViewPolicy):
    """Ablation 'Uniform': every level gets the full classical pipeline."""

    def __init__(self, num_levels: int = 4, groups: Sequence[str] = CLASSICAL_GROUPS,
                 settings: AugmentationSettings = AugmentationSettings(), seed: Optional[int] = None,
                 jit_compile: bool = False, chunk_bytes: Optional[int] = DEFAULT_CHUNK_BYTES):
        super().__init__([LevelSpec(tuple(groups)) for _ in range(int(num_levels))], settings, seed, jit_compile,
                         chunk_bytes)


class HierarchicalStrengthViews(ViewPolicy):
    """Ablation 'Hierarchical strength': all groups at every level, weaker at shallower levels.

    Level k of L is weakened by d = L - k steps (see LevelSpec): the last level is classical.
    """

    def __init__(self, num_levels: int = 4, groups: Sequence[str] = CLASSICAL_GROUPS,
                 settings: AugmentationSettings = AugmentationSettings(), seed: Optional[int] = None,
                 jit_compile: bool = False, chunk_bytes: Optional[int] = DEFAULT_CHUNK_BYTES):
        n = int(num_levels)
        super().__init__([LevelSpec(tuple(groups), n - 1 - k) for k in range(n)], settings, seed, jit_compile,
                         chunk_bytes)


class TwoViews(ViewPolicy):
    """The classical baseline: one level, two views of the full pipeline."""

    def __init__(self, groups: Sequence[str] = CLASSICAL_GROUPS,
                 settings: AugmentationSettings = AugmentationSettings(), seed: Optional[int] = None,
                 jit_compile: bool = False, chunk_bytes: Optional[int] = DEFAULT_CHUNK_BYTES):
        super().__init__([LevelSpec(tuple(groups))], settings, seed, jit_compile, chunk_bytes)


POLICIES = {"add_one": AddOneViews, "uniform": UniformViews, "strength": HierarchicalStrengthViews,
            "two_view": TwoViews}


def build_policy(name: str, **kwargs) -> ViewPolicy:
    """Builds a policy by config name: add_one | uniform | strength | two_view."""
    if name not in POLICIES:
        raise ValueError(f"unknown view policy {name!r}; allowed: {sorted(POLICIES)}")
    return POLICIES[name](**kwargs)
