"""View policies: add-one structure, ablations, determinism, tf.data integration."""

import numpy as np
import pytest
import tensorflow as tf

from hac_tf.augment import (
    AddOneViews,
    AugmentationSettings,
    HierarchicalStrengthViews,
    TwoViews,
    UniformViews,
    build_policy,
    make_view_dataset,
)
from hac_tf.augment.params import IDENTITY_VALUES, PARAM_KEYS

# which recorded keys each group may change
GROUP_KEYS = {
    "crop_jitter": ("crop", "jitter", "jitter_applied", "jitter_order"),
    "grayscale": ("grayscale",),
    "blur": ("blur_sigma",),
    "flip": ("flip",),
    "rotation": ("rotation",),
    "solarize": ("solarize",),
}
SETTINGS = AugmentationSettings(image_size=32, blur_probability=0.5)


def images(n=512, size=32, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def non_identity_rate(params, key):
    v = params[key].numpy()
    ident = np.array(IDENTITY_VALUES[key], np.float32)
    return float(np.mean(np.any(np.abs(v - ident) > 1e-7, axis=1)))


def test_add_one_levels_only_use_their_first_k_groups():
    policy = AddOneViews(settings=SETTINGS, seed=0)
    out = policy(images(), seed=[3, 4])
    assert list(out) == ["level_1", "level_2", "level_3", "level_4"]
    expected_p = {"crop": 1.0, "jitter": 0.8, "grayscale": 0.2, "blur_sigma": 0.5, "flip": 0.5}
    for k, name in enumerate(out, start=1):
        enabled = policy.order[:k]
        for view in ("params_a", "params_b"):
            params = out[name][view]
            assert set(params) == set(PARAM_KEYS)
            for group, keys in GROUP_KEYS.items():
                for key in keys:
                    rate = non_identity_rate(params, key)
                    if group not in enabled:
                        assert rate == 0.0, f"{name}: {key} fired but {group} is not enabled"
                    elif key in expected_p:
                        p = expected_p[key]
                        # crop: a random crop can be the whole image only rarely
                        assert abs(rate - p) < 0.08 or (key == "crop" and rate > 0.95), (name, key, rate)


def test_add_one_views_are_float_in_unit_range_and_pairs_differ():
    out = AddOneViews(settings=SETTINGS)(images(16), seed=[0, 0])
    for level in out.values():
        a, b = level["view_a"].numpy(), level["view_b"].numpy()
        assert a.dtype == np.float32 and a.shape == (16, 32, 32, 3)
        assert a.min() >= 0 and a.max() <= 1
        assert np.abs(a - b).mean() > 1e-3  # the two views are sampled independently


def test_same_seed_same_views_different_seed_different_views():
    policy = AddOneViews(settings=SETTINGS)
    x = images(8)
    one, two, other = policy(x, seed=[5, 6]), policy(x, seed=[5, 6]), policy(x, seed=[5, 7])
    for name in one:
        np.testing.assert_array_equal(one[name]["view_a"], two[name]["view_a"])
        for key in PARAM_KEYS:
            np.testing.assert_array_equal(one[name]["params_b"][key], two[name]["params_b"][key])
        assert np.abs(one[name]["view_a"].numpy() - other[name]["view_a"].numpy()).max() > 0


def test_uniform_views_apply_all_groups_at_every_level():
    out = UniformViews(num_levels=3, settings=SETTINGS)(images(), seed=[1, 1])
    for name in out:
        for key, p in (("grayscale", 0.2), ("flip", 0.5), ("blur_sigma", 0.5)):
            assert abs(non_identity_rate(out[name]["params_a"], key) - p) < 0.08


def test_hierarchical_strength_weakens_shallower_levels():
    out = HierarchicalStrengthViews(num_levels=4, settings=SETTINGS)(images(2048), seed=[2, 2])
    # level k is weakened by d = 4 - k: probabilities -0.05 d, jitter -0.02 d, crop min scale +0.1 d
    for k in range(1, 5):
        d = 4 - k
        p = out[f"level_{k}"]["params_a"]
        assert abs(non_identity_rate(p, "grayscale") - (0.2 - 0.05 * d)) < 0.04
        assert abs(non_identity_rate(p, "flip") - (0.5 - 0.05 * d)) < 0.05
        crop = p["crop"].numpy()
        area = (crop[:, 2] - crop[:, 0]) * (crop[:, 3] - crop[:, 1])
        assert area.min() >= 0.2 + 0.1 * d - 0.05
        jit = p["jitter"].numpy()[p["jitter_applied"].numpy()[:, 0] == 1]
        assert np.abs(jit[:, 0] - 1).max() <= 0.4 - 0.02 * d + 1e-6
        assert np.abs(jit[:, 0] - 1).max() > 0.4 - 0.02 * d - 0.02
        assert np.abs(jit[:, 3]).max() <= 0.1 - 0.02 * d + 1e-6


def test_two_views_is_one_level():
    out = TwoViews(settings=SETTINGS)(images(64), seed=[0, 1])
    assert list(out) == ["level_1"]
    assert non_identity_rate(out["level_1"]["params_a"], "flip") > 0.2


def test_blur_is_off_at_32px_by_default_like_the_paper_code():
    out = AddOneViews(settings=AugmentationSettings(image_size=32))(images(256), seed=[0, 0])
    assert non_identity_rate(out["level_4"]["params_a"], "blur_sigma") == 0.0


def test_larger_sources_are_cropped_to_the_view_size():
    out = AddOneViews(settings=AugmentationSettings(image_size=24))(images(4, size=40), seed=[0, 0])
    assert out["level_2"]["view_b"].shape == (4, 24, 24, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="add_one", order=("grayscale", "crop_jitter")), "first"),
        (dict(name="add_one", order=("crop_jitter", "sparkle")), "unknown augmentation group"),
        (dict(name="add_one", num_levels=7), "num_levels"),
        (dict(name="magic"), "unknown view policy"),
        (dict(name="two_view", chunk_bytes=-1), "chunk_bytes"),
    ],
)
def test_bad_policy_configs_raise(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        build_policy(name, **kwargs)


def test_bad_inputs_raise():
    policy = TwoViews()
    with pytest.raises(ValueError, match="RGB"):
        policy(tf.zeros([2, 8, 8, 1], tf.uint8))
    with pytest.raises(ValueError, match="uint8 or float"):
        policy(tf.zeros([2, 8, 8, 3], tf.int32))


def test_view_dataset_is_deterministic_and_resumable():
    x = images(40, 32, seed=3).numpy()
    source = tf.data.Dataset.from_tensor_slices((x, {"label": np.arange(40, dtype=np.int32)}))
    policy = AddOneViews(settings=SETTINGS, num_levels=2)
    full = list(make_view_dataset(source, policy, batch_size=8, seed=11).as_numpy_iterator())
    again = list(make_view_dataset(source, policy, batch_size=8, seed=11).as_numpy_iterator())
    resumed = list(make_view_dataset(source, policy, batch_size=8, seed=11, start_batch=3).as_numpy_iterator())
    assert len(full) == 5 and len(resumed) == 2
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a["level_2"]["view_a"], b["level_2"]["view_a"])
    for a, b in zip(full[3:], resumed):
        np.testing.assert_array_equal(a["level_1"]["view_b"], b["level_1"]["view_b"])
        np.testing.assert_array_equal(a["labels"]["label"], b["labels"]["label"])
        np.testing.assert_array_equal(a["level_2"]["params_a"]["crop"], b["level_2"]["params_a"]["crop"])
    np.testing.assert_array_equal(full[1]["labels"]["label"], np.arange(8, 16))


