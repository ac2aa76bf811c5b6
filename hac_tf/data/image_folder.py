"""Image-folder source: class folders, split folders or unlabelled images, of any size.

Layouts (detected by `hac_tf.data.folder_layout.detect_layout`; rules and ambiguity errors are
listed in that module's docstring): ``root/<class>/**`` with hash splits, split folders
``root/{train, val|validation, test}/<class>/**``, and unlabelled images (``labels="none"``: every
file at any depth, elements carry an empty labels dict ``{}``). One info line per process names
the detected layout (and which folder the ``test`` split reads).

Robustness model: every candidate file is validated up front, in parallel (thread pool), with the
*same* Pillow decoder the pipeline uses (``Image.verify()`` followed by a full decode and RGB
conversion). Only files that decode make it into the dataset, so a bad file can never crash an
epoch. Every file that is not used (undecodable, truncated, empty, wrong extension, outside a
class folder) is reported in ONE absl warning naming each file with its reason, and is listed in
``info.skipped_files`` / ``info.skip_reasons``. A file is named once per process even when the
folder is scanned again (training, preview and evaluation each build their split). Pillow's
decompression-bomb guard (> 2 x ``Image.MAX_IMAGE_PIXELS``, about 179 MP) rejects larger images
before decoding, and they are skipped and reported like any bad file.

Decoding rules (`decode_image_file`): grayscale/bilevel/palette/CMYK/YCbCr -> RGB via Pillow;
16-bit grayscale scaled to 8 bits by ``round(v / 257)`` (so 8-bit data stored as 16-bit maps back
exactly); alpha (RGBA, LA, PA, palette or gray with a transparency key) composited over
``background`` (black by default): ``round((rgb * a + bg * (255 - a)) / 255)``; EXIF orientation
applied; animated GIFs give their first frame.

Sizes: the aspect ratio is kept. With ``max_side`` an image whose longer side exceeds it is
downscaled so that the longer side is ``max_side`` (shorter side rounded, >= 1); smaller images are
left alone. The resampler is Pillow's LANCZOS (``resize(..., reducing_gap=3.0)``): an antialiased
windowed-sinc filter, the sharpest of Pillow's filters without aliasing, and the down-scale happens
once per image so its cost does not matter; ``reducing_gap`` lets Pillow first shrink by an integer
factor with a box filter (``Image.reduce``), which keeps huge photos fast with no visible change.
JPEGs are additionally decoded at a reduced DCT scale (``Image.draft``, never below the target
size), so a 24 MP photo never needs its full-size bitmap. ``image_size`` instead gives fixed
``S x S`` squares (resize so the shorter side is ``S``, then a centred crop: `PIL.ImageOps.fit`),
for callers that batch source images directly (e.g. tools/show_views.py); the training and
evaluation pipelines use ``max_side`` and the resolution stage (hac_tf/data/resolution.py).

Memory: with ``cache=None`` the decoded arrays from the validation pass are kept and served from
memory (no second decode) when they take at most ``max_cache_bytes`` in total: one stacked array
when all images share one shape, else a ragged store (one flat uint8 buffer plus each image's
height and width). Otherwise images are decoded on the fly in the tf.data map through
``tf.numpy_function`` calling the same decoder, so the dataset never has to fit in memory.
``SourceInfo.image_shape`` (and the element spec) is ``(H, W, 3)`` when every image of the split
decodes to one size, else ``(None, None, 3)``.

Splits: ``split=None``/``"all"`` uses every file; with hash splits ``"train"``/``"test"`` assign
each file by a SHA-1 hash of its path relative to ``root`` (``test`` if the hash, as a fraction of
2**64, is below ``test_fraction``), so the assignment is stable when files are added or removed.
With split folders the folders decide (``test_fraction`` is unused).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image, ImageOps

from hac_tf.data import pipeline
from hac_tf.data.folder_layout import IMAGE_EXTENSIONS, LABELS_AUTO, FolderLayout, detect_layout, split_of
from hac_tf.data.info import SourceInfo

__all__ = [
    "IMAGE_EXTENSIONS",
    "decode_image_file",
    "split_of",
    "FolderScan",
    "scan_image_folder",
    "image_folder",
]

_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that transpose the image
#: The down-scaling filter (see the module docstring for why LANCZOS).
RESAMPLING = Image.Resampling.LANCZOS

RGB = tuple[int, int, int]


# ----------------------------------------------------------------------------- decoding


def _to_rgb_array(im: Image.Image, background: RGB) -> np.ndarray:
    mode = im.mode
    if mode == "I" or mode.startswith("I;16"):
        value = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        gray = ((value + 128) // 257).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        gray = np.clip(np.floor(np.asarray(im, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA")).astype(np.int32)
        alpha = rgba[..., 3:]
        bg = np.asarray(background, dtype=np.int32)
        return ((rgba[..., :3] * alpha + bg * (255 - alpha) + 127) // 255).astype(np.uint8)
    if mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the longer side is at most ``max_side`` (aspect kept, sides >= 1)."""
    longer = max(width, height)
    if longer <= max_side:
        return width, height
    scale = max_side / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_image_file(
    path: str | os.PathLike[str],
    image_size: int | None = None,
    background: RGB = (0, 0, 0),
    *,
    max_side: int | None = None,
) -> np.ndarray:
    """Decodes one image file with Pillow, keeping its aspect ratio (see the module docstring).

    Args:
      path: the file (format detected from content; the extension does not matter here).
      image_size: if given, a fixed ``[image_size, image_size]`` square: resized so the shorter
        side is ``image_size`` (LANCZOS), then centre-cropped (`PIL.ImageOps.fit`).
      background: RGB colour that transparent pixels are composited over.
      max_side: if given, images whose longer side exceeds it are downscaled (LANCZOS, aspect
        kept) so that the longer side is ``max_side``; smaller images are returned as they are.

    Returns:
      uint8 ``[H, W, 3]`` (``[image_size, image_size, 3]`` with ``image_size``; ``max(H, W) <=
      max_side`` with ``max_side``).

    Raises:
      ValueError: both ``image_size`` and ``max_side`` given, or one of them < 1.
      Whatever Pillow raises for unreadable data (``OSError``, ``UnidentifiedImageError``, ...).
    """
    if image_size is not None and max_side is not None:
        raise ValueError("decode_image_file takes image_size (fixed squares) or max_side (aspect kept), not both")
    for name, value in (("image_size", image_size), ("max_side", max_side)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    with Image.open(os.fspath(path)) as im:
        stored_w, stored_h = im.size
        if max_side is not None:
            target = fitted_size(stored_w, stored_h, max_side)
        elif image_size is not None:
            scale = image_size / min(stored_w, stored_h)
            target = (max(1, math.ceil(stored_w * scale)), max(1, math.ceil(stored_h * scale)))
        else:
            target = (stored_w, stored_h)
        if target[0] < stored_w and im.format == "JPEG":
            im.draft(im.mode, target)  # DCT-domain downscale; the result is never smaller than target
        im.load()
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
            if orientation in _SWAPS_SIDES:
                target = target[::-1]
        rgb = _to_rgb_array(im, background)
    if image_size is not None:
        if rgb.shape[:2] != (image_size, image_size):
            rgb = np.asarray(ImageOps.fit(Image.fromarray(rgb), (image_size, image_size), RESAMPLING), np.uint8)
    elif (rgb.shape[1], rgb.shape[0]) != target:
        rgb = np.asarray(Image.fromarray(rgb).resize(target, RESAMPLING, reducing_gap=3.0), dtype=np.uint8)
    return rgb


@dataclasses.dataclass(frozen=True)
class _Checked:
    """Outcome of validating one file: ``shape`` (H, W) and maybe the array, or a ``reason``."""

    image: np.ndarray | None = None
    shape: tuple[int, int] | None = None
    reason: str | None = None


def _validate(path: str, image_size: int | None, max_side: int | None, background: RGB, keep: bool) -> _Checked:
    """Decodes one candidate file (array kept iff ``keep``). Never raises: a bad file gives a ``reason``."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        return _Checked(reason=f"not an image file extension ({ext or 'none'})")
    try:
        if os.path.getsize(path) == 0:
            return _Checked(reason="empty file (0 bytes)")
        with Image.open(path) as im:
            im.verify()
        image = decode_image_file(path, image_size, background, max_side=max_side)
    except Exception as e:  # noqa: BLE001 - any failure means "skip and report"
        # Pillow often repeats the path in its message; the report names each file once.
        message = str(e).replace(repr(path), "(this file)").replace(path, "(this file)")
        return _Checked(reason=f"{type(e).__name__}: {message}")
    return _Checked(image if keep else None, (int(image.shape[0]), int(image.shape[1])))


# ----------------------------------------------------------------------------- scanning


@dataclasses.dataclass(frozen=True)
class FolderScan:
    """Result of the validation pass.

    Attributes:
      root: the absolute root directory.
      class_names: sorted class names; label id = position (``()`` when unlabelled).
      files: absolute paths of the good files of the split, in (class, path) order.
      labels: int32 ``[len(files)]`` (all -1 when unlabelled).
      images: the decoded arrays when kept (uint8 ``[len(files), H, W, 3]`` if all share one
        shape, else a list of uint8 ``[H_i, W_i, 3]``), or None.
      skip_reasons: ``{absolute path: reason}`` for every file not used.
      empty_classes: class names with no good file in the split.
      shapes: int32 ``[len(files), 2]``, each image's decoded (height, width).
      layout: the detected `FolderLayout`.
      split: the split that was read.
    """

    root: str
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    labels: np.ndarray
    images: np.ndarray | list[np.ndarray] | None
    skip_reasons: dict[str, str]
    empty_classes: tuple[str, ...]
    shapes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), np.int32))
    layout: FolderLayout | None = None
    split: str = "all"

    @property
    def labelled(self) -> bool:
        return self.layout is None or self.layout.labelled

    @property
    def image_shape(self) -> tuple[int | None, int | None, int]:
        """``(H, W, 3)`` when every image decodes to one size, else ``(None, None, 3)``."""
        if len(self.shapes) and (self.shapes == self.shapes[0]).all():
            return int(self.shapes[0, 0]), int(self.shapes[0, 1]), 3
        return None, None, 3


# Bad files already named in a warning by this process (one scan per split, eval re-scans):
# each is reported once. Keyed by (path, size, mtime) so a replaced file is reported again.
_REPORTED: set[tuple[str, int, float]] = set()


def forget_reported_files() -> None:
    """Makes the next scan report every bad file again (tests; long-lived processes)."""
    _REPORTED.clear()


def _file_identity(path: str) -> tuple[str, int, float]:
    try:
        st = os.stat(path)
        return path, st.st_size, st.st_mtime
    except OSError:
        return path, -1, -1.0


def _skip_message(root: str, skipped: dict[str, str], total: int) -> str:
    lines = [f"image_folder({root!r}): skipped {len(skipped)} of {total} files that are not decodable images:"]
    lines += [f"  {path}: {reason}" for path, reason in sorted(skipped.items())]
    return "\n".join(lines)


# Layout lines and layout warnings already logged by this process (one per root and message).
_ANNOUNCED: set[str] = set()


def _log_once(level: int, message: str) -> None:
    if message not in _ANNOUNCED:
        _ANNOUNCED.add(message)
        logging.log(level, "%s", message)


def scan_image_folder(
    root: str | os.PathLike[str],
    split: str | None = None,
    *,
    labels: str = LABELS_AUTO,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    max_side: int | None = None,
    keep_arrays_max_bytes: int | None = None,
    background: RGB = (0, 0, 0),
    num_workers: int | None = None,
    report: bool = True,
) -> FolderScan:
    """Detects the layout, lists, splits and validates the files of an image folder (module docstring).

    The decoded arrays are kept (``FolderScan.images``) iff they take at most
    ``keep_arrays_max_bytes`` in total (None: never keep).

    With ``report`` (default) logs the detected layout (info, once per process), one warning for
    all skipped files and one for empty class folders; ``report=False`` logs nothing (the caller
    reports from the returned scan, e.g. tools/prepare_data.py).

    Raises:
      FileNotFoundError: ``root`` is not a directory.
      ValueError: bad ``split``/``test_fraction``/``labels``/sizes; an ambiguous or unusable layout
        (`hac_tf.data.folder_layout.LayoutError`, naming the folder); no file of the split decodes.
    """
    split = "all" if split is None else split
    for name, value in (("image_size", image_size), ("max_side", max_side)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if image_size is not None and max_side is not None:
        raise ValueError("image_folder takes image_size (fixed squares) or max_side (aspect kept), not both")
    layout = detect_layout(root, labels)
    root = layout.root
    layout.check_split(split)
    if layout.hash_splits and split != "all" and not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1) for split {split!r}, got {test_fraction}")
    if report:
        _log_once(logging.INFO, layout.description)
        for warning in layout.warnings:
            _log_once(logging.WARNING, warning)
    candidates, skipped = layout.candidates(split, test_fraction)
    num_unused = len(skipped)

    workers = num_workers or min(32, (os.cpu_count() or 1) + 4)
    budget = -1 if keep_arrays_max_bytes is None else keep_arrays_max_bytes
    keeping = [budget >= 0]  # read by the workers: once over budget, later decodes drop their arrays
    files, label_ids, shapes, arrays = [], [], [], []
    kept_bytes = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda c: _validate(c[0], image_size, max_side, background, keeping[0]), candidates)
        for (path, label), checked in zip(candidates, results):
            if checked.reason is not None:
                skipped[path] = checked.reason
                continue
            files.append(path)
            label_ids.append(label)
            shapes.append(checked.shape)
            kept_bytes += checked.shape[0] * checked.shape[1] * 3
            if kept_bytes <= budget and checked.image is not None:
                arrays.append(checked.image)
            else:  # over the memory budget: stream instead, keep nothing
                keeping[0] = False
                arrays = []

    total = len(candidates) + num_unused
    if not files:
        detail = _skip_message(root, skipped, total) if skipped else "no files in this split"
        raise ValueError(f"image_folder root {root!r}, split {split!r}: no decodable image at all. {detail}")
    if skipped and report:
        new = {p: r for p, r in skipped.items() if _file_identity(p) not in _REPORTED}
        _REPORTED.update(_file_identity(p) for p in new)
        if new:
            logging.warning("%s", _skip_message(root, new, total))
        if len(new) < len(skipped):
            logging.info("image_folder(%r): %d bad file(s) skipped again (reported above)", root,
                         len(skipped) - len(new))
    class_names = layout.class_names
    present = set(label_ids)
    empty = tuple(name for i, name in enumerate(class_names) if i not in present)
    if empty and report:
        logging.warning("image_folder(%r), split %r: %d class folder(s) have no usable image and get no "
                        "examples (their label ids stay reserved): %s", root, split, len(empty), ", ".join(empty))
    shape_array = np.asarray(shapes, dtype=np.int32).reshape(-1, 2)
    images: np.ndarray | list[np.ndarray] | None = None
    if keeping[0]:
        images = np.stack(arrays) if (shape_array == shape_array[0]).all() else arrays
    return FolderScan(root, class_names, tuple(files), np.asarray(label_ids, dtype=np.int32), images, skipped,
                      empty, shape_array, layout, split)


# ----------------------------------------------------------------------------- dataset


def _decoding_dataset(files: Sequence[str], labels: Mapping[str, np.ndarray], shape: tuple[int | None, int | None, int],
                      decode_kwargs: dict, *, shuffle: bool, seed: int | None, cache: bool) -> tf.data.Dataset:
    """Paths decoded on the fly (``tf.numpy_function`` -> `decode_image_file`)."""
    def decode(path: bytes) -> np.ndarray:
        return decode_image_file(os.fsdecode(path), **decode_kwargs)

    def load(path: tf.Tensor, labels: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        image = tf.numpy_function(decode, [path], tf.uint8, stateful=False)
        if shape[0] is None:
            image.set_shape([None, None, 3])
        else:  # every image decoded to this size in the validation pass; a changed file fails loudly
            image = tf.ensure_shape(image, shape)
        return image, labels

    ds = tf.data.Dataset.from_tensor_slices((tf.constant([os.fsencode(f) for f in files], dtype=tf.string),
                                             dict(labels)))
    if shuffle and not cache:  # shuffle cheap paths before decoding
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=pipeline.AUTOTUNE)
    if cache:
        return pipeline.shuffle_and_prefetch(ds, shuffle=shuffle, seed=seed, buffer_size=len(files), cache=True)
    return ds.prefetch(pipeline.AUTOTUNE)


def _ragged_dataset(images: Sequence[np.ndarray], labels: Mapping[str, np.ndarray], *, shuffle: bool,
                    seed: int | None) -> tf.data.Dataset:
    """In-memory images of different sizes: one flat uint8 buffer, rows cut by length, reshaped to [H, W, 3]."""
    flat = np.concatenate([image.reshape(-1) for image in images])
    pixels = tf.RaggedTensor.from_row_lengths(flat, np.asarray([image.size for image in images], np.int64))
    shapes = np.asarray([image.shape[:2] for image in images], dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((pixels, shapes, dict(labels)))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def unflatten(row: tf.Tensor, hw: tf.Tensor, labels: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict]:
        return tf.reshape(row, tf.concat([hw, [3]], axis=0)), labels

    return ds.map(unflatten, num_parallel_calls=pipeline.AUTOTUNE).prefetch(pipeline.AUTOTUNE)


def image_folder(
    root: str | os.PathLike[str],
    split: str | None = None,
    image_size: int | None = None,
    *,
    max_side: int | None = None,
    labels: str = LABELS_AUTO,
    test_fraction: float = 0.2,
    shuffle: bool = False,
    seed: int | None = 0,
    cache: bool | None = None,
    max_cache_bytes: int = pipeline.DEFAULT_MAX_CACHE_BYTES,
    background: RGB = (0, 0, 0),
    num_workers: int | None = None,
    with_info: bool = False,
) -> tf.data.Dataset | tuple[tf.data.Dataset, SourceInfo]:
    """An image folder as ``(uint8 [H, W, 3], {"label": int32 []})`` (``{}`` when unlabelled).

    Args:
      root: the folder; layouts in hac_tf/data/folder_layout.py (class folders, split folders,
        unlabelled images).
      split: None/``"all"``, ``"train"`` or ``"test"`` (hash split or split folders, see the module
        docstring); with split folders also ``"val"``/``"validation"`` when such a folder exists.
      image_size: fixed ``[image_size, image_size]`` squares (shorter side resized, centre crop),
        for callers that batch the source directly. Exclusive with ``max_side``.
      max_side: downscale (antialiased, aspect kept) images whose longer side exceeds it; None
        keeps native sizes. Without ``image_size`` the element spec is ``[None, None, 3]`` unless
        every image of the split has one size.
      labels: ``"auto"`` (class folders give the ``"label"``) or ``"none"`` (unlabelled: every image
        at any depth, labels dict ``{}``).
      test_fraction: share of files in the ``"test"`` split (hash splits only).
      shuffle, seed: deterministic shuffle, reshuffled each epoch (see `pipeline`).
      cache: None = keep decoded images in memory iff they fit in ``max_cache_bytes``; True = always
        cache; False = always decode on the fly.
      max_cache_bytes: memory budget for ``cache=None``.
      background: RGB that transparent pixels are composited over.
      num_workers: threads for the validation pass (default ``min(32, cpus + 4)``).
      with_info: also return a `SourceInfo` (with ``skipped_files``; ``image_shape`` ``(None, None,
        3)`` when sizes vary; no label keys when unlabelled).
    """
    if cache is None:
        keep_max_bytes: int | None = max_cache_bytes
    else:
        keep_max_bytes = (1 << 62) if cache else None
    scan = scan_image_folder(root, split, labels=labels, test_fraction=test_fraction, image_size=image_size,
                             max_side=max_side, keep_arrays_max_bytes=keep_max_bytes, background=background,
                             num_workers=num_workers)
    label_arrays = {"label": scan.labels} if scan.labelled else {}
    if isinstance(scan.images, np.ndarray):
        ds = pipeline.from_arrays(scan.images, label_arrays, shuffle=shuffle, seed=seed)
    elif scan.images is not None:
        ds = _ragged_dataset(scan.images, label_arrays, shuffle=shuffle, seed=seed)
    else:
        decode_kwargs = dict(image_size=image_size, background=background, max_side=max_side)
        ds = _decoding_dataset(scan.files, label_arrays, scan.image_shape, decode_kwargs,
                               shuffle=shuffle, seed=seed, cache=bool(cache))
    if not with_info:
        return ds
    info = SourceInfo(
        name="image_folder",
        split=scan.split,
        num_examples=len(scan.files),
        image_shape=scan.image_shape,
        label_names={"label": scan.class_names} if scan.labelled else {},
        num_classes={"label": len(scan.class_names)} if scan.labelled else {},
        skipped_files=tuple(sorted(scan.skip_reasons)),
        skip_reasons=dict(scan.skip_reasons),
        origin=scan.root,
    )
    return ds, info
