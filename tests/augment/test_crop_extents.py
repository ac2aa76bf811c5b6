"""Crops of sources of any size: the valid extents of resolution-stage canvases, the crop's
coordinate frame (the original image), and the antialiased (mip-atlas) path."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hac_tf.augment import AugmentationSettings, LevelSpec, ViewPolicy, apply_crop, make_view_dataset
from hac_tf.augment.geometric import (
    RecordingRandomResizedCrop,
    build_mip_atlas,
    crop_boxes,
    crop_padded,
    mip_layout,
    mip_levels,
    pad_for_crop,
)
from hac_tf.data import resolution


def crop_only_policy(size: int, **settings) -> ViewPolicy:
    """Crop + flip, no colour op: every view is its recorded crop (mirrored when flipped)."""
    return ViewPolicy([LevelSpec(("crop_jitter", "flip"))],
                      AugmentationSettings(image_size=size, jitter_probability=0.0, **settings), seed=0)


def smooth_picture(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 [H,W,3]: coarse random colours upsampled (bicubic) plus mild noise -- natural-ish."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (max(height // 12, 2), max(width // 12, 2), 3)).astype(np.uint8)
    picture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    return np.clip(picture + rng.normal(0, 6, picture.shape), 0, 255).astype(np.uint8)


def bilinear_reference(image: np.ndarray, region_px, size: int) -> np.ndarray:
    """NumPy half-pixel bilinear resize of ``region_px`` (y0, x0, y1, x1) of ``image`` [h,w,3],
    clamping at the image's own edges (torchvision's convention), float in [0, 1]."""
    y0, x0, y1, x1 = region_px
    h, w = image.shape[:2]
    ys = y0 + (np.arange(size) + 0.5) * (y1 - y0) / size - 0.5
    xs = x0 + (np.arange(size) + 0.5) * (x1 - x0) / size - 0.5
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    yl, xl = np.floor(ys).astype(int), np.floor(xs).astype(int)
    yh, xh = np.minimum(yl + 1, h - 1), np.minimum(xl + 1, w - 1)
    fy, fx = (ys - yl)[:, None, None], (xs - xl)[None, :, None]
    img = image.astype(np.float64) / 255.0
    top = img[yl][:, xl] * (1 - fx) + img[yl][:, xh] * fx
    bottom = img[yh][:, xl] * (1 - fx) + img[yh][:, xh] * fx
    return top * (1 - fy) + bottom * fy


def recorded_views(out):
    """Yields (view [S,S,3], crop (4,), flip) of every view of a policy output."""
    for level in out.values():
        for side in ("a", "b"):
            views = level[f"view_{side}"].numpy()
            params = {k: v.numpy() for k, v in level[f"params_{side}"].items()}
            for i in range(len(views)):
                yield i, views[i], params["crop"][i], params["flip"][i, 0] == 1


# ----------------------------------------------------------------------------- the valid region
def test_crops_never_read_outside_the_valid_region():
    """Canvases whose padding is magenta (green 0) around images whose green is >= 128: no view
    pixel may come from the padding. Extents are multiples of 8 and every crop shrinks (S = 8,
    regions >= 32 px), so even the coarsest mip level holds no padding pixel."""
    rng = np.random.default_rng(0)
    extents = np.array([[32, 64], [64, 32], [40, 48], [64, 64], [56, 40], [32, 32]], np.int32)
    canvases = np.zeros((6, 64, 64, 3), np.uint8)
    canvases[..., 0] = canvases[..., 2] = 255
    for canvas, (h, w) in zip(canvases, extents):
        canvas[:h, :w] = rng.integers(0, 256, (h, w, 3))
        canvas[:h, :w, 1] = rng.integers(128, 256, (h, w))
    policy = crop_only_policy(8)
    assert mip_levels(64, 8) == 3
    out = policy(tf.constant(canvases), seed=tf.constant([1, 2], tf.int64), extents=tf.constant(extents))
    views = out["level_1"]["view_a"].numpy()
    assert views.shape == (6, 8, 8, 3)
    for level in out.values():
        for side in ("a", "b"):
            assert level[f"view_{side}"].numpy()[..., 1].min() >= 128 / 255 - 1e-4


def test_a_recorded_crop_reapplied_to_the_original_image_reproduces_the_view():
    """L == 0 (canvas 24 < 2 x 16): every view, also upsampled and border crops, equals a NumPy
    bilinear resize of the recorded region of the ORIGINAL image (edge-clamped)."""
    rng = np.random.default_rng(1)
    sizes = [(24, 11), (9, 24), (17, 17), (24, 24), (5, 20), (13, 22)]
    originals = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    pairs = [resolution.to_canvas(tf.constant(image), 24) for image in originals]
    canvases = tf.stack([c for c, _ in pairs])
    extents = tf.stack([e for _, e in pairs])
    out = crop_only_policy(16)(canvases, seed=tf.constant([3, 4], tf.int64), extents=extents)
    flipped = 0
    for i, view, crop, flip in recorded_views(out):
        h, w = sizes[i]
        region = crop * np.array([h, w, h, w])
        np.testing.assert_allclose(region, np.round(region), atol=1e-3)  # whole pixels of the original
        expected = bilinear_reference(originals[i], region, 16)
        np.testing.assert_allclose(view, expected[:, ::-1] if flip else expected, atol=1e-4)
        flipped += int(flip)
    assert flipped >= 1


def test_downscaled_views_match_a_pil_resize_of_the_recorded_region():
    """L > 0 (canvas 128, views 16): a view equals PIL's antialiased bilinear resize of the
    recorded region of the original picture, within 0.05 mean absolute error (as below)."""
    sizes = [(128, 80), (70, 128), (100, 100), (128, 128)]
    originals = [smooth_picture(h, w, seed) for seed, (h, w) in enumerate(sizes)]
    pairs = [resolution.to_canvas(tf.constant(image), 128) for image in originals]
    canvases, extents = tf.stack([c for c, _ in pairs]), tf.stack([e for _, e in pairs])
    out = crop_only_policy(16, crop_scale=(0.3, 1.0))(canvases, seed=tf.constant([5, 6], tf.int64),
                                                      extents=extents)
    errors = []
    for i, view, crop, flip in recorded_views(out):
        h, w = sizes[i]
        y0, x0, y1, x1 = np.round(crop * np.array([h, w, h, w])).astype(int)
        ref = Image.fromarray(originals[i][y0:y1, x0:x1]).resize((16, 16), Image.BILINEAR)
        ref = np.asarray(ref, np.float32) / 255.0
        errors.append(np.abs(view - (ref[:, ::-1] if flip else ref)).mean())
    assert max(errors) < 0.05, errors


def test_crop_statistics_are_relative_to_the_original_image():
    """A 2:1 image (32 x 64) in a 64 x 64 canvas: area fractions of 32 * 64 within ``scale``, pixel
    aspect ratios within ``ratio``, whole-pixel sides, and the crops cover the whole width."""
    n = 4000
    layer = RecordingRandomResizedCrop(16, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), seed=0)
    extents = tf.constant([[32, 64]] * n, tf.int32)
    region = layer.get_random_transformation_batch(n, images=tf.zeros([1, 64, 64, 3]), seed=tf.constant([7, 8]),
                                                   extents=extents)["region"].numpy()
    assert (region >= 0).all() and (region <= 1 + 1e-6).all()
    h = (region[:, 2] - region[:, 0]) * 32
    w = (region[:, 3] - region[:, 1]) * 64
    np.testing.assert_allclose(h, np.round(h), atol=1e-3)
    np.testing.assert_allclose(w, np.round(w), atol=1e-3)
    whole = (np.round(h) == 32) & (np.round(w) == 64)
    assert whole.mean() < 0.02  # the fallback is rare
    h, w = np.round(h[~whole]), np.round(w[~whole])
    area = h * w / (32 * 64)
    aspect = w / h
    # whole-pixel rounding of each side moves the area and aspect by at most about 1/side
    assert area.min() >= 0.2 * (1 - 2 / h.min()) and area.max() <= 1.0
    # aspect <= 4/3 and height <= 32 px cap the area at 32 * 42.7 px = 2/3 of this image
    assert area.min() < 0.25 and 0.6 < area.max() <= 2 / 3 + 1 / 64
    assert (aspect >= 0.75 * (1 - 1 / h - 1 / w)).all() and (aspect <= 4 / 3 * (1 + 1 / h + 1 / w)).all()
    assert aspect.min() < 0.8 and aspect.max() > 1.25
    assert region[:, 1].min() == 0 and region[:, 3].max() == 1  # left and right edges reached


# ----------------------------------------------------------------------------- antialiasing
def _patterns(side: int) -> dict:
    yy, xx = np.mgrid[:side, :side]
    stripes = (xx % 2).astype(np.float32)
    checker = ((xx // 2 + yy // 2) % 2).astype(np.float32)
    patterns = {name: np.repeat(p[..., None], 3, -1) for name, p in (("stripes", stripes), ("checker", checker))}
    patterns["natural"] = smooth_picture(side, side, seed=9).astype(np.float32) / 255.0
    return patterns


@pytest.mark.parametrize("name", ["stripes", "checker", "natural"])
def test_shrunk_crops_match_an_antialiased_resize_and_plain_bilinear_does_not(name):
    """Crops shrunk 3-8x vs ``tf.image.resize(crop, antialias=True)`` of the same region: the mip
    atlas path is within 0.05 mean absolute error per view (measured: <= 0.04 on the natural
    picture, <= 0.021 on the patterns); plain bilinear sampling aliases the 1-pixel stripes far
    beyond that (0.25 on average)."""
    side, size, n = 192, 16, 24
    image = _patterns(side)[name]
    rng = np.random.default_rng(11)
    regions, references = [], []
    for _ in range(n):
        factor = rng.uniform(3, 8)
        rh, rw = (int(round(size * factor * rng.uniform(0.9, 1.1))) for _ in range(2))
        y0, x0 = rng.integers(0, side - rh + 1), rng.integers(0, side - rw + 1)
        regions.append([y0 / side, x0 / side, (y0 + rh) / side, (x0 + rw) / side])
        crop = image[None, y0:y0 + rh, x0:x0 + rw]
        references.append(tf.image.resize(crop, [size, size], antialias=True).numpy()[0])
    regions, references = tf.constant(regions, tf.float32), np.stack(references)
    sources = tf.constant(np.repeat(image[None], n, 0))
    views = apply_crop(sources, regions, size).numpy()
    error = np.abs(views - references).mean(axis=(1, 2, 3))
    assert error.max() < 0.05, error
    plain = crop_padded(pad_for_crop(sources), crop_boxes(regions, side, side, size), tf.range(n), size).numpy()
    plain_error = np.abs(plain - references).mean(axis=(1, 2, 3))
    if name == "stripes":
        assert plain_error.mean() > 0.1, plain_error  # the old path fails the tolerance


def test_mip_atlas_levels_are_box_averages_with_their_own_edges():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 12, 10, 3), dtype=np.uint8)
    layout = mip_layout(12, 10, 2)
    assert layout.level_shapes == ((12, 10), (6, 5), (3, 3))
    atlas = build_mip_atlas(tf.constant(x), layout).numpy()
    assert atlas.shape == (2, *layout.atlas_shape, 3) and atlas.dtype == np.uint8
    level1 = x.astype(np.float64).reshape(2, 6, 2, 5, 2, 3).mean(axis=(2, 4))
    row, col = layout.offsets[1]
    got = atlas[:, row:row + 8, col:col + 7]
    np.testing.assert_allclose(got[:, 1:-1, 1:-1], level1, atol=0.5)
    np.testing.assert_array_equal(got[:, 0, 1:-1], got[:, 1, 1:-1])  # replicated top edge
    np.testing.assert_array_equal(got[:, 1:-1, -1], got[:, 1:-1, -2])  # replicated right edge
    np.testing.assert_array_equal(atlas[:, 1:13, 1:11], x)  # level 0 as it is


# ----------------------------------------------------------------------------- policy plumbing
def test_full_extents_give_the_fixed_size_views():
    """The canvas path with every image valid in full reproduces the fixed-size path."""
    x = tf.constant(np.random.default_rng(4).integers(0, 256, (8, 20, 20, 3), dtype=np.uint8))
    policy = ViewPolicy([LevelSpec(("crop_jitter", "grayscale", "flip"))] * 2, AugmentationSettings(image_size=12))
    seed = tf.constant([9, 10], tf.int64)
    fixed = policy(x, seed=seed)
    canvas = policy(x, seed=seed, extents=tf.fill([8, 2], 20))
    for name in fixed:
        for key in ("view_a", "view_b"):
            np.testing.assert_allclose(canvas[name][key].numpy(), fixed[name][key].numpy(), atol=1e-5)
        for key, value in fixed[name]["params_a"].items():
            np.testing.assert_array_equal(canvas[name]["params_a"][key].numpy(), value.numpy())


def test_chunked_atlas_views_are_the_recorded_crops_of_their_sources():
    """L > 0, small chunks, flips: every view equals apply_crop of its canvas with its recorded
    crop and extent (mirrored when flipped)."""
    sizes = [(64, 40), (30, 64), (64, 64), (50, 20)]
    pairs = [resolution.to_canvas(tf.constant(smooth_picture(h, w, s)), 64) for s, (h, w) in enumerate(sizes)]
    canvases, extents = tf.stack([c for c, _ in pairs]), tf.stack([e for _, e in pairs])
    policy = ViewPolicy([LevelSpec(("crop_jitter", "flip"))] * 2,
                        AugmentationSettings(image_size=12, jitter_probability=0.0), chunk_bytes=3 * 12 * 12 * 3 * 4)
    assert policy.chunk_rows() == 3
    out = policy(canvases, seed=tf.constant([12, 1], tf.int64), extents=extents)
    flipped = 0
    for level in out.values():
        for side in ("a", "b"):
            crop = level[f"params_{side}"]["crop"]
            expected = apply_crop(canvases, crop, 12, extents=extents).numpy()
            views = level[f"view_{side}"].numpy()
            flips = level[f"params_{side}"]["flip"].numpy()[:, 0] == 1
            for i in range(4):
                want = expected[i, :, ::-1] if flips[i] else expected[i]
                np.testing.assert_allclose(views[i], want, atol=1e-5)
                flipped += int(flips[i])
    assert flipped >= 1


def test_mixed_size_source_through_the_training_pipeline():
    """A TFDS-like source of random-size images -> resolution stage -> view batches of the config's
    policy: views [B,S,S,3], EquiMod's images the evaluation resize of each original, deterministic."""
    from hac_tf.training import builders
    from hac_tf.training.config import load_config

    c = load_config(None, ["data.image_size=16", "augment.num_levels=2", "model.level_depths=[1,2]"])
    rng = np.random.default_rng(6)
    originals = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in rng.integers(5, 90, (12, 2))]

    def generate():
        for i, image in enumerate(originals):
            yield image, {"label": np.int32(i)}

    source = tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec([None, None, 3], tf.uint8), {"label": tf.TensorSpec([], tf.int32)}))
    max_side = resolution.resolve_max_source_side(c.data.max_source_side, c.data.image_size)
    assert max_side == 32
    staged = resolution.training_stage(source, max_side)
    policy = builders.view_policy(c)
    batches = list(make_view_dataset(staged, policy, batch_size=4, seed=3).as_numpy_iterator())
    again = list(make_view_dataset(staged, policy, batch_size=4, seed=3).as_numpy_iterator())
    assert len(batches) == 3
    for k, (batch, repeat) in enumerate(zip(batches, again)):
        assert sorted(k for k in batch if k.startswith("level_")) == ["level_1", "level_2"]
        assert batch["level_2"]["view_b"].shape == (4, 16, 16, 3)
        np.testing.assert_array_equal(batch["level_1"]["view_a"], repeat["level_1"]["view_a"])
        expected = [resolution.evaluation_resize(tf.constant(resolution.downscale_to_fit(tf.constant(x), 32)), 16)
                    for x in originals[4 * k:4 * k + 4]]
        np.testing.assert_array_equal(batch["images"], np.stack(expected))
    without = next(iter(make_view_dataset(staged, policy, batch_size=4, seed=3, keep_images=False)))
    assert "images" not in without
