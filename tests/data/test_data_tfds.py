"""tfds_source and the Fashion-MNIST TFDS fallback, on tiny REAL TFDS datasets built locally.

The datasets are written with ``tfds.dataset_builders.store_as_tfds_dataset`` from the committed
fixture into a temporary data_dir; downloading is made to fail loudly so no test can touch the
network.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf
from hacdata_helpers import FIXTURES, FOLDER_FIXTURE, element_keys

from hac_tf.data import build_source, fashion_mnist, tfds_source
from hac_tf.data._tfds_compat import import_tfds
from hac_tf.data.fashion_mnist import CLASS_NAMES
from hac_tf.data.image_folder import scan_image_folder
from hac_tf.data.tfds_prepare import DatasetNotPreparedError

sys.path.insert(0, FIXTURES)
import tfds_local_builders  # noqa: E402  (registers local_garments and local_manual_garments)

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


def test_offline_error_names_the_commands(tmp_path):
    data_dir = str(tmp_path / "tfds")
    assert not tfds.builder("mnist", data_dir=data_dir).is_prepared()
    with pytest.raises(DatasetNotPreparedError) as err:
        build_source("tfds:mnist", "train", data_dir=data_dir)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert f"python tools/prepare_data.py --dataset=tfds:mnist --data_dir={data_dir}\n" in message
    assert f"tfds build mnist --data_dir={data_dir}\n" in message
    assert "data.download=true" in message and "MANUAL" not in message


def test_manual_download_dataset_says_where_the_files_go(tmp_path):
    data_dir = str(tmp_path / "tfds")
    for download in (False, True):  # downloading cannot help: the message is the same
        with pytest.raises(DatasetNotPreparedError) as err:
            tfds_source("imagenet2012", "train", data_dir=data_dir, download=download)
        message = str(err.value)
        assert "needs a MANUAL download" in message and "ILSVRC2012_img_train.tar" in message
        assert f"Put those files in '{os.path.join(data_dir, 'downloads', 'manual')}'" in message
        assert f"python tools/prepare_data.py --dataset=tfds:imagenet2012 --data_dir={data_dir}" in message


def test_download_true_prepares_a_local_builder(tmp_path, fixture_train):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(DatasetNotPreparedError, match="tfds build local_garments"):
        tfds_source("local_garments", "train", data_dir=data_dir)
    ds, info = tfds_source("local_garments", "test", data_dir=data_dir, download=True, with_info=True)
    assert tfds.builder("local_garments", data_dir=data_dir).is_prepared()
    expected = scan_image_folder(FOLDER_FIXTURE, "test", test_fraction=tfds_local_builders.TEST_FRACTION)
    assert info.num_examples == len(expected.files) and info.image_shape == (None, None, 3)
    assert info.label_names == {"label": tfds_local_builders.CLASS_NAMES}
    assert sorted(int(labels["label"]) for _, labels in ds.as_numpy_iterator()) == sorted(expected.labels)
    again, _ = tfds_source("local_garments", "train", data_dir=data_dir, with_info=True)  # prepared: no download
    assert len(list(again)) == len(scan_image_folder(FOLDER_FIXTURE, "train", test_fraction=0.3).files)


def test_manual_local_builder_needs_its_files(tmp_path):
    data_dir = tmp_path / "tfds"
    with pytest.raises(DatasetNotPreparedError) as err:
        tfds_source("local_manual_garments", "train", data_dir=str(data_dir), download=True)
    manual = data_dir / "downloads" / "manual"
    assert f"Put those files in '{manual}' (that folder is missing or empty)" in str(err.value)
    assert "split folders train/<class>/ and test/<class>/" in str(err.value)
    for rel in ("ankle_boot/i000.png", "sandal/i008_rgb.png", "tshirt/i002.png", "tshirt/i001.jpeg"):
        for split in ("train", "test"):
            (manual / split / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(FOLDER_FIXTURE, rel), manual / split / rel)
    ds, info = tfds_source("local_manual_garments", "train", data_dir=str(data_dir), download=True, with_info=True)
    assert info.num_examples == 4
    assert sorted(int(labels["label"]) for _, labels in ds.as_numpy_iterator()) == [0, 1, 2, 2]
