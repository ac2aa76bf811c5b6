"""The resolution stage (hac_tf/data/resolution.py): canvases + extents for training, the
evaluation resize, and the builders that apply them."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hac_tf.data import resolution

FIXTURE_FMNIST = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "fashion_mnist")


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 picture (low frequencies only: resamplers agree on it)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC))


def variable_size_source(sizes, seed: int = 0) -> tf.data.Dataset:
    """(uint8 [h, w, 3], {"label": int32}) of the given sizes, with unknown static H and W."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]

    def generate():
        for i, image in enumerate(images):
            yield image, {"label": np.int32(i)}

    return tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec([None, None, 3], tf.uint8), {"label": tf.TensorSpec([], tf.int32)}))


# ----------------------------------------------------------------------------- max_source_side
def test_automatic_max_source_side_is_twice_the_view_and_explicit_values_are_kept():
    assert resolution.resolve_max_source_side(0, 96) == 192
    assert resolution.resolve_max_source_side(300, 96) == 300
    with pytest.raises(ValueError, match="data.max_source_side=50"):
        resolution.resolve_max_source_side(50, 96)


def test_the_stage_is_needed_only_for_variable_or_too_large_sources():
    assert not resolution.needs_training_stage((32, 32, 3), 64)  # coloured Fashion-MNIST, CIFAR-10
    assert not resolution.needs_training_stage((96, 96, 3), 192)  # STL-10 at 96
    assert resolution.needs_training_stage((None, None, 3), 192)
    assert resolution.needs_training_stage((0, 0, 3), 192)
    assert resolution.needs_training_stage((500, 300, 3), 192)
    assert not resolution.needs_evaluation_stage((32, 32, 3), 32)
    assert resolution.needs_evaluation_stage((None, None, 3), 32)
    assert resolution.needs_evaluation_stage((28, 28, 3), 32)


# ----------------------------------------------------------------------------- training canvases
def test_a_canvas_sized_image_is_an_exact_identity():
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    canvas, extent = resolution.to_canvas(tf.constant(image), 48)
    np.testing.assert_array_equal(canvas.numpy(), image)
    np.testing.assert_array_equal(extent.numpy(), [48, 48])


def test_a_small_image_sits_top_left_and_the_canvas_replicates_its_edges():
    image = np.random.default_rng(1).integers(0, 256, (10, 17, 3), dtype=np.uint8)
    canvas, extent = resolution.to_canvas(tf.constant(image), 32)
    canvas = canvas.numpy()
    assert canvas.shape == (32, 32, 3) and canvas.dtype == np.uint8
    np.testing.assert_array_equal(extent.numpy(), [10, 17])
    np.testing.assert_array_equal(canvas, np.pad(image, [(0, 22), (0, 15), (0, 0)], mode="edge"))


def test_large_images_are_downscaled_antialiased_keeping_the_aspect_ratio():
    image = smooth_image(300, 150)
    canvas, extent = resolution.to_canvas(tf.constant(image), 64)
    h, w = extent.numpy()
    assert (h, w) == (64, 32)  # 2:1 kept, longer side = max_source_side
    reference = np.asarray(Image.fromarray(image).resize((32, 64), Image.BILINEAR), np.float32)  # PIL antialiases
    diff = np.abs(canvas.numpy()[:64, :32].astype(np.float32) - reference)
    assert diff.mean() < 1.5 and diff.max() <= 8, (diff.mean(), diff.max())
    # a thin image keeps at least one pixel
    _, thin = resolution.to_canvas(tf.zeros([1000, 3, 3], tf.uint8), 64)
    np.testing.assert_array_equal(thin.numpy(), [64, 1])


def test_training_stage_batches_images_of_any_size_within_the_documented_memory():
    sizes = [(20, 31), (300, 120), (64, 64), (7, 200), (90, 90), (150, 160)]
    ds = resolution.training_stage(variable_size_source(sizes), 64)
    assert ds.element_spec[0].shape.as_list() == [64, 64, 3]
    batches = list(ds.batch(3).as_numpy_iterator())
    canvases = np.concatenate([b[0] for b in batches])
    extents = np.concatenate([b[2] for b in batches])
    assert canvases.shape == (6, 64, 64, 3) and canvases.dtype == np.uint8
    assert canvases.nbytes == resolution.canvas_bytes(64, 6) == 6 * 64 * 64 * 3
    expected = [(20, 31), (64, 26), (64, 64), (2, 64), (64, 64), (60, 64)]
    np.testing.assert_array_equal(extents, expected)
    np.testing.assert_array_equal(np.concatenate([b[1]["label"] for b in batches]), np.arange(6))


def test_bad_input_names_the_stage():
    with pytest.raises(ValueError, match="to_canvas|downscale_to_fit"):
        resolution.to_canvas(tf.zeros([8, 8, 3], tf.float32), 16)
    with pytest.raises(ValueError, match="evaluation_resize"):
        resolution.evaluation_resize(tf.zeros([8, 8], tf.uint8), 16)


