"""train.knn_every_steps: a tiny real run logs knn/<label> to metrics.jsonl and TensorBoard at
the monitored steps, with the accuracy of the checkpoint of that step; unlabelled data skips it."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hac_tf.training.config import load_config
from hac_tf.training.knn_monitor import TrainingKnnMonitor
from hac_tf.training.trainer import Trainer
from tiny import run_train, tiny_overrides

KNN = ("model.method=simclr", "train.max_steps=4", "train.knn_every_steps=2", "eval.knn_k=10")


def _tensorboard_scalars(log_dir, tag):
    steps = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    steps[event.step] = float(tf.make_ndarray(value.tensor))
    return steps


@pytest.mark.long(25)
def test_tiny_run_logs_knn_accuracy_at_the_monitored_steps(tmp_path):
    model_dir = tmp_path / "run"
    r = run_train(model_dir, tiny_overrides(*KNN), mode="train")
    assert r.returncode == 0, r.stderr[-4000:]
    with open(model_dir / "metrics.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    logged = {row["step"]: row["knn/garment"] for row in rows if "knn/garment" in row}
    assert sorted(logged) == [2, 4]
    assert not [k for row in rows for k in row if k.startswith("knn/") and k != "knn/garment"]
    assert _tensorboard_scalars(str(model_dir / "train"), "knn/garment") == pytest.approx(logged)

    # the logged value is the kNN accuracy of the step-4 weights on the fixed labelled subset
    config = load_config(None, tiny_overrides(*KNN))
    trainer = Trainer(config, str(model_dir))
    assert trainer.restore() == 4
    monitor = TrainingKnnMonitor(config)
    assert monitor.monitor.num_train == 64 and monitor.monitor.num_test == 32
    assert monitor.evaluate(trainer.encoder_fn())["garment"] == pytest.approx(logged[4], abs=1e-6)


@pytest.mark.long(25)
def test_unlabelled_images_skip_the_monitor_and_evaluation_but_export(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    model_dir, export_dir = tmp_path / "run", tmp_path / "exported"
    overrides = tiny_overrides(*KNN, "train.max_steps=2", "data.source=image_folder", f"data.data_dir={root}",
                               "data.labels=none", "data.label_keys=[label]", "data.knn_label=label",
                               "data.batch_size=8", "export.enabled=true", f"export.base_dir={export_dir}",
                               "export.name=unlabelled")
    r = run_train(model_dir, overrides, mode="train_and_eval")
    assert r.returncode == 0, r.stderr[-4000:]
    assert "kNN monitor (train.knn_every_steps=2) skipped: data.labels=none" in r.stdout
    assert r.stdout.count("evaluation skipped: data.labels=none") == 1
    assert not (model_dir / "eval").exists()
    with open(model_dir / "metrics.jsonl", encoding="utf-8") as f:
        assert not [k for line in f for k in json.loads(line) if k.startswith("knn/")]
    with open(model_dir / "summary.json", encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["eval_skipped"].startswith("evaluation skipped") and "eval" not in summary
    assert summary["export"].startswith(str(export_dir / "unlabelled"))
    assert os.path.exists(os.path.join(summary["export"], "saved_model.pb"))
