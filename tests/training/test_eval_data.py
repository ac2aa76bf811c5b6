"""Which data evaluation reads: labelled splits only, decided and checked before training."""

import os
import sys

import pytest
import tensorflow as tf

from hac_tf.evaluation import LabelError
from hac_tf.training import builders
from hac_tf.training.config import ConfigError, load_config
from hac_tf.training.eval_data import (check_eval_config, eval_split_names, evaluation_skip_reason,
                                       unlabelled_parts)
from hac_tf.training.run import evaluate_encoder, run_experiment
from tiny import REPO, tiny_overrides

sys.path.insert(0, os.path.join(REPO, "tests", "fixtures"))
import tfds_standins  # noqa: E402

STL10 = os.path.join(REPO, "configs", "stl10_simsiam_hierarchical_r18.yaml")


def test_stl10_config_pretrains_on_unlabelled_data_and_evaluates_on_labelled_splits():
    c = load_config(STL10)
    assert unlabelled_parts(c.data.train_split) == ["unlabelled"]  # pretraining uses them
    assert eval_split_names(c) == {"train": "train", "test": "test"}
    assert not any(unlabelled_parts(s) for s in eval_split_names(c).values())
    assert evaluation_skip_reason(c) is None
    check_eval_config(c)


def test_an_unlabelled_eval_split_is_refused_by_name():
    c = load_config(STL10, ["data: {eval_train_split: ''}"])
    with pytest.raises(ConfigError, match=r"data.train_split='train\+unlabelled' includes the "
                                          r"unlabelled split 'unlabelled' \(label -1\).*set "
                                          r"data.eval_train_split"):
        check_eval_config(c)
    c = load_config(STL10, ["data: {test_split: 'unlabelled[:10%]'}"])
    with pytest.raises(ConfigError, match=r"data.test_split='unlabelled\[:10%\]'.*set data.test_split"):
        check_eval_config(c)
    assert unlabelled_parts("train[:50%]+Unlabeled[10:20]") == ["Unlabeled"]
    assert unlabelled_parts("train+test") == []


def test_eval_split_names_are_the_splits_eval_source_reads(tmp_path):
    c = load_config(None, tiny_overrides("data.eval_train_split=test"))
    for role in ("train", "test"):
        _, info = builders.eval_source(c, role, 4)
        assert info.split == eval_split_names(c)[role] == "test"
    c = load_config(None, tiny_overrides(f"data.eval_data_dir={tmp_path}"))
    assert eval_split_names(c) == {"train": f"{tmp_path}:train", "test": f"{tmp_path}:test"}
    check_eval_config(c)


def test_unlabelled_images_without_an_eval_folder_skip_evaluation(tmp_path):
    c = load_config(None, tiny_overrides("data.source=image_folder", f"data.data_dir={tmp_path}",
                                         "data.labels=none"))
    assert "evaluation skipped: data.labels=none" in evaluation_skip_reason(c)
    check_eval_config(c)  # nothing to check: nothing is evaluated
    c = load_config(None, tiny_overrides("data.source=image_folder", f"data.data_dir={tmp_path}",
                                         "data.labels=none", f"data.eval_data_dir={tmp_path}"))
    assert evaluation_skip_reason(c) is None


def test_run_experiment_refuses_an_unlabelled_eval_split_before_building_anything(tmp_path):
    model_dir = tmp_path / "run"
    c = load_config(None, tiny_overrides("data.train_split=train+unlabelled"))
    with pytest.raises(ConfigError, match="train\\+unlabelled"):
        run_experiment(c, str(model_dir), mode="train_and_eval")
    c = load_config(None, tiny_overrides("data.train_split=train+unlabelled", "train.knn_every_steps=2"))
    with pytest.raises(ConfigError, match="train\\+unlabelled"):  # the kNN monitor needs labels too
        run_experiment(c, str(model_dir), mode="train")
    assert not model_dir.exists()


@tf.function
def _pooled_encoder(images):
    """Stand-in encoder with the stage/embedding outputs evaluate_encoder probes."""
    pooled = tf.reduce_mean(images, axis=[1, 2])
    return {"stage1": pooled, "stage4": tf.concat([pooled, pooled ** 2], axis=1), "embedding": pooled}


def test_labels_are_checked_after_feature_extraction_naming_split_and_key(tmp_path):
    tfds_standins.store_stl10(tmp_path, num_train=20, num_test=12, num_unlabelled=8)
    config = load_config(STL10, [f"data.data_dir={tmp_path}", "eval.knn_k=5"])
    results = evaluate_encoder(_pooled_encoder, config)  # the shipped config: labelled splits
    assert set(results) == {"stage1", "stage4", "knn"} and 0.0 <= results["knn"]["label"] <= 1.0
    # what a name cannot reveal (here: evaluate_encoder called without check_eval_config)
    config = load_config(STL10, [f"data.data_dir={tmp_path}", "data.eval_train_split=train+unlabelled"])
    with pytest.raises(LabelError, match=r"split 'train\+unlabelled' has 8 examples with label -1 for "
                                         r"key 'label' \(unlabelled\); evaluate on a labelled split: "
                                         r"set data.eval_train_split"):
        evaluate_encoder(_pooled_encoder, config)
