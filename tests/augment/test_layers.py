"""Recording layers: every recorded parameter must describe exactly what was done to the view."""

import colorsys

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from hac_tf.augment import (
    AugmentationSettings,
    LevelSpec,
    RecordingColorJitter,
    RecordingGaussianBlur,
    RecordingRandomFlip,
    RecordingRandomGrayscale,
    RecordingRandomResizedCrop,
    RecordingRandomRotation90,
    RecordingRandomSolarize,
    ViewPolicy,
    apply_crop,
    region_to_sampling_box,
)
from hac_tf.augment.blur import apply_gaussian_blur
from hac_tf.augment.params import PARAM_KEYS, validate_params


def random_images(rng, n=16, size=32):
    # smooth-ish colourful images so colour ops are non-trivial
    base = rng.uniform(0, 1, (n, 4, 4, 3)).astype(np.float32)
    return tf.image.resize(base, [size, size], method="bilinear").numpy().clip(0, 1)


def only(groups, **settings):
    return ViewPolicy([LevelSpec(tuple(groups))], AugmentationSettings(**settings), seed=0)


# ----------------------------------------------------------------------------- crop
def test_crop_region_to_box_extracts_exact_pixels():
    img = np.arange(40 * 40 * 3, dtype=np.float32).reshape(1, 40, 40, 3)
    # a 16x16 crop starting at row 5, col 9, output 16: must be the exact slice
    region = tf.constant([[5 / 40, 9 / 40, 21 / 40, 25 / 40]], tf.float32)
    out = apply_crop(tf.constant(img), region, 16).numpy()
    np.testing.assert_allclose(out[0], img[0, 5:21, 9:25], atol=1e-3)


def test_crop_full_region_is_identity(rng):
    x = random_images(rng, 4, 24)
    out = apply_crop(tf.constant(x), tf.constant([[0.0, 0.0, 1.0, 1.0]] * 4), 24).numpy()
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_recorded_crop_reproduces_view(rng):
    x = random_images(rng, 32, 48)
    layer = RecordingRandomResizedCrop(32, scale=(0.2, 1.0), seed=3)
    out = layer({"images": tf.constant(x), "seed": tf.constant([4, 5])})
    region = out["params"]["crop"]
    boxes = region_to_sampling_box(region, 48, 48, 32, pad=1)
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
    again = tf.image.crop_and_resize(padded, boxes, tf.range(32), [32, 32]).numpy()
    np.testing.assert_allclose(out["images"].numpy(), again, atol=1e-6)
    r = region.numpy()
    # whole-pixel boxes inside the image, area in the scale range, aspect in the ratio range
    h, w = (r[:, 2] - r[:, 0]) * 48, (r[:, 3] - r[:, 1]) * 48
    np.testing.assert_allclose(h, np.round(h), atol=1e-4)
    assert (r >= 0).all() and (r <= 1 + 1e-6).all()
    area = h * w / 48 / 48
    assert (area >= 0.2 - 0.05).all() and (area <= 1.0 + 1e-6).all()
    assert len({tuple(v) for v in r}) > 20  # different crops per image


def test_upsampled_border_crops_replicate_the_edge_not_black():
    """A small crop touching the border, upsampled: no zero-extrapolated pixels (torchvision clamps)."""
    x = np.ones((2, 32, 32, 3), np.float32)
    region = tf.constant([[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.25, 0.25]])
    out = apply_crop(tf.constant(x), region, 32).numpy()
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


def test_crop_magnitude_overrides_min_scale(rng):
    x = tf.constant(random_images(rng, 256, 32))
    layer = RecordingRandomResizedCrop(32, scale=(0.2, 1.0))
    out = layer({"images": x, "seed": tf.constant([1, 1]), "magnitude": tf.fill([256], 0.9)})
    r = out["params"]["crop"].numpy()
    area = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    assert area.min() >= 0.85  # rounding to whole pixels can shave a little off 0.9


# ----------------------------------------------------------------------------- flip / rotation
def test_flip_flag_matches_mirrored_content(rng):
    x = random_images(rng, 64, 32)
    out = only(["flip"], flip_probability=0.5)(tf.constant(x), seed=[0, 1])["level_1"]
    v, f = out["view_a"].numpy(), out["params_a"]["flip"].numpy()[:, 0]
    assert 10 < f.sum() < 54
    for i in range(64):
        expected = x[i, :, ::-1] if f[i] == 1 else x[i]
        np.testing.assert_allclose(v[i], expected, atol=1e-5)


