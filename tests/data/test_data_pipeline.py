"""pipeline helpers (RGB conversion, batching) and the build_source registry."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hacdata_helpers import FM_FIXTURE, FOLDER_FIXTURE

from hac_tf.data import SourceInfo, available_sources, batched, build_source, to_rgb_uint8
from hac_tf.data.pipeline import from_arrays

GRAY = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
ALPHA = np.array([0, 255, 128, 64] * 3, dtype=np.uint8).reshape(3, 4)


def _composite(value: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.floor(value.astype(np.float64) * alpha / 255.0 + 0.5).astype(np.uint8)


@pytest.mark.parametrize(
    "image, expected",
    [
        (GRAY, np.repeat(GRAY[..., None], 3, -1)),
        (GRAY[..., None], np.repeat(GRAY[..., None], 3, -1)),
        (np.stack([GRAY, 255 - GRAY, GRAY // 2], -1), np.stack([GRAY, 255 - GRAY, GRAY // 2], -1)),
        (np.stack([GRAY, ALPHA], -1), np.repeat(_composite(GRAY, ALPHA)[..., None], 3, -1)),
        (np.stack([GRAY, 255 - GRAY, GRAY, ALPHA], -1),
         np.stack([_composite(GRAY, ALPHA), _composite(255 - GRAY, ALPHA), _composite(GRAY, ALPHA)], -1)),
        (GRAY[..., None].astype(np.uint16) * 257, np.repeat(GRAY[..., None], 3, -1)),
    ],
    ids=["hw", "hw1", "rgb", "gray_alpha", "rgba", "uint16"],
)
def test_to_rgb_uint8(image, expected):
    out = to_rgb_uint8(tf.constant(image))
    assert out.dtype == tf.uint8 and out.shape == expected.shape
    np.testing.assert_array_equal(out.numpy(), expected)


def test_to_rgb_uint8_unknown_channels():
    fn = tf.function(to_rgb_uint8, input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
    for channels in (1, 3, 4):
        image = np.full((2, 2, channels), 255, np.uint8)
        out = fn(image)
        assert out.shape == (2, 2, 3) and (out.numpy() == 255).all()


def test_from_arrays_validates_label_shapes():
    with pytest.raises(ValueError, match="label 'label'"):
        from_arrays(np.zeros((3, 2, 2), np.uint8), {"label": np.zeros(4)})


def test_batched_errors_and_shapes():
    ds = from_arrays(np.zeros((5, 2, 2), np.uint8), {"label": np.arange(5)})
    with pytest.raises(ValueError, match="only 5 examples, fewer than one batch of 8"):
        batched(ds, 8)
    with pytest.raises(ValueError, match="empty"):
        batched(ds.take(0), 2)
    with pytest.raises(ValueError, match="batch_size"):
        batched(ds, 0)
    out = list(batched(ds, 2, shuffle_buffer=5, seed=1).as_numpy_iterator())
    assert len(out) == 2 and out[0][0].shape == (2, 2, 2, 3) and out[0][1]["label"].shape == (2,)
    assert len(list(batched(ds.repeat(), 8).take(3))) == 3          # infinite is fine
    unknown = ds.filter(lambda image, labels: True)
    with pytest.raises(ValueError, match="fewer than one batch"):
        batched(unknown, 8, num_examples=5)


def test_registry_names():
    assert available_sources() == ("fashion_mnist", "coloured_fashion_mnist", "banded_hue_fashion_mnist",
                                   "fashion_mnist_overlay", "image_folder", "tfds:<builder>")
    with pytest.raises(ValueError, match="allowed: fashion_mnist, coloured_fashion_mnist, banded_hue_fashion_mnist, "
                                         "fashion_mnist_overlay, image_folder, tfds:<builder>"):
        build_source("cifar10", "train")
    with pytest.raises(ValueError, match="empty TFDS builder"):
        build_source("tfds:", "train")


def test_registry_builds_each_local_source():
    ds, info = build_source("fashion_mnist", "test", data_dir=FM_FIXTURE, with_info=True)
    assert isinstance(info, SourceInfo) and info.num_examples == 32 and info.label_keys == ("label",)
    ds, info = build_source("coloured_fashion_mnist", "test", data_dir=FM_FIXTURE, num_colours=8, with_info=True)
    assert info.label_keys == ("garment", "colour") and info.num_classes["colour"] == 8
    ds = build_source("colored_fashion_mnist", "test", data_dir=FM_FIXTURE)
    assert ds.element_spec[0].shape == (32, 32, 3)
    ds, info = build_source("image_folder", "train", root=FOLDER_FIXTURE, image_size=16, with_info=True)
    assert info.split == "train" and ds.element_spec[0].shape == (16, 16, 3)
