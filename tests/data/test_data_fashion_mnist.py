"""fashion_mnist source: fixture IDX dir, Debian dir, missing-files decision."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from hacdata_helpers import DEBIAN_DIR, FM_FIXTURE, element_keys, raw_idx_u8

from hac_tf.data import fashion_mnist
from hac_tf.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist_arrays


@pytest.mark.parametrize("split, count", [("train", 64), ("test", 32)])
def test_from_fixture_dir(split, count, fixture_train, fixture_test):
    ds, info = fashion_mnist(split, FM_FIXTURE, with_info=True)
    raw_images, raw_labels = fixture_train if split == "train" else fixture_test
    assert ds.element_spec[0] == tf.TensorSpec([28, 28, 3], tf.uint8)
    assert ds.element_spec[1] == {"label": tf.TensorSpec([], tf.int32)}
    assert int(ds.cardinality()) == count
    assert info.num_examples == count and info.image_shape == (28, 28, 3)
    assert info.num_classes == {"label": 10} and info.label_names["label"] == CLASS_NAMES
    assert info.origin == FM_FIXTURE
    elements = list(ds.as_numpy_iterator())
    images = np.stack([e[0] for e in elements])
    labels = np.array([e[1]["label"] for e in elements])
    for c in range(3):
        np.testing.assert_array_equal(images[..., c], raw_images)
    np.testing.assert_array_equal(labels, raw_labels)


@pytest.mark.skipif(not os.path.isdir(DEBIAN_DIR), reason=f"Debian dataset-fashion-mnist not installed ({DEBIAN_DIR})")
def test_debian_dir_first_elements():
    ds, info = fashion_mnist("test", DEBIAN_DIR, with_info=True)
    assert info.num_examples == 10_000
    raw_images = raw_idx_u8(os.path.join(DEBIAN_DIR, "t10k-images-idx3-ubyte.gz"), count=5)
    raw_labels = raw_idx_u8(os.path.join(DEBIAN_DIR, "t10k-labels-idx1-ubyte.gz"), count=5)
    for i, (image, labels) in enumerate(ds.take(5).as_numpy_iterator()):
        np.testing.assert_array_equal(image, np.repeat(raw_images[i][..., None], 3, -1))
        assert labels["label"] == raw_labels[i]


def test_shuffle_is_deterministic_per_seed():
    def orders(seed):
        ds = fashion_mnist("train", FM_FIXTURE, shuffle=True, seed=seed)
        return element_keys(ds), element_keys(ds)  # two epochs of one dataset

    unshuffled = element_keys(fashion_mnist("train", FM_FIXTURE))
    first, second = orders(1)
    assert orders(1) == (first, second)          # same seed: same sequence of epoch orders
    assert first != second                       # reshuffled each epoch
    assert sorted(first) == sorted(unshuffled)   # a permutation
    assert first != unshuffled
    assert orders(2)[0] != first                 # another seed: another order


def test_missing_files_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="allow_download=False") as err:
        fashion_mnist("train", tmp_path, allow_download=False)
    assert str(tmp_path) in str(err.value) and "train-images-idx3-ubyte" in str(err.value)
    with pytest.raises(FileNotFoundError):
        fashion_mnist("train", tmp_path / "does-not-exist", allow_download=False)


def test_corrupt_file_is_not_silently_replaced(tmp_path):
    for name in os.listdir(FM_FIXTURE):
        (tmp_path / name).write_bytes(open(os.path.join(FM_FIXTURE, name), "rb").read())
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        fashion_mnist("train", tmp_path)


def test_uncompressed_idx_files_are_accepted(tmp_path, fixture_test):
    import gzip

    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(gzip.decompress(open(os.path.join(FM_FIXTURE, name + ".gz"), "rb").read()))
    arrays = load_fashion_mnist_arrays("test", tmp_path, allow_download=False)
    np.testing.assert_array_equal(arrays.images, fixture_test[0])


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        fashion_mnist("validation", FM_FIXTURE)