def test_views_are_the_recorded_crop_and_flip_of_their_source():
    """The flip happens inside the crop (right-to-left sampling): wherever no colour/blur op
    fired, a view equals apply_crop(source, recorded crop), mirrored iff the recorded flip."""
    from hac_tf.augment import apply_crop

    src = images(n=48, size=20, seed=3)
    policy = AddOneViews(settings=AugmentationSettings(image_size=12, blur_probability=0.5))
    out = policy(src, seed=tf.constant([5, 6], tf.int64))
    source = tf.image.convert_image_dtype(src, tf.float32)
    checked = flipped = 0
    for level in out.values():
        for side in ("a", "b"):
            p = {k: v.numpy() for k, v in level[f"params_{side}"].items()}
            expected = apply_crop(source, tf.constant(p["crop"]), 12).numpy()
            views = level[f"view_{side}"].numpy()
            for i in range(48):
                untouched = (p["jitter_applied"][i, 0] == 0 and p["grayscale"][i, 0] == 0
                             and p["blur_sigma"][i, 0] == 0)
                if not untouched:
                    continue
                want = expected[i, :, ::-1] if p["flip"][i, 0] == 1 else expected[i]
                np.testing.assert_allclose(views[i], want, atol=1e-5)
                checked += 1
                flipped += int(p["flip"][i, 0] == 1)
    assert checked >= 20 and flipped >= 3  # both kinds were really compared


