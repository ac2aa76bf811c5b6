"""image_folder: decoding rules on real fixture images, bad-file reporting, splits, errors."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from hacdata_helpers import FOLDER_FIXTURE, element_keys

from hac_tf.data import batched, decode_image_file, image_folder
from hac_tf.data.image_folder import scan_image_folder

CLASSES = ("ankle_boot", "sandal", "tshirt")
BAD = ("ankle_boot/truncated.jpg", "sandal/empty.png", "tshirt/fake.jpg", "tshirt/notes.txt")
GOOD = (
    "ankle_boot/i000.png", "ankle_boot/i011.jpg", "ankle_boot/i015_rgba.png", "ankle_boot/i042_16bit.png",
    "ankle_boot/i044_cmyk.jpg", "sandal/i008_rgb.png", "sandal/i009.bmp", "sandal/i012.gif",
    "sandal/i013_x2.png", "sandal/i030.PNG", "tshirt/i001.jpeg", "tshirt/i002.png", "tshirt/i004_la.png",
)
RAMP = np.round(255.0 * np.arange(28) / 27.0).astype(np.int64)  # alpha per column, see make_fixtures.py


def _abs(rel: str) -> str:
    return os.path.join(FOLDER_FIXTURE, *rel.split("/"))


def _expected(rel: str, train: np.ndarray) -> tuple[np.ndarray, int]:
    """(expected uint8 [H, W, 3], max abs tolerance) for a good fixture file."""
    name = os.path.basename(rel)
    g = train[int(re.match(r"i(\d+)", name).group(1))].astype(np.int64)
    gray3 = np.repeat(g[..., None], 3, -1)
    if "_rgba" in name:  # composited over black: round(rgb * a / 255)
        rgb = np.stack([g, g // 2, 255 - g], -1)
        return np.floor(rgb * RAMP[None, :, None] / 255.0 + 0.5).astype(np.uint8), 0
    if "_la" in name:
        return np.repeat(np.floor(g * RAMP[None, :] / 255.0 + 0.5)[..., None], 3, -1).astype(np.uint8), 0
    if "_rgb" in name:
        return np.stack([g, 255 - g, g // 2], -1).astype(np.uint8), 0
    if "_x2" in name:
        return np.repeat(np.repeat(gray3, 2, 0), 2, 1).astype(np.uint8), 0
    if name.lower().endswith((".jpg", ".jpeg")):  # lossy: grayscale, RGB and CMYK JPEGs
        return gray3.astype(np.uint8), 16
    return gray3.astype(np.uint8), 0  # 8-bit gray PNG, 16-bit PNG, BMP, GIF


@pytest.mark.parametrize("rel", GOOD)
def test_decoder_pixel_values(rel, fixture_train):
    image = decode_image_file(_abs(rel))
    expected, tolerance = _expected(rel, fixture_train[0])
    assert image.dtype == np.uint8 and image.shape == expected.shape
    diff = np.abs(image.astype(int) - expected.astype(int))
    assert diff.max() <= tolerance, (rel, diff.max())
    if tolerance:
        assert diff.mean() < 2.0, (rel, diff.mean())


def test_decoder_background_and_resize():
    white = decode_image_file(_abs("ankle_boot/i015_rgba.png"), background=(255, 255, 255))
    black = decode_image_file(_abs("ankle_boot/i015_rgba.png"))
    assert (white[:, 0] == 255).all() and (black[:, 0] == 0).all()  # alpha 0 in column 0
    np.testing.assert_array_equal(white[:, -1], black[:, -1])        # alpha 255 in the last column
    assert decode_image_file(_abs("sandal/i013_x2.png"), image_size=32).shape == (32, 32, 3)


def test_dataset_reports_every_bad_file_once(absl_records, fixture_train):
    ds, info = image_folder(FOLDER_FIXTURE, with_info=True)
    warnings = [r.getMessage() for r in absl_records()]
    skip_messages = [m for m in warnings if "skipped" in m]
    assert len(skip_messages) == 1, warnings
    message = skip_messages[0]
    assert "skipped 4 of 17" in message
    for rel in BAD:
        assert message.count(_abs(rel)) == 1, (rel, message)
    for rel in GOOD:
        assert _abs(rel) not in message
    assert info.skipped_files == tuple(sorted(_abs(r) for r in BAD))
    assert set(info.skip_reasons) == set(info.skipped_files)
    assert "0 bytes" in info.skip_reasons[_abs("sandal/empty.png")]
    assert info.num_examples == len(GOOD) and info.label_names == {"label": CLASSES}
    assert info.num_classes == {"label": 3} and info.image_shape == (None, None, 3)

    assert ds.element_spec[0] == tf.TensorSpec([None, None, 3], tf.uint8)
    elements = list(ds.as_numpy_iterator())  # one full epoch, no crash
    assert len(elements) == len(GOOD)
    for rel, (image, labels) in zip(GOOD, elements):  # unshuffled order = sorted (class, path)
        assert labels["label"] == CLASSES.index(rel.split("/")[0])
        expected, tolerance = _expected(rel, fixture_train[0])
        assert image.shape == expected.shape
        assert np.abs(image.astype(int) - expected.astype(int)).max() <= tolerance


def test_in_memory_and_streaming_paths_agree():
    kept = list(image_folder(FOLDER_FIXTURE, image_size=32).as_numpy_iterator())
    streamed_ds = image_folder(FOLDER_FIXTURE, image_size=32, cache=False)
    assert streamed_ds.element_spec[0] == tf.TensorSpec([32, 32, 3], tf.uint8)
    streamed = list(streamed_ds.as_numpy_iterator())
    assert len(kept) == len(streamed) == len(GOOD)
    for (a, la), (b, lb) in zip(kept, streamed):
        np.testing.assert_array_equal(a, b)
        assert la == lb
    cached = list(image_folder(FOLDER_FIXTURE, cache=True).as_numpy_iterator())  # variable sizes + .cache()
    assert [c[0].shape for c in cached] == [d.shape for d in map(decode_image_file, map(_abs, GOOD))]


@pytest.mark.parametrize("cache", [None, False])
def test_shuffle_determinism(cache):
    def epochs(seed):
        ds = image_folder(FOLDER_FIXTURE, image_size=28, shuffle=True, seed=seed, cache=cache)
        return element_keys(ds), element_keys(ds)

    first, second = epochs(3)
    assert epochs(3) == (first, second)
    assert first != second
    assert epochs(4)[0] != first
    assert sorted(first) == sorted(element_keys(image_folder(FOLDER_FIXTURE, image_size=28, cache=cache)))


def test_hash_split_is_a_deterministic_partition():
    train = scan_image_folder(FOLDER_FIXTURE, "train", test_fraction=0.3)
    test = scan_image_folder(FOLDER_FIXTURE, "test", test_fraction=0.3)
    every = scan_image_folder(FOLDER_FIXTURE, None)
    good = {_abs(r) for r in GOOD}
    assert set(train.files) | set(test.files) == good == set(every.files)
    assert not set(train.files) & set(test.files)
    assert train.files == scan_image_folder(FOLDER_FIXTURE, "train", test_fraction=0.3).files
    assert train.class_names == test.class_names == CLASSES
    _, info = image_folder(FOLDER_FIXTURE, "test", image_size=28, test_fraction=0.3, with_info=True)
    assert info.split == "test" and info.num_examples == len(test.files)


def _copy_fixture(tmp_path, rels):
    root = tmp_path / "root"
    for rel in rels:
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(_abs(rel), dst)
    return root


def test_empty_root_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="no class folders"):
        image_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        image_folder(tmp_path / "missing")


def test_all_class_folders_empty(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match="every class folder is empty"):
        image_folder(tmp_path)


def test_no_decodable_image(tmp_path):
    root = _copy_fixture(tmp_path, BAD)
    with pytest.raises(ValueError, match="no decodable image") as err:
        image_folder(root)
    for rel in BAD:
        assert str(root / rel) in str(err.value)


def test_empty_class_folder_warns_and_keeps_its_label_id(tmp_path, absl_records):
    root = _copy_fixture(tmp_path, ["sandal/i008_rgb.png", "tshirt/i002.png"])
    (root / "ankle_boot").mkdir()
    (root / "README.txt").write_text("not in a class folder")
    ds, info = image_folder(root, with_info=True)
    assert info.label_names["label"] == CLASSES
    assert [int(l["label"]) for _, l in ds.as_numpy_iterator()] == [1, 2]
    messages = [r.getMessage() for r in absl_records()]
    assert any("ankle_boot" in m and "no usable image" in m for m in messages)
    assert info.skipped_files == (str(root / "README.txt"),)
    assert "not inside a class folder" in info.skip_reasons[str(root / "README.txt")]


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        image_folder(FOLDER_FIXTURE, "validation")
    with pytest.raises(ValueError, match="test_fraction"):
        image_folder(FOLDER_FIXTURE, "train", test_fraction=1.5)


def test_batched_smaller_than_one_batch_is_an_error():
    ds, info = image_folder(FOLDER_FIXTURE, image_size=32, with_info=True)
    with pytest.raises(ValueError, match="fewer than one batch"):
        batched(ds, 64)
    batches = list(batched(ds, 4).as_numpy_iterator())
    assert len(batches) == info.num_examples // 4 and batches[0][0].shape == (4, 32, 32, 3)
    assert len(list(batched(ds, 64, drop_remainder=False))) == 1
