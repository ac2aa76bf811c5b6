"""Linear probe: reaches the optimum, chance on noise, deterministic, train-only statistics,
labelled data only, the same answer as scikit-learn and under every BLAS kernel."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hac_tf.evaluation import LabelError, fit_linear_classifier, linear_probe, sklearn_linear_probe
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


def test_unlabelled_and_out_of_range_labels_are_refused_naming_split_and_key(rng):
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = np.arange(20) % 4
    unlabelled = np.where(np.arange(20) < 5, -1, y)
    with pytest.raises(LabelError, match=r"split 'train\+unlabelled' has 5 examples with label -1 "
                                         r"for key 'label' \(unlabelled\); evaluate on a labelled"):
        linear_probe(x, unlabelled, x, y, split_names=("train+unlabelled", "test"))
    with pytest.raises(LabelError, match=r"split 'test' has 5 examples with labels >= "
                                         r"num_classes=4 for key 'garment' \(7\)"):
        linear_probe(x, y, x, np.where(y == 3, 7, y), 4, label_key="garment")
    with pytest.raises(LabelError, match=r"split 'val' has 1 examples with label -1"):
        linear_probe(x, y, x, np.where(np.arange(20) == 0, -1, y), split_names=("train", "val"))
    with pytest.raises(LabelError, match=r"split 'train' has 1 examples with negative labels "
                                         r"for key 'label' \(-3\)"):
        fit_linear_classifier(x, np.where(np.arange(20) == 0, -3, y), 4)
    with pytest.raises(LabelError, match="non-integer"):
        linear_probe(x, y + 0.5, None, None, 5)
    assert issubclass(LabelError, ValueError)


def _correlated_blobs(rng, n, c, centres=None):
    x, y, centres = _blobs(rng, n, d=16, c=c, sep=0.35, centres=centres)
    x[:, 1] = x[:, 0] * 0.3 + 0.01 * x[:, 1]
    return x, y, centres


@pytest.mark.parametrize("classes,weight_decay", [(5, 1e-4), (5, 1e-2), (2, 1e-3)])
def test_agrees_with_scikit_learn_on_the_same_features(rng, classes, weight_decay):
    xtr, ytr, centres = _correlated_blobs(rng, 1500, classes)
    xte, yte, _ = _correlated_blobs(rng, 1000, classes, centres)
    ours = linear_probe(xtr, ytr, xte, yte, classes, weight_decay=weight_decay, return_model=True)
    ref = sklearn_linear_probe(xtr, ytr, xte, yte, weight_decay=weight_decay)
    assert ours["converged"] and ref["converged"]
    assert 1.2 / classes < ours["test_acc"] < 0.99  # neither chance nor trivially separable
    assert abs(ours["test_acc"] - ref["test_acc"]) <= 0.005
    assert abs(ours["train_acc"] - ref["train_acc"]) <= 0.005
    # the same objective: scikit-learn's solution, scored by ours, is no better than our optimum
    scaler, lr = ref["model"][0], ref["model"][-1]
    coef, bias = lr.coef_.T, lr.intercept_
    if classes == 2:  # one weight vector w = W1 - W0; the symmetric 2-column softmax solution
        coef, bias = np.concatenate([-coef, coef], axis=1) / 2, np.concatenate([-bias, bias]) / 2
    z = ((xtr - scaler.mean_) / scaler.scale_).astype(np.float32)
    sk_loss, _ = _Objective(z, ytr, classes, weight_decay)(np.concatenate([coef.ravel(), bias]))
    assert ours["loss"] <= sk_loss + 1e-9
    assert sk_loss - ours["loss"] < 1e-5 * max(1.0, ours["loss"])


def _run_blas_check(coretype):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blas_kernel_check.py")
    return subprocess.Popen([sys.executable, script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_same_answer_with_and_without_the_haswell_blas_kernel():
    """The probe in fresh processes with OPENBLAS_CORETYPE unset and =Haswell: same answers.

    The former float32 objective stopped with "ABNORMAL" (not converged) on ``correlated`` with
    the Haswell kernel only."""
    procs = {coretype: _run_blas_check(coretype) for coretype in (None, "Haswell")}
    outs = {}
    for coretype, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        outs[coretype] = json.loads(stdout.strip().splitlines()[-1])
    default, haswell = outs[None], outs["Haswell"]
    if haswell.pop("blas_internal_api") == "openblas":
        assert haswell["blas_architecture"] == "Haswell"
    default.pop("blas_internal_api")
    default.pop("blas_architecture"), haswell.pop("blas_architecture")
    assert sorted(default) == sorted(haswell) and len(default) == 4
    for name, a in default.items():
        b = haswell[name]
        assert a["converged"] and b["converged"], (name, a["iterations"], b["iterations"])
        assert a["test_acc"] == b["test_acc"], name
        assert np.mean(np.equal(a["predictions"], b["predictions"])) >= 0.995, name
        assert abs(a["loss"] - b["loss"]) <= 1e-7 * max(1.0, a["loss"]), name
