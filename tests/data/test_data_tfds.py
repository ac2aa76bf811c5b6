"""tfds_source and the Fashion-MNIST TFDS fallback, on tiny REAL TFDS datasets built locally.

The datasets are written with ``tfds.dataset_builders.store_as_tfds_dataset`` from the committed
fixture into a temporary data_dir; downloading is made to fail loudly so no test can touch the
network.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hacdata_helpers import element_keys

from hac_tf.data import build_source, fashion_mnist, tfds_source
from hac_tf.data._tfds_compat import import_tfds
from hac_tf.data.fashion_mnist import CLASS_NAMES

tfds = import_tfds()
FOOTWEAR = {5, 7, 9}  # sandal, sneaker, ankle boot


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")

    for name in ("download", "download_and_extract", "download_checksums"):
        monkeypatch.setattr(tfds.download.DownloadManager, name, refuse, raising=False)


def _store(name: str, data_dir: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], extra_label: bool):
    tfds.disable_progress_bar()
    features = {
        "image": tfds.features.Image(shape=(28, 28, 1)),
        "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
    }
    if extra_label:
        features["footwear"] = tfds.features.ClassLabel(names=["no", "yes"])

    def examples(images, labels):
        for i, (image, label) in enumerate(zip(images, labels)):
            example = {"image": image[..., None], "label": int(label)}
            if extra_label:
                example["footwear"] = int(label in FOOTWEAR)
            yield i, example

    tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="3.0.1", features=tfds.features.FeaturesDict(features),
        split_datasets={s: list(examples(*arrays)) for s, arrays in splits.items()},
        data_dir=data_dir, disable_shuffling=True,
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, fixture_train, fixture_test):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    _store("tiny_garments", data_dir, {"train": fixture_train, "test": fixture_test}, extra_label=True)
    return data_dir


def test_reads_tiny_dataset(tiny_dir, fixture_train):
    ds, info = tfds_source("tiny_garments", "train", data_dir=tiny_dir, label_keys=("label", "footwear"),
                           with_info=True)
    assert ds.element_spec[0] == tf.TensorSpec([28, 28, 3], tf.uint8)
    assert ds.element_spec[1] == {"label": tf.TensorSpec([], tf.int32), "footwear": tf.TensorSpec([], tf.int32)}
    assert info.name == "tfds:tiny_garments" and info.num_examples == 64
    assert info.image_shape == (28, 28, 3)
    assert info.num_classes == {"label": 10, "footwear": 2}
    assert info.label_names["label"] == CLASS_NAMES and info.label_names["footwear"] == ("no", "yes")
    elements = list(ds.as_numpy_iterator())
    images = np.stack([e[0] for e in elements])
    labels = np.array([e[1]["label"] for e in elements])
    for c in range(3):
        np.testing.assert_array_equal(images[..., c], fixture_train[0])
    np.testing.assert_array_equal(labels, fixture_train[1])
    assert [e[1]["footwear"] for e in elements] == [int(l in FOOTWEAR) for l in fixture_train[1]]


@pytest.mark.parametrize("cache", [None, False])
def test_shuffle_determinism(tiny_dir, cache):
    def epochs(seed):
        ds = tfds_source("tiny_garments", "test", tiny_dir, shuffle=True, seed=seed, cache=cache)
        return element_keys(ds), element_keys(ds)

    first, second = epochs(7)
    assert epochs(7) == (first, second) and first != second
    assert epochs(8)[0] != first
    assert sorted(first) == sorted(element_keys(tfds_source("tiny_garments", "test", tiny_dir)))


def test_registry_and_split_strings(tiny_dir):
    ds, info = build_source("tfds:tiny_garments", "train[:10]", data_dir=tiny_dir, with_info=True)
    assert info.num_examples == 10 and len(list(ds)) == 10


def test_errors(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="no split 'validation'"):
        tfds_source("tiny_garments", "validation", tiny_dir)
    with pytest.raises(ValueError, match="no feature"):
        tfds_source("tiny_garments", "train", tiny_dir, label_keys=("colour",))
    with pytest.raises(FileNotFoundError, match="download=True"):
        tfds_source("mnist", "train", data_dir=str(tmp_path), download=False)
    with pytest.raises(ValueError, match="unknown TFDS dataset"):
        tfds_source("surely_not_a_tfds_dataset_xyz", "train", data_dir=str(tmp_path))


def test_fashion_mnist_falls_back_to_tfds(tmp_path, fixture_test, absl_records):
    """IDX files absent -> tfds.load('fashion_mnist', data_dir=...) reads a locally prepared copy."""
    tfds_dir = str(tmp_path / "tfds")
    _store("fashion_mnist", tfds_dir, {"train": fixture_test, "test": fixture_test}, extra_label=False)
    empty = tmp_path / "no_idx_here"
    empty.mkdir()
    ds, info = fashion_mnist("test", empty, tfds_data_dir=tfds_dir, with_info=True)
    assert info.origin == "tfds:fashion_mnist" and info.num_examples == 32
    assert any("falling back to tfds.load('fashion_mnist'" in r.getMessage() for r in absl_records())
    images = np.stack([image for image, _ in ds.as_numpy_iterator()])
    np.testing.assert_array_equal(images[..., 0], fixture_test[0])