# ----------------------------------------------------------------------------- evaluation resize
def test_evaluation_resize_leaves_a_view_sized_image_unchanged():
    image = np.random.default_rng(2).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resolution.evaluation_resize(tf.constant(image), 24).numpy(), image)


def test_evaluation_resize_keeps_the_centre_of_the_shorter_side():
    """A 2:1 image: red left quarter, blue right quarter, green middle -> an all-green square."""
    image = np.zeros((64, 128, 3), np.uint8)
    image[:, :28, 0] = 255
    image[:, 28:100, 1] = 255
    image[:, 100:, 2] = 255
    out = resolution.evaluation_resize(tf.constant(image), 32).numpy()
    assert out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out[..., 1], 255)
    np.testing.assert_array_equal(out[..., [0, 2]], 0)
    # against PIL: shorter side to 32 (antialiased), centre crop
    photo = smooth_image(90, 150, seed=3)
    reference = np.asarray(Image.fromarray(photo).resize((53, 32), Image.BILINEAR), np.float32)[:, 10:42]
    diff = np.abs(resolution.evaluation_resize(tf.constant(photo), 32).numpy().astype(np.float32) - reference)
    assert diff.mean() < 1.5, diff.mean()


def test_evaluation_resize_enlarges_small_images_and_supports_a_crop_fraction():
    small = smooth_image(20, 30)
    assert resolution.evaluation_resize(tf.constant(small), 32).shape == (32, 32, 3)
    # torchvision's Resize(S / 0.875) + CenterCrop(S): a square of 64 -> 73 -> centre 64
    square = np.zeros((64, 64, 3), np.uint8)
    square[:, :2] = 255  # a 2-pixel border column is cut away
    out = resolution.evaluation_resize(tf.constant(square), 64, crop_fraction=0.875).numpy()
    assert out.shape == (64, 64, 3) and out[:, 0].max() == 0
    with pytest.raises(ValueError, match="crop_fraction"):
        resolution.evaluation_resize(tf.constant(square), 64, crop_fraction=1.5)


def test_evaluation_stage_and_batched_resize_agree():
    sizes = [(40, 80), (33, 21), (16, 16)]
    ds = resolution.evaluation_stage(variable_size_source(sizes, seed=4), 16)
    assert ds.element_spec[0].shape.as_list() == [16, 16, 3]
    per_image = np.stack([image for image, _ in ds.as_numpy_iterator()])
    canvases = resolution.training_stage(variable_size_source(sizes, seed=4), 80).batch(3)
    canvas, _, extent = next(iter(canvases))
    batched = resolution.evaluation_resize_batch(canvas, extent, 16).numpy()
    np.testing.assert_array_equal(batched, per_image)


# ----------------------------------------------------------------------------- builders
def _config(*overrides: str):
    from hac_tf.training.config import load_config

    return load_config(None, [f"data.data_dir={FIXTURE_FMNIST}", *overrides])


def test_eval_source_leaves_a_view_sized_source_unchanged():
    from hac_tf.training import builders

    c = _config("data.image_size=32")
    ds, info = builders.eval_source(c, "test", 8)
    raw, raw_info = builders.labelled_source(c, c.data.test_split, 8)
    assert info == raw_info and info.image_shape == (32, 32, 3)
    for (a, _), (b, _) in zip(ds.as_numpy_iterator(), raw.as_numpy_iterator()):
        np.testing.assert_array_equal(a, b)


def test_eval_source_resizes_other_sizes_to_the_view_size():
    from hac_tf.training import builders

    c = _config("data.source=fashion_mnist", "data.image_size=16", "data.label_keys=[label]",
                "data.knn_label=label")
    ds, info = builders.eval_source(c, "train", 4)
    assert info.image_shape == (16, 16, 3)
    images = np.stack([image for image, _ in ds.as_numpy_iterator()])
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.uint8
    raw, raw_info = builders.labelled_source(c, c.data.train_split, 4)
    assert raw_info.image_shape[:2] == (28, 28)
    expected = np.stack([resolution.evaluation_resize(tf.constant(x), 16).numpy() for x, _ in raw.as_numpy_iterator()])
    np.testing.assert_array_equal(images, expected)


def test_eval_source_of_an_image_folder_with_mixed_sizes(tmp_path):
    from hacdata_helpers import write_photo

    from hac_tf.training import builders

    sizes = [(60, 30), (25, 50), (40, 40), (90, 45), (17, 33), (70, 20), (31, 31), (48, 64), (20, 90), (55, 44)]
    for i, (w, h) in enumerate(sizes):
        write_photo(tmp_path / ("train" if i < 6 else "test") / ("a" if i % 2 else "b") / f"{i}.png", w, h, seed=i)
    c = _config(f"data.eval_data_dir={tmp_path}", "data.image_size=16")
    images = []
    for role in ("train", "test"):
        ds, info = builders.eval_source(c, role)
        assert info.image_shape == (16, 16, 3)
        images += [image for image, _ in ds.as_numpy_iterator()]
    assert len(images) == len(sizes) and all(image.shape == (16, 16, 3) for image in images)