def test_chunks_take_the_rows_grouped_by_the_work_they_need():
    """chunk_order is a permutation sorting the rows by (jitter group, grayscale, blur) firing."""
    policy = AddOneViews(settings=AugmentationSettings(image_size=40, blur_probability=0.5))
    batch_size = 16
    num_rows = batch_size * 2 * policy.num_levels
    settings = policy._row_settings(batch_size)
    seed = tf.constant([3, 4], tf.int64)
    steps = policy._after_crop_steps()
    assert [key for key, _ in steps] == ["jitter", "gray", "blur"]
    transformations = [layer.get_random_transformation_batch(num_rows, seed=seed, **settings[key])
                       for key, layer in steps]
    order = policy.chunk_order(transformations).numpy()
    np.testing.assert_array_equal(np.sort(order), np.arange(num_rows))
    jitter = transformations[0]
    hue_position = np.argmax(jitter["order"].numpy() == 3, axis=1)
    key = (np.where(jitter["fire"].numpy(), hue_position + 1, 0)
           + 5 * transformations[1]["fire"].numpy().astype(int)
           + 10 * (transformations[2]["sigma"].numpy() > 0).astype(int))
    assert len(set(key)) >= 6  # a real mix of groups
    assert np.all(np.diff(key[order]) >= 0)
    # stable: rows of one group keep their relative order
    for k in set(key):
        rows = order[key[order] == k]
        assert np.all(np.diff(rows) > 0)
    # no layer with a group (e.g. only the crop): the natural order
    assert TwoViews(groups=("crop_jitter",), settings=AugmentationSettings(
        image_size=40, jitter_probability=0.0)).chunk_order([]) is None


@pytest.mark.parametrize("groups", [("crop_jitter",), ("crop_jitter", "grayscale", "blur", "flip")])
@pytest.mark.parametrize("graph,chunk_bytes", [(False, 4096), (True, 4096), (False, 0)])
def test_an_empty_batch_gives_empty_views(groups, graph, chunk_bytes):
    policy = TwoViews(groups=groups, settings=AugmentationSettings(image_size=40, blur_probability=0.5),
                      chunk_bytes=chunk_bytes)
    call = tf.function(lambda x, s: policy(x, seed=s)) if graph else (lambda x, s: policy(x, seed=s))
    out = call(tf.zeros([0, 48, 48, 3], tf.uint8), tf.constant([1, 2], tf.int64))
    assert tuple(out["level_1"]["view_a"].shape) == (0, 40, 40, 3)
    assert tuple(out["level_1"]["params_b"]["crop"].shape) == (0, 4)


@pytest.mark.parametrize("policy_cls", [AddOneViews, UniformViews])
def test_chunked_views_equal_the_whole_batch_views(policy_cls):
    """Producing the views in row chunks (cache-sized) changes nothing: same draws, same ops.

    40 px views (blur on, 9 px kernel) in chunks of 7 rows: 160 rows give 22 full chunks and a
    remainder of 6, and many chunks where no row is blurred or grayed (empty blur batches)."""
    settings = AugmentationSettings(image_size=40, blur_probability=0.5)
    src = images(n=20, size=48, seed=5)
    seed = tf.constant([7, 8], tf.int64)
    row_bytes = 40 * 40 * 3 * 4
    chunked = policy_cls(settings=settings, chunk_bytes=7 * row_bytes)
    whole = policy_cls(settings=settings, chunk_bytes=0)
    assert chunked.chunk_rows() == 7 and whole.chunk_rows() is None
    a = tf.function(lambda x, s: chunked(x, seed=s))(src, seed)
    b = tf.function(lambda x, s: whole(x, seed=s))(src, seed)  # both in graph mode (eager rounds differently)
    blurred = grayed = 0
    for level in a:
        for side in ("a", "b"):
            np.testing.assert_allclose(a[level][f"view_{side}"].numpy(), b[level][f"view_{side}"].numpy(), atol=2e-6)
            for key, value in a[level][f"params_{side}"].items():
                np.testing.assert_array_equal(value.numpy(), b[level][f"params_{side}"][key].numpy(), err_msg=key)
            blurred += int((a[level][f"params_{side}"]["blur_sigma"].numpy() > 0).sum())
            grayed += int(a[level][f"params_{side}"]["grayscale"].numpy().sum())
    assert blurred >= 10 and grayed >= 5  # both ops really ran inside chunks
