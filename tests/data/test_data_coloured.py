"""coloured_fashion_mnist: determinism, an independent re-implementation, hue/background/labels."""

from __future__ import annotations

import colorsys
import hashlib
import os
import zlib

import numpy as np
import pytest
import tensorflow as tf
from hacdata_helpers import DEBIAN_DIR, FM_FIXTURE, element_keys, raw_idx_u8

from hac_tf.data import coloured_fashion_mnist, coloured_fashion_mnist_arrays
from hac_tf.data.coloured import bilinear_resize_matrix, clear_cache

MASK = (1 << 64) - 1


def _splitmix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _reference(gray: np.ndarray, split: str, seed: int, n_colours: int, size: int, first: int):
    """Independent re-implementation (Python ints, colorsys, colour-then-resize, explicit taps).

    ``gray`` is the WHOLE split (the colour ranking depends on all images); returns the first
    ``first`` images (uint8 [first, size, size, 3]) and colour labels.
    """
    n = len(gray)
    stream = _splitmix(_splitmix(seed % (1 << 64)) ^ zlib.crc32(split.encode()))
    keys = [_splitmix((stream + i) & MASK) for i in range(n)]
    colour = [0] * n
    for rank, i in enumerate(sorted(range(n), key=lambda i: (keys[i], i))):
        colour[i] = rank % n_colours
    h = gray.shape[1]
    src = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, h - 1)
    w = src - i0
    images = np.empty((first, size, size, 3), np.uint8)
    for k in range(first):
        bg = 0.06 + 0.04 * ((_splitmix(keys[k]) >> 11) / 2.0**53)
        rgb = np.array(colorsys.hsv_to_rgb(colour[k] / n_colours, 1.0, 1.0))
        small = bg + (gray[k].astype(np.float64) / 255.0)[..., None] * (rgb - bg)  # colour at 28x28
        top = small[i0][:, i0] * (1 - w)[None, :, None] + small[i0][:, i1] * w[None, :, None]
        bottom = small[i1][:, i0] * (1 - w)[None, :, None] + small[i1][:, i1] * w[None, :, None]
        value = top * (1 - w)[:, None, None] + bottom * w[:, None, None]
        images[k] = np.clip(np.floor(value * 255 + 0.5), 0, 255).astype(np.uint8)
    return images, np.array(colour[:first])


def _collect(ds):
    elements = list(ds.as_numpy_iterator())
    images = np.stack([e[0] for e in elements])
    garment = np.array([e[1]["garment"] for e in elements])
    colour = np.array([e[1]["colour"] for e in elements])
    return images, garment, colour


def _hue_degrees(rgb: np.ndarray) -> np.ndarray:
    return np.array([colorsys.rgb_to_hsv(*(p / 255.0))[0] * 360.0 for p in rgb])


def test_matches_independent_reimplementation_on_fixture(fixture_train):
    ds, info = coloured_fashion_mnist("train", 16, 32, seed=3, data_dir=FM_FIXTURE, with_info=True)
    images, garment, colour = _collect(ds)
    ref_images, ref_colour = _reference(fixture_train[0], "train", 3, 16, 32, first=64)
    assert hashlib.sha256(images.tobytes()).hexdigest() == hashlib.sha256(ref_images.tobytes()).hexdigest()
    np.testing.assert_array_equal(colour, ref_colour)
    np.testing.assert_array_equal(garment, fixture_train[1])
    assert info.num_classes == {"garment": 10, "colour": 16}
    assert info.label_names["colour"][:2] == ("hue_0", "hue_22.5")


