"""image_folder: decoding rules on real fixture images, bad-file reporting, splits, errors."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from hacdata_helpers import FOLDER_FIXTURE, element_keys, write_photo
from PIL import Image

from hac_tf.data import batched, decode_image_file, image_folder
from hac_tf.data.image_folder import fitted_size, scan_image_folder

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


# ----------------------------------------------------------------------------- sizes and aspect ratios

# (relative path, width, height): JPEGs and PNGs from 40 to 600 px, landscape, portrait and square
PHOTOS = (("cat/wide.jpg", 600, 200), ("cat/tall.png", 90, 300), ("cat/small.png", 40, 56),
          ("dog/square.jpg", 256, 256), ("dog/mid.png", 150, 100), ("dog/tiny.jpg", 48, 40))
BROKEN = ("cat/cut.jpg", "dog/zero.png", "dog/text.png")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    pixels = {rel: write_photo(root / rel, w, h, seed=i) for i, (rel, w, h) in enumerate(PHOTOS)}
    whole = (root / "cat" / "wide.jpg").read_bytes()
    (root / "cat" / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "dog" / "zero.png").write_bytes(b"")
    (root / "dog" / "text.png").write_text("not a PNG")
    return root, pixels


def test_max_side_keeps_the_aspect_ratio(photo_folder, absl_records):
    root, pixels = photo_folder
    ds, info = image_folder(root, max_side=128, cache=False, with_info=True)
    assert info.image_shape == (None, None, 3) and ds.element_spec[0] == tf.TensorSpec([None, None, 3], tf.uint8)
    assert info.skipped_files == tuple(sorted(str(root / r) for r in BROKEN))
    assert sum("skipped 3 of 9" in r.getMessage() for r in absl_records()) == 1
    images = [image for image, _ in ds.as_numpy_iterator()]
    expected = sorted(PHOTOS)  # unshuffled order: class, then path
    assert len(images) == len(expected)
    for image, (rel, w, h) in zip(images, expected):
        fw, fh = fitted_size(w, h, 128)
        assert image.shape == (fh, fw, 3), rel
        assert max(image.shape[:2]) == min(128, max(w, h))
        scale = max(image.shape[:2]) / max(w, h)  # the shorter side is the exact scaled side, rounded
        assert abs(image.shape[1] - w * scale) <= 0.5 and abs(image.shape[0] - h * scale) <= 0.5, rel
        if max(w, h) <= 128 and rel.endswith(".png"):  # small images pass through untouched
            np.testing.assert_array_equal(image, pixels[rel])
    assert fitted_size(600, 200, 128) == (128, 43) and fitted_size(90, 300, 128) == (38, 128)


def test_in_memory_ragged_store_matches_streaming(photo_folder):
    root, _ = photo_folder
    scan = scan_image_folder(root, max_side=100, keep_arrays_max_bytes=1 << 30)
    assert isinstance(scan.images, list) and len(scan.images) == len(PHOTOS)
    kept = image_folder(root, max_side=100)
    streamed = image_folder(root, max_side=100, cache=False)
    assert element_keys(kept) == element_keys(streamed)
    for (a, la), (b, lb) in zip(kept.as_numpy_iterator(), streamed.as_numpy_iterator()):
        np.testing.assert_array_equal(a, b)
        assert la == lb
    shuffled = image_folder(root, max_side=100, shuffle=True, seed=1)
    first, second = element_keys(shuffled), element_keys(shuffled)
    assert first != second and sorted(first) == sorted(element_keys(kept))
    # over the memory budget: nothing is kept and the folder is streamed
    assert scan_image_folder(root, max_side=100, keep_arrays_max_bytes=5000).images is None


def test_one_size_gives_a_fixed_element_spec(tmp_path):
    for i in range(3):
        write_photo(tmp_path / "a" / f"{i}.png", 30, 20, seed=i)
    for cache in (None, False):
        ds, info = image_folder(tmp_path, cache=cache, with_info=True)
        assert info.image_shape == (20, 30, 3) and ds.element_spec[0] == tf.TensorSpec([20, 30, 3], tf.uint8)
        assert len(list(ds)) == 3


def test_downscale_is_antialiased_and_matches_a_full_decode(tmp_path):
    stripes = np.zeros((300, 600, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-pixel stripes: any point sampler gives 0 or 255, a good filter ~127
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    small = decode_image_file(tmp_path / "stripes.png", max_side=100)
    assert small.shape == (50, 100, 3)
    assert np.abs(small.astype(int) - 127.5).max() < 8, small.min()
    # JPEGs are decoded at a reduced DCT scale first: close to a full decode + LANCZOS resize
    write_photo(tmp_path / "big.jpg", 600, 400, seed=3)
    fast = decode_image_file(tmp_path / "big.jpg", max_side=64).astype(int)
    full = np.asarray(Image.open(tmp_path / "big.jpg").convert("RGB").resize((64, 43), Image.Resampling.LANCZOS))
    assert fast.shape == full.shape and np.abs(fast - full).mean() < 3


def test_exif_rotation_is_applied_before_the_size_rule(tmp_path):
    pixels = write_photo(tmp_path / "plain.png", 400, 200, seed=5)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = decode_image_file(tmp_path / "rotated.jpg", max_side=100)
    assert image.shape == (100, 50, 3)


def test_image_size_is_a_centre_crop_not_a_squash(tmp_path):
    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, :40] = (255, 0, 0)
    wide[:, 40:80] = (0, 255, 0)
    wide[:, 80:] = (0, 0, 255)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    square = decode_image_file(tmp_path / "wide.png", image_size=20)
    assert square.shape == (20, 20, 3)
    assert (square[:, 2:-2, 1] > 200).all() and (square[:, 2:-2, [0, 2]] < 60).all()  # only the green centre
    with pytest.raises(ValueError, match="not both"):
        decode_image_file(tmp_path / "wide.png", image_size=20, max_side=30)
    with pytest.raises(ValueError, match="max_side must be >= 1"):
        image_folder(FOLDER_FIXTURE, max_side=0)


def test_unlabelled_folder_feeds_the_view_pipeline(tmp_path):
    from hac_tf.augment import AugmentationSettings, build_policy, make_view_dataset

    for i, (w, h) in enumerate([(60, 40), (40, 70), (64, 64), (90, 30)]):
        write_photo(tmp_path / ("nested/deeper" if i % 2 else "") / f"p{i}.jpg", w, h, seed=i)
    ds, info = image_folder(tmp_path, labels="none", image_size=16, with_info=True)
    assert info.label_keys == () and info.label_names == {} and info.num_examples == 4
    policy = build_policy("two_view", groups=("crop_jitter", "flip"), settings=AugmentationSettings(image_size=16))
    batch = next(iter(make_view_dataset(ds.repeat(), policy, batch_size=2, seed=0)))
    assert batch["labels"] == {} and batch["images"].shape == (2, 16, 16, 3)
    assert batch["level_1"]["view_a"].shape == (2, 16, 16, 3)
