"""Colour measures on synthetic features whose right answer is known, and colour_report end to end."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from hac_tf.evaluation.colour_measures import (
    EvalSet,
    circular_error_degrees,
    circular_mean_degrees,
    colour_report,
    few_shot_accuracy,
    hue_regression,
    hue_to_unit,
    invariance_gap,
    knn_measures,
    shift_sensitivity,
)

FM_FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "fashion_mnist")


@pytest.fixture
def hues():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 360, 1500), rng.uniform(0, 360, 500)


def _bins(h, n=16):
    return (np.floor(np.mod(h, 360) * n / 360 + 0.5).astype(int) % n)


def test_circular_helpers():
    np.testing.assert_allclose(circular_error_degrees([350.0, 10.0, 180.0], [10.0, 350.0, 0.0]), [20.0, 20.0, 180.0])
    np.testing.assert_allclose(circular_mean_degrees(np.array([[350.0, 10.0], [80.0, 100.0]])), [0.0, 90.0], atol=1e-9)


def test_hue_regression_exact_features_give_zero_error_random_give_ninety(hues):
    train_h, test_h = hues
    rng = np.random.default_rng(1)
    exact = hue_regression(np.c_[hue_to_unit(train_h), rng.normal(size=(1500, 6))], train_h,
                           np.c_[hue_to_unit(test_h), rng.normal(size=(500, 6))], test_h)
    assert exact.mae_degrees < 1.0 and exact.r2 > 0.99
    blind = hue_regression(rng.normal(size=(1500, 16)), train_h, rng.normal(size=(500, 16)), test_h)
    assert 80.0 < blind.mae_degrees < 100.0 and blind.r2 < 0.02


def test_knn_measures_on_a_hue_circle_and_on_noise(hues):
    train_h, test_h = hues
    rng = np.random.default_rng(2)
    labels_tr, labels_te = {"hue_bin": _bins(train_h)}, {"hue_bin": _bins(test_h)}
    circle = knn_measures(hue_to_unit(train_h), hue_to_unit(test_h), labels_tr, labels_te,
                          {"hue": train_h}, {"hue": test_h}, k=10)
    assert circle["hue_knn_mae"] < 3.0 and circle["hue_bin_knn_acc"] > 0.85
    noise = knn_measures(rng.normal(size=(1500, 16)), rng.normal(size=(500, 16)), labels_tr, labels_te,
                         {"hue": train_h}, {"hue": test_h}, k=10)
    assert 75.0 < noise["hue_knn_mae"] < 105.0 and noise["hue_bin_knn_acc"] < 0.15
    # cosine, unstandardised: scaling a feature vector changes nothing
    scaled = knn_measures(3.0 * hue_to_unit(train_h), hue_to_unit(test_h), labels_tr, labels_te, k=10)
    assert scaled["hue_bin_knn_acc"] == circle["hue_bin_knn_acc"]


def test_few_shot_separable_and_random():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(10, 32)) * 5
    y_tr, y_te = rng.integers(0, 10, 2000), rng.integers(0, 10, 500)
    x_tr, x_te = centres[y_tr] + rng.normal(size=(2000, 32)), centres[y_te] + rng.normal(size=(500, 32))
    assert few_shot_accuracy(x_tr, y_tr, x_te, y_te, shots=10, draws=3) > 0.97
    chance = few_shot_accuracy(rng.normal(size=(2000, 32)), y_tr, rng.normal(size=(500, 32)), y_te, draws=3)
    assert chance < 0.2
    with pytest.raises(ValueError, match="two classes"):
        few_shot_accuracy(x_tr, np.zeros(2000, int), x_te, y_te)


def test_shift_sensitivity_reads_the_shift_from_circle_features_and_not_from_noise():
    rng = np.random.default_rng(4)
    h = rng.uniform(0, 360, 800)
    d = rng.uniform(-180, 180, 800)
    exact = shift_sensitivity(hue_to_unit(h), hue_to_unit(h + d), d)
    assert exact["shift_r2"] > 0.99 and exact["shift_mae"] < 3.0
    blind = shift_sensitivity(rng.normal(size=(800, 8)), rng.normal(size=(800, 8)), d)
    assert blind["shift_r2"] < 0.05 and blind["shift_mae"] > 35.0
    invariant = rng.normal(size=(800, 8))
    assert shift_sensitivity(invariant, invariant + 1e-9 * rng.normal(size=(800, 8)), d)["shift_r2"] < 0.05


def test_invariance_gap():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(300, 16)) + 2.0  # positive mean: different images are similar too
    other = float(np.mean(np.sum(f * np.roll(f, 1, 0), 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(np.roll(f, 1, 0), axis=1))))
    assert invariance_gap(f, f) == pytest.approx(1.0 - other)
    assert abs(invariance_gap(f, rng.normal(size=(300, 16)) + 2.0)) < 0.05


def test_colour_report_on_banded_hue_with_a_pixel_statistics_encoder():
    from hac_tf.data.banded_hue import banded_hue_fashion_mnist_arrays

    def eval_set(split):
        a = banded_hue_fashion_mnist_arrays(split, num_bins=4, data_dir=FM_FIXTURE)
        return EvalSet(np.asarray(a.images), a.labels,
                       {"body_hue": a.body_hue, "band_hue": a.band_hue, "hue_difference": a.hue_difference})

    def encoder(images):  # "stage1": the mean RGB; "stage2": a fixed random projection of the pixels
        flat = tf.reshape(images, [tf.shape(images)[0], -1])
        proj = tf.constant(np.random.default_rng(0).normal(size=(32 * 32 * 3, 24)), tf.float32)
        return {"stage1": tf.reduce_mean(images, axis=[1, 2]), "stage2": flat @ proj}

    report = colour_report(encoder, eval_set("train"), eval_set("test"), knn_k=5, shots=2, few_shot_draws=2,
                           shift_examples=32)
    assert sorted(report) == ["stage1", "stage2"]
    row = report["stage1"]
    for key in ("body_hue_ridge_mae", "band_hue_ridge_mae", "hue_difference_knn_mae", "band_hue_knn_acc",
                "garment_knn_acc", "garment_knn_weighted", "garment_few_shot", "garment_linear", "shift_r2", "shift_mae", "invariance_gap"):
        assert np.isfinite(row[key]), key
    assert row["body_hue_ridge_mae"] < 40.0 < row["band_hue_ridge_mae"]  # the mean carries the body hue only
    with pytest.raises(ValueError, match="returns none of"):
        colour_report(encoder, eval_set("train"), eval_set("test"), feature_names=("stage4",))
