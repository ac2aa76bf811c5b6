"""Helpers shared by the hac_tf.data tests (imported by name; tests/data is on sys.path)."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct

import numpy as np

FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, "fixtures"))
FM_FIXTURE = os.path.join(FIXTURES, "fashion_mnist")
FOLDER_FIXTURE = os.path.join(FIXTURES, "image_folder")
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


def raw_idx_u8(path: str, count: int | None = None) -> np.ndarray:
    """Tiny independent IDX parser (uint8 only) used as the reference in tests."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        zero, code, ndim = struct.unpack(">HBB", f.read(4))
        assert (zero, code) == (0, 8)
        dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        n = dims[0] if count is None else count
        item = int(np.prod(dims[1:], dtype=np.int64))
        return np.frombuffer(f.read(n * item), np.uint8).reshape((n, *dims[1:]))


def element_keys(ds) -> list[str]:
    """A content fingerprint per element, to compare the orders of two datasets."""
    return [hashlib.sha1(image.tobytes()).hexdigest()[:12] for image, _ in ds.as_numpy_iterator()]


def write_photo(path, width: int, height: int, seed: int = 0, fmt: str | None = None) -> "np.ndarray":
    """Writes a smooth random RGB picture (JPEG or PNG by extension, or ``fmt``) with Pillow; returns its pixels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(2, 6, 3)
    channels = [127.5 + 127.5 * np.sin(freq[c] * (xx / width + yy / height) * np.pi + phase[c]) for c in range(3)]
    pixels = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)
    return pixels
