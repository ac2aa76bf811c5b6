"""read_idx / write_idx: fixture, round trips and error messages."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from hacdata_helpers import DEBIAN_DIR, FM_FIXTURE, raw_idx_u8

from hac_tf.data.idx import read_idx, write_idx

TRAIN_IMAGES = os.path.join(FM_FIXTURE, "train-images-idx3-ubyte.gz")
TRAIN_LABELS = os.path.join(FM_FIXTURE, "train-labels-idx1-ubyte.gz")


def test_reads_fixture(fixture_train):
    images, labels = read_idx(TRAIN_IMAGES), read_idx(TRAIN_LABELS)
    assert images.dtype == np.uint8 and images.shape == (64, 28, 28)
    assert labels.dtype == np.uint8 and labels.shape == (64,)
    np.testing.assert_array_equal(images, fixture_train[0])
    np.testing.assert_array_equal(labels, fixture_train[1])
    assert images.flags.writeable


@pytest.mark.skipif(not os.path.isdir(DEBIAN_DIR), reason=f"Debian dataset-fashion-mnist not installed ({DEBIAN_DIR})")
def test_fixture_is_the_real_dataset_prefix():
    real = raw_idx_u8(os.path.join(DEBIAN_DIR, "train-images-idx3-ubyte.gz"), count=64)
    np.testing.assert_array_equal(read_idx(TRAIN_IMAGES), real)


def test_round_trip_is_byte_exact_for_the_fixture(tmp_path):
    out = tmp_path / "copy-idx3-ubyte.gz"
    write_idx(out, read_idx(TRAIN_IMAGES))
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(open(TRAIN_IMAGES, "rb").read())


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_dtypes(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">u4").tobytes()


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"\x01\x02\x08\x01" + np.asarray([3], ">u4").tobytes() + b"abc", "bad magic"),
        (_header(0x07, (3,)) + b"abc", "unknown dtype code"),
        (_header(0x08, (4, 4)) + b"\x00" * 10, "truncated data"),
        (_header(0x08, (2,)) + b"\x00" * 3, "trailing"),
        (b"\x00\x00", "too short"),
        (bytes([0, 0, 8, 3]) + b"\x00\x00", "truncated header"),
    ],
)
def test_bad_files_raise_value_error_naming_the_file(tmp_path, payload, fragment):
    path = tmp_path / "broken-idx"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=fragment) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip(tmp_path):
    raw = open(TRAIN_IMAGES, "rb").read()
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")