def test_rotation_records_k(rng):
    x = random_images(rng, 64, 16)
    out = RecordingRandomRotation90(probability=1.0)({"images": tf.constant(x), "seed": tf.constant([2, 3])})
    ks = out["params"]["rotation"].numpy()[:, 0].astype(int)
    assert set(ks) == {0, 1, 2, 3}
    for i in range(64):
        np.testing.assert_allclose(out["images"].numpy()[i], np.rot90(x[i], ks[i]), atol=0)


# ----------------------------------------------------------------------------- colour
def _gray(x):
    return (x * np.array([0.299, 0.587, 0.114], np.float64)).sum(-1, keepdims=True)


def _np_hue(x, h):
    flat = x.reshape(-1, 3)
    out = np.empty_like(flat)
    for i, (r, g, b) in enumerate(flat):
        hh, s, v = colorsys.rgb_to_hsv(r, g, b)
        out[i] = colorsys.hsv_to_rgb((hh + h) % 1.0, s, v)
    return out.reshape(x.shape)


def np_jitter(x, factors, order):
    """Independent NumPy re-implementation of torchvision's colour ops, float64."""
    x = x.astype(np.float64)
    for op in order:
        f = factors[int(op)]
        if op == 0:
            x = np.clip(f * x, 0, 1)
        elif op == 1:
            x = np.clip(f * x + (1 - f) * _gray(x).mean(), 0, 1)
        elif op == 2:
            x = np.clip(f * x + (1 - f) * _gray(x), 0, 1)
        else:
            x = np.clip(_np_hue(x, f), 0, 1)
    return x


def test_jitter_factors_reproduce_view_in_recorded_order(rng):
    x = random_images(rng, 12, 8)
    out = RecordingColorJitter(probability=0.8)({"images": tf.constant(x), "seed": tf.constant([7, 7])})
    p = out["params"]
    applied = p["jitter_applied"].numpy()[:, 0]
    orders = p["jitter_order"].numpy().astype(int)
    factors = p["jitter"].numpy()
    assert 0 < applied.sum() < 12
    assert len({tuple(o) for o in orders[applied == 1]}) > 1  # the order really is random
    for i in range(12):
        if applied[i]:
            assert sorted(orders[i]) == [0, 1, 2, 3]
            assert 0.6 <= factors[i, :3].min() and factors[i, :3].max() <= 1.4 and abs(factors[i, 3]) <= 0.1
            np.testing.assert_allclose(out["images"].numpy()[i], np_jitter(x[i], factors[i], orders[i]), atol=2e-4)
        else:
            np.testing.assert_array_equal(factors[i], [1, 1, 1, 0])
            np.testing.assert_array_equal(orders[i], [0, 1, 2, 3])
            np.testing.assert_array_equal(out["images"].numpy()[i], x[i])


def test_wrong_order_does_not_reproduce(rng):
    """Guards the test above: the op order matters, so a wrong record would be caught."""
    x = random_images(rng, 1, 8)[0]
    f = np.array([1.35, 0.65, 1.3, 0.08])
    assert np.abs(np_jitter(x, f, [0, 1, 2, 3]) - np_jitter(x, f, [3, 2, 1, 0])).max() > 1e-3


def test_grayscale_flag_iff_equal_channels(rng):
    x = random_images(rng, 64, 16)
    out = RecordingRandomGrayscale(probability=0.5)({"images": tf.constant(x), "seed": tf.constant([1, 9])})
    flags = out["params"]["grayscale"].numpy()[:, 0]
    v = out["images"].numpy()
    equal = np.all(np.abs(v - v[..., :1]) < 1e-6, axis=(1, 2, 3))
    np.testing.assert_array_equal(equal, flags == 1)
    assert 10 < flags.sum() < 54


def test_solarize_records_flag(rng):
    x = random_images(rng, 32, 8)
    out = RecordingRandomSolarize(probability=0.5)({"images": tf.constant(x), "seed": tf.constant([1, 2])})
    f = out["params"]["solarize"].numpy()[:, 0]
    for i in range(32):
        exp = np.where(x[i] >= 0.5, 1 - x[i], x[i]) if f[i] else x[i]
        np.testing.assert_allclose(out["images"].numpy()[i], exp, atol=1e-6)


