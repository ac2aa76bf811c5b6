"""Linear probe: reaches the optimum, chance on noise, deterministic, train-only statistics."""

import numpy as np
import pytest

from hac_tf.evaluation import fit_linear_classifier, linear_probe
from hac_tf.evaluation.linear import _Objective


def _blobs(rng, n, d=20, c=4, sep=6.0, centres=None):
    if centres is None:
        centres = rng.normal(size=(c, d)) * sep
    y = rng.integers(0, c, n)
    x = centres[y] + rng.normal(size=(n, d))
    # anisotropic, offset features like real activations
    scale = np.geomspace(0.01, 100.0, d)
    return (x * scale + 50.0).astype(np.float32), y, centres


def test_separable_reaches_100_percent(rng):
    xtr, ytr, centres = _blobs(rng, 600)
    xte, yte, _ = _blobs(rng, 300, centres=centres)
    out = linear_probe(xtr, ytr, xte, yte, num_classes=4)
    assert out["train_acc"] == 1.0
    assert out["test_acc"] >= 0.99
    assert out["converged"]


def test_separable_but_close_classes_needs_a_real_optimum(rng):
    # linearly separable by construction (label = sign pattern of 2 directions, margin 0.05 in
    # standard-normal features): only an optimiser run to convergence fits every point
    x = rng.normal(size=(2000, 10)).astype(np.float32)
    x[:, :2] += np.sign(x[:, :2]) * 0.05
    y = (x[:, 0] > 0).astype(int) * 2 + (x[:, 1] > 0).astype(int)
    out = linear_probe(x, y, x, y, num_classes=4, weight_decay=1e-6, epochs=2000)
    assert out["train_acc"] >= 0.998


def test_random_labels_give_chance_on_test(rng):
    c = 4
    xtr = rng.normal(size=(2000, 16)).astype(np.float32)
    xte = rng.normal(size=(4000, 16)).astype(np.float32)
    out = linear_probe(xtr, rng.integers(0, c, 2000), xte, rng.integers(0, c, 4000), c)
    assert abs(out["test_acc"] - 1.0 / c) < 0.04
    assert out["train_acc"] > out["test_acc"]  # it does fit the noise a little


def test_deterministic_for_a_seed(rng):
    xtr, ytr, centres = _blobs(rng, 800, sep=0.5)
    xte, yte, _ = _blobs(rng, 200, centres=centres)
    a = linear_probe(xtr, ytr, xte, yte, 4, max_train=500, seed=3, return_model=True)
    b = linear_probe(xtr, ytr, xte, yte, 4, max_train=500, seed=3, return_model=True)
    c = linear_probe(xtr, ytr, xte, yte, 4, max_train=500, seed=4, return_model=True)
    np.testing.assert_array_equal(a["model"].weights, b["model"].weights)
    np.testing.assert_array_equal(a["model"].bias, b["model"].bias)
    assert a["train_acc"] == b["train_acc"] and a["test_acc"] == b["test_acc"]
    assert a["num_train"] == 500
    assert not np.array_equal(a["model"].mean, c["model"].mean)  # another subset


