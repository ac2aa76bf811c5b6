"""Image-folder source: ``root/<class>/**/*.{jpg,jpeg,png,bmp,gif}``, class names sorted -> label ids.

Robustness model: every candidate file is validated up front, in parallel (thread pool), with the
*same* Pillow decoder the pipeline uses (``Image.verify()`` followed by a full decode and RGB
conversion). Only files that decode make it into the dataset, so a bad file can never crash an
epoch. Every file that is not used (undecodable, truncated, empty, wrong extension, outside a
class folder) is reported in ONE absl warning naming each file with its reason, and is listed in
``info.skipped_files`` / ``info.skip_reasons``. A file is named once per process even when the
folder is scanned again (training, preview and evaluation each build their split). Huge images
decode and are resized; Pillow's decompression-bomb guard (> 2 x ``Image.MAX_IMAGE_PIXELS``,
about 179 MP) rejects larger ones before decoding, and they are skipped and reported like any bad file.

Decoding rules (`decode_image_file`): grayscale/bilevel/palette/CMYK/YCbCr -> RGB via Pillow;
16-bit grayscale scaled to 8 bits by ``round(v / 257)`` (so 8-bit data stored as 16-bit maps back
exactly); alpha (RGBA, LA, PA, palette or gray with a transparency key) composited over
``background`` (black by default): ``round((rgb * a + bg * (255 - a)) / 255)``; EXIF orientation
applied; animated GIFs give their first frame; optional square resize with Pillow bilinear
(antialiased when shrinking).

Memory: when ``image_size`` is set and all images take at most ``max_cache_bytes``, the decoded
arrays from the validation pass are kept and served from memory (no second decode). Otherwise
images are decoded on the fly in the tf.data map through ``tf.numpy_function`` calling the same
decoder, so the dataset never has to fit in memory (``cache=True`` then adds ``Dataset.cache()``).

Splits: ``split=None``/``"all"`` uses every file; ``"train"``/``"test"`` assign each file by a
SHA-1 hash of its path relative to ``root`` (``test`` if the hash, as a fraction of 2**64, is below
``test_fraction``), so the assignment is stable when files are added or removed.

Hidden directories (name starting with ``.``) are ignored at every level; hidden files inside class
folders are reported like any other non-image file.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image, ImageOps

from hac_tf.data import pipeline
from hac_tf.data.info import SourceInfo

__all__ = [
    "IMAGE_EXTENSIONS",
    "decode_image_file",
    "split_of",
    "FolderScan",
    "scan_image_folder",
    "image_folder",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_SPLITS = ("all", "train", "test")
_EXIF_ORIENTATION = 0x0112

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


def decode_image_file(
    path: str | os.PathLike[str],
    image_size: int | None = None,
    background: RGB = (0, 0, 0),
) -> np.ndarray:
    """Decodes one image file with Pillow.

    Args:
      path: the file (format detected from content; the extension does not matter here).
      image_size: if given, resize to ``[image_size, image_size]`` (bilinear).
      background: RGB colour that transparent pixels are composited over.

    Returns:
      uint8 ``[H, W, 3]`` (``[image_size, image_size, 3]`` when resizing).

    Raises:
      Whatever Pillow raises for unreadable data (``OSError``, ``UnidentifiedImageError``, ...).
    """
    with Image.open(os.fspath(path)) as im:
        im.load()
        if im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            im = ImageOps.exif_transpose(im)
        rgb = _to_rgb_array(im, background)
    if image_size is not None and rgb.shape[:2] != (image_size, image_size):
        resized = Image.fromarray(rgb).resize((image_size, image_size), Image.Resampling.BILINEAR)
        rgb = np.asarray(resized, dtype=np.uint8)
    return rgb


def _validate(path: str, image_size: int | None, background: RGB, keep: bool) -> tuple[np.ndarray | None, str | None]:
    """``(array or None, None)`` for a good file, ``(None, reason)`` for a bad one. Never raises."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        return None, f"not an image file extension ({ext or 'none'})"
    try:
        if os.path.getsize(path) == 0:
            return None, "empty file (0 bytes)"
        with Image.open(path) as im:
            im.verify()
        image = decode_image_file(path, image_size, background)
    except Exception as e:  # noqa: BLE001 - any failure means "skip and report"
        # Pillow often repeats the path in its message; the report names each file once.
        message = str(e).replace(repr(path), "(this file)").replace(path, "(this file)")
        return None, f"{type(e).__name__}: {message}"
    return (image if keep else None), None