# ----------------------------------------------------------------------------- blur
def test_blur_sigma_zero_iff_unchanged_and_matches_scipy(rng):
    x = random_images(rng, 32, 24)
    layer = RecordingGaussianBlur(kernel_size=7, probability=0.5)
    out = layer({"images": tf.constant(x), "seed": tf.constant([3, 3])})
    sig = out["params"]["blur_sigma"].numpy()[:, 0]
    v = out["images"].numpy()
    assert 5 < (sig > 0).sum() < 27
    for i in range(32):
        if sig[i] == 0:
            np.testing.assert_array_equal(v[i], x[i])
        else:
            assert 0.1 <= sig[i] <= 2.0
            t = np.arange(7) - 3.0
            k = np.exp(-0.5 * (t / sig[i]) ** 2)
            k /= k.sum()
            ref = ndimage.correlate1d(x[i].astype(np.float64), k, axis=0, mode="mirror")
            ref = ndimage.correlate1d(ref, k, axis=1, mode="mirror")
            np.testing.assert_allclose(v[i], ref, atol=1e-5)
            if sig[i] > 0.6:  # tiny sigmas are numerically a delta kernel
                assert np.abs(v[i] - x[i]).max() > 1e-4


def test_reflect_pad_equals_tf_reflect_padding(rng):
    from hac_tf.augment.blur import reflect_pad

    x = tf.constant(random_images(rng, 3, 9)[:, :, :7])
    for axis, pad in ((1, 1), (1, 4), (2, 3), (2, 6)):
        paddings = [[0, 0]] * 4
        paddings[axis] = [pad, pad]
        np.testing.assert_array_equal(reflect_pad(x, pad, axis).numpy(), tf.pad(x, paddings, mode="REFLECT").numpy())


def test_blur_of_an_empty_batch_is_empty_not_an_error():
    """A chunk of views where no row is blurred hands the blur zero rows."""
    out = apply_gaussian_blur(tf.zeros([0, 16, 16, 3]), tf.zeros([0]), 5)
    assert out.shape == (0, 16, 16, 3)
    layer = RecordingGaussianBlur(kernel_size=5, probability=0.0)
    x = tf.random.uniform([4, 16, 16, 3])
    np.testing.assert_array_equal(layer({"images": x, "seed": tf.constant([1, 2])})["images"].numpy(), x.numpy())


# ----------------------------------------------------------------------------- contract
def test_every_layer_writes_the_full_param_dict(rng):
    x = tf.constant(random_images(rng, 4, 16))
    for layer in [RecordingRandomResizedCrop(16), RecordingRandomFlip(), RecordingColorJitter(),
                  RecordingRandomGrayscale(), RecordingGaussianBlur(3), RecordingRandomSolarize(),
                  RecordingRandomRotation90()]:
        out = layer({"images": x})
        validate_params(out["params"])
        assert set(out["params"]) == set(PARAM_KEYS)
        assert out["images"].shape == x.shape
        for key in layer.records:
            assert key in out["params"]
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "make",
    [
        lambda: RecordingRandomFlip(probability=1.5),
        lambda: RecordingColorJitter(brightness=-0.1),
        lambda: RecordingColorJitter(hue=0.7),
        lambda: RecordingGaussianBlur(kernel_size=4),
        lambda: RecordingRandomResizedCrop(32, scale=(0.5, 0.2)),
        lambda: RecordingRandomResizedCrop(0),
    ],
)
def test_invalid_settings_raise(make):
    with pytest.raises(ValueError):
        make()


def test_unbatched_input_is_rejected():
    with pytest.raises(ValueError, match=r"\[N,H,W,3\]"):
        RecordingRandomFlip()({"images": tf.zeros([8, 8, 3])})


