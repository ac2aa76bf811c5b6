"""The split augmentation groups crop / jitter / jitter_grayscale (issue 17: colour placed late)."""

import numpy as np
import pytest
import tensorflow as tf

from hac_tf.augment import AddOneViews, AugmentationSettings
from hac_tf.augment.params import IDENTITY_VALUES
from hac_tf.augment.policies import COLOUR_LATE_ORDER, LevelSpec, ViewPolicy
from hac_tf.training.config import ConfigError, load_config

SETTINGS = AugmentationSettings(image_size=32, blur_probability=0.5)
COLOUR_KEYS = ("jitter", "jitter_applied", "jitter_order", "grayscale")


def images(n=256, size=32, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def non_identity_rate(params, key):
    v = params[key].numpy()
    return float(np.mean(np.any(np.abs(v - np.array(IDENTITY_VALUES[key], np.float32)) > 1e-7, axis=1)))


def assert_same_levels(one, two):
    assert list(one) == list(two)
    for name in one:
        for view in ("view_a", "view_b"):
            np.testing.assert_array_equal(one[name][view].numpy(), two[name][view].numpy())
        for side in ("params_a", "params_b"):
            for key in one[name][side]:
                np.testing.assert_array_equal(one[name][side][key].numpy(), two[name][side][key].numpy())


def test_split_groups_draw_the_views_of_crop_jitter_at_the_same_level():
    x = images(32)
    fused = ViewPolicy([LevelSpec(("crop_jitter",)), LevelSpec(("crop_jitter", "grayscale", "flip"))], SETTINGS)
    split = ViewPolicy([LevelSpec(("crop", "jitter")), LevelSpec(("crop", "jitter", "grayscale", "flip"))], SETTINGS)
    merged = ViewPolicy([LevelSpec(("jitter", "crop")), LevelSpec(("crop", "jitter_grayscale", "flip"))], SETTINGS)
    reference = fused(x, seed=[7, 8])
    assert_same_levels(reference, split(x, seed=[7, 8]))
    assert_same_levels(reference, merged(x, seed=[7, 8]))


def test_colour_late_order_keeps_every_colour_op_out_of_levels_1_to_3():
    policy = AddOneViews(COLOUR_LATE_ORDER, settings=SETTINGS)
    assert COLOUR_LATE_ORDER == ("crop", "flip", "blur", "jitter_grayscale")
    out = policy(images(), seed=[1, 2])
    for k, name in enumerate(out, start=1):
        for side in ("params_a", "params_b"):
            params = out[name][side]
            assert non_identity_rate(params, "crop") > 0.95, (name, "crop")
            if k < 4:
                for key in COLOUR_KEYS:
                    assert non_identity_rate(params, key) == 0.0, (name, key)
            else:
                assert abs(non_identity_rate(params, "jitter_applied") - 0.8) < 0.08
                assert abs(non_identity_rate(params, "grayscale") - 0.2) < 0.08
    # and the level-1..3 views carry the source colours: no jitter, no grayscale (crop/flip/blur only)
    level1 = out["level_1"]["view_a"].numpy()
    assert np.abs(level1[..., 0] - level1[..., 1]).mean() > 0.05  # not grayscaled


def test_crop_must_come_first_in_an_add_one_order():
    with pytest.raises(ValueError, match="'crop' must be the first add-one group"):
        AddOneViews(("flip", "crop", "jitter"), settings=SETTINGS)


def test_config_accepts_the_colour_late_order_and_keeps_the_paper_default():
    config = load_config(None, ["augment.order=[crop, flip, blur, jitter_grayscale]"])
    assert tuple(config.augment.order) == COLOUR_LATE_ORDER
    assert tuple(load_config(None).augment.order) == ("crop_jitter", "grayscale", "blur", "flip")
    with pytest.raises(ConfigError, match="unknown group"):
        load_config(None, ["augment.order=[crop, hue]"])