# ----------------------------------------------------------------------------- scanning


def split_of(relative_path: str, test_fraction: float) -> str:
    """``"test"`` or ``"train"`` for a file, from a SHA-1 hash of its ``/``-separated relative path."""
    digest = hashlib.sha1(relative_path.replace(os.sep, "/").encode("utf-8")).digest()
    unit = int.from_bytes(digest[:8], "big") / float(1 << 64)
    return "test" if unit < test_fraction else "train"


@dataclasses.dataclass(frozen=True)
class FolderScan:
    """Result of the validation pass.

    Attributes:
      root: the absolute root directory.
      class_names: sorted class folder names; label id = position.
      files: absolute paths of the good files of the split, in (class, path) order.
      labels: int32 ``[len(files)]``.
      images: uint8 ``[len(files), S, S, 3]`` when the decoded arrays were kept, else None.
      skip_reasons: ``{absolute path: reason}`` for every file not used.
      empty_classes: class names with no good file in the split.
    """

    root: str
    class_names: tuple[str, ...]
    files: tuple[str, ...]
    labels: np.ndarray
    images: np.ndarray | None
    skip_reasons: dict[str, str]
    empty_classes: tuple[str, ...]


def _list_files(directory: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    return found


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


def scan_image_folder(
    root: str | os.PathLike[str],
    split: str | None = None,
    *,
    test_fraction: float = 0.2,
    image_size: int | None = None,
    keep_arrays_max_bytes: int | None = None,
    background: RGB = (0, 0, 0),
    num_workers: int | None = None,
) -> FolderScan:
    """Lists, splits and validates the files of an image folder (see the module docstring).

    The decoded arrays are kept (``FolderScan.images``) iff ``image_size`` is set and the split's
    candidate files would take at most ``keep_arrays_max_bytes`` (None: never keep).

    Logs one warning for all skipped files and one for empty class folders.

    Raises:
      FileNotFoundError: ``root`` is not a directory.
      ValueError: bad ``split``/``test_fraction``; no class folders; every class folder empty;
        no file of the split decodes.
    """
    root = os.path.abspath(os.fspath(root))
    split = "all" if split is None else split
    if split not in _SPLITS:
        raise ValueError(f"image_folder split must be None or one of {_SPLITS}, got {split!r}")
    if split != "all" and not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1) for split {split!r}, got {test_fraction}")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image_folder root {root!r} is not a directory")

    entries = sorted(os.listdir(root))
    class_names = tuple(e for e in entries if not e.startswith(".") and os.path.isdir(os.path.join(root, e)))
    if not class_names:
        raise ValueError(
            f"image_folder root {root!r} contains no class folders (expected root/<class>/<image files>)")
    skipped: dict[str, str] = {
        os.path.join(root, e): "not inside a class folder"
        for e in entries if os.path.isfile(os.path.join(root, e))
    }
    num_root_files = len(skipped)

    candidates: list[tuple[str, int]] = []
    any_file = False
    for label, name in enumerate(class_names):
        for path in _list_files(os.path.join(root, name)):
            any_file = True
            if split == "all" or split_of(os.path.relpath(path, root), test_fraction) == split:
                candidates.append((path, label))
    if not any_file:
        raise ValueError(f"image_folder root {root!r}: every class folder is empty ({', '.join(class_names)})")

    keep_arrays = (image_size is not None and keep_arrays_max_bytes is not None
                   and len(candidates) * image_size * image_size * 3 <= keep_arrays_max_bytes)
    workers = num_workers or min(32, (os.cpu_count() or 1) + 4)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda c: _validate(c[0], image_size, background, keep_arrays), candidates))

    files, labels, arrays = [], [], []
    for (path, label), (image, reason) in zip(candidates, results):
        if reason is not None:
            skipped[path] = reason
            continue
        files.append(path)
        labels.append(label)
        if keep_arrays:
            arrays.append(image)

    total = len(candidates) + num_root_files
    if not files:
        detail = _skip_message(root, skipped, total) if skipped else "no files in this split"
        raise ValueError(f"image_folder root {root!r}, split {split!r}: no decodable image at all. {detail}")
    if skipped:
        new = {p: r for p, r in skipped.items() if _file_identity(p) not in _REPORTED}
        _REPORTED.update(_file_identity(p) for p in new)
        if new:
            logging.warning("%s", _skip_message(root, new, total))
        if len(new) < len(skipped):
            logging.info("image_folder(%r): %d bad file(s) skipped again (reported above)", root,
                         len(skipped) - len(new))
    present = set(labels)
    empty = tuple(name for i, name in enumerate(class_names) if i not in present)
    if empty:
        logging.warning("image_folder(%r), split %r: %d class folder(s) have no usable image and get no "
                        "examples (their label ids stay reserved): %s", root, split, len(empty), ", ".join(empty))
    images = np.stack(arrays) if keep_arrays else None
    return FolderScan(root, class_names, tuple(files), np.asarray(labels, dtype=np.int32), images, skipped, empty)


