"""banded_hue_fashion_mnist: determinism, labels vs continuous hues, pixels, the band is not in the
image mean, the hue difference survives a hue rotation, registry and config wiring."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import tensorflow as tf
from hacdata_helpers import FM_FIXTURE

from hac_tf.augment.colour import adjust_hue
from hac_tf.data import build_source
from hac_tf.data.banded_hue import (
    LABEL_KEYS,
    banded_hue_fashion_mnist,
    banded_hue_fashion_mnist_arrays,
    banded_hue_parameters,
    clear_cache,
    continuous_hues,
    hue_bin,
    render_banded,
)


def _circular_mae(pred_xy: np.ndarray, degrees: np.ndarray) -> float:
    angle = np.degrees(np.arctan2(pred_xy[:, 1], pred_xy[:, 0]))
    return float(np.abs((angle - degrees + 180.0) % 360.0 - 180.0).mean())


def _unit(degrees: np.ndarray) -> np.ndarray:
    r = np.radians(degrees)
    return np.stack([np.cos(r), np.sin(r)], axis=1)


def test_arrays_are_deterministic_and_labels_bin_the_continuous_hues():
    a = banded_hue_fashion_mnist_arrays("train", data_dir=FM_FIXTURE)
    clear_cache()
    b = banded_hue_fashion_mnist_arrays("train", data_dir=FM_FIXTURE)
    assert a is not b
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (64, 32, 32, 3) and a.images.dtype == np.uint8
    assert tuple(a.labels) == LABEL_KEYS
    np.testing.assert_array_equal(a.labels["body_hue"], hue_bin(a.body_hue, 16))
    np.testing.assert_array_equal(a.labels["band_hue"], hue_bin(a.band_hue, 16))
    np.testing.assert_allclose(a.hue_difference, np.mod(a.band_hue - a.body_hue, 360.0))
    np.testing.assert_array_equal(a.labels["hue_difference"], hue_bin(a.hue_difference, 16))
    assert np.all((a.body_hue >= 0) & (a.body_hue < 360)) and len(set(a.labels["body_hue"])) > 8
    assert hue_bin(np.array([0.0, 11.2, 11.3, 359.0, 180.0]), 16).tolist() == [0, 0, 1, 0, 8]
    other_seed = banded_hue_fashion_mnist_arrays("train", seed=1, data_dir=FM_FIXTURE)
    assert not np.array_equal(other_seed.body_hue, a.body_hue)
    test_split = banded_hue_fashion_mnist_arrays("test", data_dir=FM_FIXTURE)
    assert not np.allclose(test_split.body_hue[:32], a.body_hue[:32])  # the split is hashed in
    hues = continuous_hues("test", data_dir=FM_FIXTURE)
    np.testing.assert_array_equal(hues["band_hue"], test_split.band_hue)


def test_pixels_have_the_body_hue_off_the_band_and_the_band_hue_on_it():
    a = banded_hue_fashion_mnist_arrays("test", data_dir=FM_FIXTURE)
    checked = 0
    for i in range(len(a.images)):
        image = a.images[i].astype(np.float64) / 255.0
        top = int(a.band_top[i])
        for row in range(32):
            on_band = top <= row < top + 4
            for col in range(32):
                r, g, b = image[row, col]
                if max(r, g, b) - min(r, g, b) < 0.25:  # background or faint pixel: rounding dominates
                    continue
                hue = 360.0 * colorsys.rgb_to_hsv(r, g, b)[0]
                want = a.band_hue[i] if on_band else a.body_hue[i]
                assert abs((hue - want + 180.0) % 360.0 - 180.0) < 3.0, (i, row, col, hue, want)
                checked += 1
    assert checked > 5000


def test_band_hue_is_not_in_the_image_mean_but_the_body_hue_is():
    # the 96 fixture garments, each drawn 40 times with the parameters of 3840 indices
    from hac_tf.data.fashion_mnist import load_fashion_mnist_arrays
    from sklearn.linear_model import LinearRegression

    gray = np.concatenate([load_fashion_mnist_arrays(s, FM_FIXTURE, allow_download=False).images
                           for s in ("train", "test")])
    gray = np.tile(gray, (40, 1, 1))
    params = banded_hue_parameters(len(gray), "train", seed=3)
    images, band_top = render_banded(gray, params, 32)
    mean_rgb = images.reshape(len(images), -1, 3).mean(axis=1) / 255.0
    fit, held = slice(0, 2880), slice(2880, None)
    errors, r2 = {}, {}
    for name, hue in (("band", params.band_hue), ("body", params.body_hue),
                      ("difference", np.mod(params.band_hue - params.body_hue, 360.0))):
        reg = LinearRegression().fit(mean_rgb[fit], _unit(hue[fit]))
        errors[name] = _circular_mae(reg.predict(mean_rgb[held]), hue[held])
        r2[name] = reg.score(mean_rgb[held], _unit(hue[held]))
    assert errors["band"] > 70.0 and r2["band"] < 0.1, (errors, r2)  # chance: 90 degrees, R^2 0
    assert errors["difference"] > 80.0 and r2["difference"] < 0.05, (errors, r2)
    assert errors["body"] < 25.0 and r2["body"] > 0.5, (errors, r2)
    # ... while the band's own pixels give the band hue away
    band_mean = np.stack([images[i, t:t + 4].reshape(-1, 3).mean(axis=0) for i, t in enumerate(band_top)]) / 255.0
    reg = LinearRegression().fit(band_mean[fit], _unit(params.band_hue[fit]))
    assert _circular_mae(reg.predict(band_mean[held]), params.band_hue[held]) < 15.0


def test_a_hue_rotation_is_the_image_with_both_hues_shifted_and_keeps_the_difference_label():
    from hac_tf.data.fashion_mnist import load_fashion_mnist_arrays

    gray = load_fashion_mnist_arrays("test", FM_FIXTURE, allow_download=False).images
    params = banded_hue_parameters(len(gray), "test", seed=0)
    images, top = render_banded(gray, params, 32)
    for shift in (-0.1, 0.37):  # fraction of the circle, as the colour jitter's hue factor
        rotated = adjust_hue(tf.constant(images, tf.float32) / 255.0, tf.fill([len(images)], shift)).numpy()
        rotated = np.floor(rotated * 255.0 + 0.5)
        moved = params._replace(body_hue=np.mod(params.body_hue + 360.0 * shift, 360.0),
                                band_hue=np.mod(params.band_hue + 360.0 * shift, 360.0))
        expected, top2 = render_banded(gray, moved, 32)
        np.testing.assert_array_equal(top, top2)
        diff = np.abs(rotated - expected.astype(np.float64))
        assert diff.max() <= 3.0 and diff.mean() < 0.3, (diff.max(), diff.mean())  # uint8 rounding only
        np.testing.assert_array_equal(hue_bin(moved.band_hue - moved.body_hue, 16),
                                      hue_bin(params.band_hue - params.body_hue, 16))


def test_dataset_registry_and_config_wiring():
    ds, info = build_source("banded_hue_fashion_mnist", "test", data_dir=FM_FIXTURE, with_info=True)
    arrays = banded_hue_fashion_mnist_arrays("test", data_dir=FM_FIXTURE)
    assert info.num_examples == 32 and info.label_keys == LABEL_KEYS and info.num_classes["band_hue"] == 16
    image, labels = next(iter(ds))
    assert image.dtype == tf.uint8 and image.shape == (32, 32, 3)
    assert {k: int(v) for k, v in labels.items()} == {k: int(v[0]) for k, v in arrays.labels.items()}
    shuffled = [int(y["garment"]) for _, y in banded_hue_fashion_mnist("test", data_dir=FM_FIXTURE, shuffle=True)]
    assert sorted(shuffled) == sorted(arrays.labels["garment"].tolist())

    from hac_tf.training import builders
    from hac_tf.training.config import load_config

    config = load_config(None, ["data.source=banded_hue_fashion_mnist", f"data.data_dir={FM_FIXTURE}",
                                "data.num_colours=8", "data.label_keys=[garment, band_hue]"])
    ds, info = builders.eval_source(config, "test")
    assert info.num_classes["band_hue"] == 8 and info.name == "banded_hue_fashion_mnist"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="band_rows must be in"):
        banded_hue_fashion_mnist_arrays("test", data_dir=FM_FIXTURE, band_rows=40)
    with pytest.raises(ValueError, match="num_bins must be >= 2"):
        banded_hue_fashion_mnist_arrays("test", num_bins=1, data_dir=FM_FIXTURE)
    with pytest.raises(ValueError, match="split must be one of"):
        banded_hue_fashion_mnist_arrays("validation", data_dir=FM_FIXTURE)