def test_standardisation_uses_train_statistics_only(rng):
    xtr, ytr, centres = _blobs(rng, 500, sep=1.0)
    xte, yte, _ = _blobs(rng, 300, centres=centres)
    a = linear_probe(xtr, ytr, xte, yte, 4, return_model=True)
    model = a["model"]
    np.testing.assert_allclose(model.mean, xtr.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(model.scale, xtr.std(axis=0), rtol=1e-4)
    # the test set has no influence on the classifier: shifting it changes only its accuracy
    b = linear_probe(xtr, ytr, xte + 1000.0, yte, 4, return_model=True)
    np.testing.assert_array_equal(model.weights, b["model"].weights)
    np.testing.assert_array_equal(model.mean, b["model"].mean)
    assert a["train_acc"] == b["train_acc"]
    assert b["test_acc"] < a["test_acc"]  # test-set statistics would have hidden the shift
    # the reported test accuracy is that of train-standardised test features
    z = (xte - xtr.mean(0)) / xtr.std(0)
    manual = np.argmax(z @ model.weights + model.bias, axis=1)
    assert abs(np.mean(manual == yte) - a["test_acc"]) <= 1.0 / 300


def test_standardisation_makes_feature_scale_irrelevant(rng):
    xtr, ytr, centres = _blobs(rng, 400, sep=0.8)
    xte, yte, _ = _blobs(rng, 200, centres=centres)
    s = np.geomspace(1e-3, 1e3, xtr.shape[1]).astype(np.float32)
    a = linear_probe(xtr, ytr, xte, yte, 4)
    b = linear_probe(xtr * s, ytr, xte * s, yte, 4)
    assert abs(a["test_acc"] - b["test_acc"]) <= 2.0 / 200


def test_analytic_gradient_matches_finite_differences(rng):
    z = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    a = rng.normal(size=(6, 6))
    precond = a @ a.T + np.eye(6)  # any symmetric P: objective in V with W = P V
    for p in (None, precond):
        obj = _Objective(z, y, 3, 1e-2, p)
        theta = rng.normal(size=6 * 3 + 3) * 0.3
        _, g = obj(theta)
        for _ in range(3):
            direction = rng.normal(size=theta.shape)
            eps = 1e-3
            up, down = obj(theta + eps * direction)[0], obj(theta - eps * direction)[0]
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - g @ direction) < 2e-4 * max(1.0, abs(numeric))


def test_default_stop_is_at_the_optimum_with_and_without_preconditioning(rng):
    xtr, ytr, _ = _blobs(rng, 600, d=12, c=3, sep=0.5)
    xtr[:, 1] = xtr[:, 0] * 0.3 + 0.01 * xtr[:, 1]  # strongly correlated features
    tight, tight_info = fit_linear_classifier(xtr, ytr, 3, weight_decay=1e-3, tol=1e-14,
                                              max_iter=5000)
    for precondition in (True, False):
        clf, info = fit_linear_classifier(xtr, ytr, 3, weight_decay=1e-3,
                                          precondition=precondition)
        assert info["converged"]
        assert 0.0 <= info["loss"] - tight_info["loss"] < 1e-6
        np.testing.assert_allclose(clf.weights, tight.weights, atol=2e-2)
        np.testing.assert_array_equal(clf.predict(xtr), tight.predict(xtr))
    # the tight solution has a vanishing gradient of the original objective
    z = ((xtr - tight.mean) / tight.scale).astype(np.float32)
    f, g = _Objective(z, ytr, 3, 1e-3)(np.concatenate([tight.weights.ravel(), tight.bias]))
    assert abs(f - tight_info["loss"]) < 1e-6 and np.abs(g).max() < 1e-5


def test_weight_decay_selection_and_no_test_set(rng):
    xtr, ytr, centres = _blobs(rng, 500, sep=0.6)
    out = linear_probe(xtr, ytr, None, None, 4, weight_decay=[1e-4, 1e-2, 1.0])
    assert set(out["val_acc"]) == {1e-4, 1e-2, 1.0}
    assert out["weight_decay"] == max(out["val_acc"], key=lambda w: (out["val_acc"][w], w))
    assert out["test_acc"] is None and 0.0 <= out["train_acc"] <= 1.0


def test_bad_inputs(rng):
    x = rng.normal(size=(10, 3)).astype(np.float32)
    with pytest.raises(ValueError):
        linear_probe(x, np.arange(9), None, None, 10)
    with pytest.raises(ValueError):
        linear_probe(x, np.arange(10), None, None, 5)  # label >= num_classes
    with pytest.raises(ValueError):
        linear_probe(x, np.arange(10) % 2, x[:, :2], np.zeros(10), 2)