# ----------------------------------------------------------------------------- dataset


def _decoding_dataset(files: Sequence[str], labels: np.ndarray, image_size: int | None, background: RGB,
                      *, shuffle: bool, seed: int | None, cache: bool) -> tf.data.Dataset:
    def decode(path: bytes) -> np.ndarray:
        return decode_image_file(os.fsdecode(path), image_size, background)

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        image = tf.numpy_function(decode, [path], tf.uint8, stateful=False)
        image.set_shape([image_size, image_size, 3] if image_size else [None, None, 3])
        return image, {"label": label}

    ds = tf.data.Dataset.from_tensor_slices((tf.constant([os.fsencode(f) for f in files], dtype=tf.string), labels))
    if shuffle and not cache:  # shuffle cheap paths before decoding
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=pipeline.AUTOTUNE)
    if cache:
        return pipeline.shuffle_and_prefetch(ds, shuffle=shuffle, seed=seed, buffer_size=len(files), cache=True)
    return ds.prefetch(pipeline.AUTOTUNE)


def image_folder(
    root: str | os.PathLike[str],
    split: str | None = None,
    image_size: int | None = None,
    *,
    test_fraction: float = 0.2,
    shuffle: bool = False,
    seed: int | None = 0,
    cache: bool | None = None,
    max_cache_bytes: int = pipeline.DEFAULT_MAX_CACHE_BYTES,
    background: RGB = (0, 0, 0),
    num_workers: int | None = None,
    with_info: bool = False,
) -> tf.data.Dataset | tuple[tf.data.Dataset, SourceInfo]:
    """An image folder as ``(uint8 [H, W, 3], {"label": int32 []})``.

    Args:
      root: directory with one sub-folder per class.
      split: None/``"all"``, ``"train"`` or ``"test"`` (hash split, see module docstring).
      image_size: resize every image to ``[image_size, image_size]`` so batches can be formed;
        None keeps native sizes (``H``, ``W`` unknown in the element spec).
      test_fraction: share of files in the ``"test"`` split.
      shuffle, seed: deterministic shuffle, reshuffled each epoch (see `pipeline`).
      cache: None = keep decoded images in memory iff ``image_size`` is set and they fit in
        ``max_cache_bytes``; True = always cache; False = always decode on the fly.
      max_cache_bytes: memory budget for ``cache=None``.
      background: RGB that transparent pixels are composited over.
      num_workers: threads for the validation pass (default ``min(32, cpus + 4)``).
      with_info: also return a `SourceInfo` (with ``skipped_files``).
    """
    if cache is None:
        keep_max_bytes: int | None = max_cache_bytes
    else:
        keep_max_bytes = (1 << 62) if cache else None
    scan = scan_image_folder(root, split, test_fraction=test_fraction, image_size=image_size,
                             keep_arrays_max_bytes=keep_max_bytes, background=background, num_workers=num_workers)
    if scan.images is not None:
        ds = pipeline.from_arrays(scan.images, {"label": scan.labels}, shuffle=shuffle, seed=seed)
    else:
        ds = _decoding_dataset(scan.files, scan.labels, image_size, background,
                               shuffle=shuffle, seed=seed, cache=bool(cache))
    if not with_info:
        return ds
    info = SourceInfo(
        name="image_folder",
        split="all" if split is None else split,
        num_examples=len(scan.files),
        image_shape=(image_size, image_size, 3),
        label_names={"label": scan.class_names},
        num_classes={"label": len(scan.class_names)},
        skipped_files=tuple(sorted(scan.skip_reasons)),
        skip_reasons=dict(scan.skip_reasons),
        origin=scan.root,
    )
    return ds, info
