"""multi_task_probe: each feature decodes only the label it encodes."""

import numpy as np
import pytest

from hac_tf.evaluation import LabelError, multi_task_probe


def _data(rng, n, centres_a, centres_b):
    x = rng.integers(0, 4, n)  # label "x": 4 classes
    y = rng.integers(0, 3, n)  # label "y": 3 classes, independent of x
    feats = {
        "a": (centres_a[x] + rng.normal(size=(n, 8))).astype(np.float32),
        "b": (centres_b[y] + rng.normal(size=(n, 8))).astype(np.float32),
    }
    return feats, {"x": x, "y": y, "unused": np.zeros(n, int)}


def test_each_feature_decodes_only_its_label(rng):
    ca, cb = rng.normal(size=(4, 8)) * 4, rng.normal(size=(3, 8)) * 4
    ftr, ltr = _data(rng, 1500, ca, cb)
    fte, lte = _data(rng, 1500, ca, cb)
    res, details = multi_task_probe(ftr, ltr, fte, lte, label_keys=("x", "y"), with_knn=True,
                                    knn_k=50, return_details=True)
    assert list(res) == ["a", "b"]
    assert set(res["a"]) == {"x", "y", "x/knn", "y/knn"}
    assert res["a"]["x"] > 0.95 and res["b"]["y"] > 0.95
    assert abs(res["a"]["y"] - 1 / 3) < 0.06 and abs(res["b"]["x"] - 1 / 4) < 0.06
    assert res["a"]["x/knn"] > 0.95 and res["b"]["y/knn"] > 0.95
    assert abs(res["a"]["y/knn"] - 1 / 3) < 0.06 and abs(res["b"]["x/knn"] - 1 / 4) < 0.06
    assert details["a"]["x"]["test_acc"] == res["a"]["x"] and "train_acc" in details["b"]["y"]


def test_feature_subset_options_and_errors(rng):
    ca, cb = rng.normal(size=(4, 8)) * 4, rng.normal(size=(3, 8)) * 4
    ftr, ltr = _data(rng, 300, ca, cb)
    fte, lte = _data(rng, 200, ca, cb)
    res = multi_task_probe(ftr, ltr, fte, lte, label_keys="y", feature_names=["b"],
                           num_classes={"y": 5}, probe_kwargs={"max_train": 200, "seed": 1})
    assert res == {"b": {"y": pytest.approx(res["b"]["y"])}} and res["b"]["y"] > 0.9
    with pytest.raises(KeyError):
        multi_task_probe(ftr, ltr, fte, lte, label_keys=("garment",))
    with pytest.raises(KeyError):
        multi_task_probe(ftr, ltr, fte, lte, label_keys=("x",), feature_names=["c"])


def test_unlabelled_labels_are_refused_before_any_probe(rng, caplog):
    ca, cb = rng.normal(size=(4, 8)) * 4, rng.normal(size=(3, 8)) * 4
    ftr, ltr = _data(rng, 100, ca, cb)
    fte, lte = _data(rng, 50, ca, cb)
    ltr["y"][:10] = -1  # only the last label key is unlabelled: nothing may run first
    with caplog.at_level("INFO"):
        with pytest.raises(LabelError, match=r"split 'train\+unlabelled' has 10 examples with "
                                             r"label -1 for key 'y' \(unlabelled\)"):
            multi_task_probe(ftr, ltr, fte, lte, label_keys=("x", "y"), with_knn=True,
                             split_names=("train+unlabelled", "test"))
    assert "multi_task_probe" not in caplog.text
    ltr["y"][:10] = 0
    with pytest.raises(LabelError, match=r"split 'train' has \d+ examples with labels >= "
                                         r"num_classes=2 for key 'y' \(2\)"):
        multi_task_probe(ftr, ltr, fte, lte, label_keys=("y",), num_classes={"y": 2})