def test_apply_to_rows_touches_only_firing_rows_and_matches_the_full_batch_op():
    """The gather/scatter fast path: firing rows equal the op applied to the whole batch (per-row
    ops, blur included), the other rows are bit-identical to the input."""
    from hac_tf.augment.base import apply_to_rows

    rng = np.random.default_rng(5)
    images = tf.constant(rng.random((6, 16, 16, 3)), tf.float32)
    fire = tf.constant([True, False, True, False, False, True])
    sigma = tf.constant([0.7, 0.0, 1.5, 0.0, 0.0, 0.3])
    out = apply_to_rows(fire, images, lambda rows, index: apply_gaussian_blur(rows, tf.gather(sigma, index), 7))
    full = apply_gaussian_blur(images, sigma, 7)
    f = fire.numpy()
    np.testing.assert_array_equal(out.numpy()[~f], images.numpy()[~f])
    np.testing.assert_allclose(out.numpy()[f], full.numpy()[f], atol=1e-6)
    none = apply_to_rows(tf.zeros([6], tf.bool), images, lambda rows, _: rows * 0.0)
    np.testing.assert_array_equal(none.numpy(), images.numpy())
    # every row fires: the op runs on the batch itself (no gather/scatter), index = 0..N-1
    seen = []

    def add_index(rows, index):
        seen.append(index)
        return rows + tf.cast(index, tf.float32)[:, None, None, None]

    every = apply_to_rows(tf.ones([6], tf.bool), images, add_index)
    np.testing.assert_array_equal(every.numpy(), images.numpy() + np.arange(6, dtype=np.float32)[:, None, None, None])
    assert seen and all(i.dtype == tf.int64 for i in seen)


def test_apply_jitter_on_a_mixed_batch_equals_it_row_by_row(rng):
    """The slots skipped on a uniform batch (identity on every row, e.g. all rows with the hue
    first, or none jittered) change nothing: each row alone gives the same result as in a batch
    that mixes every hue position, bit for bit up to XLA's rounding of the batch shape."""
    from hac_tf.augment.colour import apply_jitter, jitter_row_group

    n = 10
    x = random_images(rng, n, 12)
    factors = np.stack([rng.uniform(0.6, 1.4, n), rng.uniform(0.6, 1.4, n), rng.uniform(0.6, 1.4, n),
                        rng.uniform(-0.1, 0.1, n)], 1).astype(np.float32)
    order = np.stack([rng.permutation(4) for _ in range(n)]).astype(np.int32)
    fire = rng.random(n) < 0.7
    fire[:2] = [False, True]
    batch = apply_jitter(tf.constant(x), tf.constant(factors), tf.constant(order), tf.constant(fire)).numpy()
    group, num_groups = jitter_row_group({"order": tf.constant(order), "fire": tf.constant(fire)})
    assert num_groups == 5
    np.testing.assert_array_equal(group.numpy(), np.where(fire, np.argmax(order == 3, axis=1) + 1, 0))
    for i in range(n):
        alone = apply_jitter(tf.constant(x[i:i + 1]), tf.constant(factors[i:i + 1]), tf.constant(order[i:i + 1]),
                             tf.constant(fire[i:i + 1])).numpy()[0]
        np.testing.assert_allclose(alone, batch[i], atol=1e-6)
        if fire[i]:
            np.testing.assert_allclose(alone, np_jitter(x[i], factors[i], order[i]), atol=2e-4)
        else:
            np.testing.assert_array_equal(alone, x[i])


def test_grayscale_with_no_firing_row_returns_the_images():
    layer = RecordingRandomGrayscale(probability=0.0)
    x = tf.random.uniform([3, 8, 8, 3], seed=1)
    out = layer.apply(x, {"fire": tf.zeros([3], tf.bool)})
    np.testing.assert_array_equal(out.numpy(), x.numpy())


def test_apply_jitter_leaves_non_firing_images_untouched_whatever_their_factors(rng):
    from hac_tf.augment.colour import apply_jitter

    x = random_images(rng, 6, 8)
    factors = np.tile(np.array([[1.3, 0.7, 1.2, 0.08]], np.float32), [6, 1])
    order = np.tile(np.array([[3, 2, 1, 0]], np.int32), [6, 1])
    fire = np.array([True, False, True, False, False, True])
    out = apply_jitter(tf.constant(x), tf.constant(factors), tf.constant(order), tf.constant(fire)).numpy()
    for i in range(6):
        if fire[i]:
            np.testing.assert_allclose(out[i], np_jitter(x[i], factors[i], order[i]), atol=2e-4)
        else:
            np.testing.assert_array_equal(out[i], x[i])