@pytest.mark.skipif(not os.path.isdir(DEBIAN_DIR), reason=f"Debian dataset-fashion-mnist not installed ({DEBIAN_DIR})")
def test_first_100_debian_test_images_match_reimplementation():
    gray = raw_idx_u8(os.path.join(DEBIAN_DIR, "t10k-images-idx3-ubyte.gz"))
    arrays = coloured_fashion_mnist_arrays("test", 16, 32, seed=0, data_dir=DEBIAN_DIR)
    ref_images, ref_colour = _reference(gray, "test", 0, 16, 32, first=100)
    assert hashlib.sha256(arrays.images[:100].tobytes()).hexdigest() == \
        hashlib.sha256(ref_images.tobytes()).hexdigest()
    np.testing.assert_array_equal(arrays.colour[:100], ref_colour)
    counts = np.bincount(arrays.colour, minlength=16)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 10_000


def test_deterministic_across_calls_and_cache_clears():
    a = coloured_fashion_mnist_arrays("train", 16, 32, 0, FM_FIXTURE)
    assert coloured_fashion_mnist_arrays("train", 16, 32, 0, FM_FIXTURE) is a  # cached in-process
    clear_cache()
    b = coloured_fashion_mnist_arrays("train", 16, 32, 0, FM_FIXTURE)
    assert b is not a
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.colour, b.colour)
    c = coloured_fashion_mnist_arrays("train", 16, 32, 1, FM_FIXTURE)
    assert not np.array_equal(a.colour, c.colour)
    d = coloured_fashion_mnist_arrays("test", 16, 32, 0, FM_FIXTURE)
    assert not np.array_equal(a.colour[:32], d.colour)


@pytest.mark.parametrize("n_colours", [16, 6])
def test_hue_background_and_labels(n_colours):
    images, garment, colour = _collect(coloured_fashion_mnist("train", n_colours, 32, 0, FM_FIXTURE))
    assert images.dtype == np.uint8 and images.shape == (64, 32, 32, 3)
    assert garment.min() >= 0 and garment.max() <= 9
    assert colour.min() >= 0 and colour.max() < n_colours
    assert set(colour.tolist()) == set(range(n_colours))                      # all colours used
    assert np.bincount(colour).max() - np.bincount(colour).min() <= 1         # balanced
    tolerance = 360.0 / n_colours / 2
    for image, k in zip(images, colour):
        flat = image.reshape(-1, 3).astype(int)
        brightness = flat.max(axis=1)
        bright = flat[brightness >= 0.9 * brightness.max()]
        hues = np.deg2rad(_hue_degrees(bright))
        mean = np.rad2deg(np.arctan2(np.sin(hues).mean(), np.cos(hues).mean())) % 360
        target = 360.0 * k / n_colours
        assert abs((mean - target + 180) % 360 - 180) < tolerance
        darkest = flat[brightness.argmin()]
        assert 0.06 * 255 - 1 <= darkest.max() <= 0.10 * 255 + 1                 # dark ...
        assert darkest.max() - darkest.min() <= 1                                  # ... grey background


def test_image_size_and_spec():
    ds = coloured_fashion_mnist("test", 16, 28, 0, FM_FIXTURE)
    assert ds.element_spec[0] == tf.TensorSpec([28, 28, 3], tf.uint8)
    assert ds.element_spec[1] == {"garment": tf.TensorSpec([], tf.int32), "colour": tf.TensorSpec([], tf.int32)}


def test_resize_matrix_matches_tf_image_resize():
    x = np.random.default_rng(0).random((28, 28))
    for size in (32, 28, 14, 57):
        m = bilinear_resize_matrix(28, size)
        ours = m @ x @ m.T
        theirs = tf.image.resize(x[None, ..., None], (size, size), "bilinear", antialias=False)[0, ..., 0]
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5)


def test_shuffle_same_seed_same_order():
    def keys(seed, shuffle_seed=None):
        return element_keys(coloured_fashion_mnist("train", 16, 32, seed, FM_FIXTURE, shuffle=True,
                                                   shuffle_seed=shuffle_seed))

    assert keys(0) == keys(0)
    assert keys(0, shuffle_seed=5) == keys(0, shuffle_seed=5)
    assert sorted(keys(0, shuffle_seed=5)) == sorted(keys(0, shuffle_seed=6))
    assert keys(0, shuffle_seed=5) != keys(0, shuffle_seed=6)
