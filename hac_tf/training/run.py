"""One experiment end to end: train -> evaluate (kNN + per-stage multi-task probe) -> export."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from hac_tf.training import builders
from hac_tf.training.config import ExperimentConfig
from hac_tf.training.trainer import Trainer, build_model


def _features_and_labels(encoder_fn, config: ExperimentConfig, role: str, max_examples: int):
    from hac_tf.evaluation import extract_features

    src, _ = builders.eval_source(config, role, max_examples)
    return extract_features(encoder_fn, src, batch_size=256, progress=True)


def evaluate_encoder(encoder_fn, config: ExperimentConfig) -> Dict[str, Dict[str, float]]:
    """Per-stage linear-probe (and kNN) accuracy for every label key: {feature: {label: acc}}."""
    from hac_tf.evaluation import knn_accuracy, multi_task_probe

    e = config.eval
    train_x, train_y = _features_and_labels(encoder_fn, config, "train", e.probe_max_train)
    test_x, test_y = _features_and_labels(encoder_fn, config, "test", e.probe_max_test)
    keys = tuple(k for k in config.data.label_keys if k in train_y)
    names = [n for n in ("stage1", "stage2", "stage3", "stage4") if n in train_x]
    probe = multi_task_probe(train_x, train_y, test_x, test_y, label_keys=keys, feature_names=names)
    results: Dict[str, Dict[str, float]] = {n: dict(probe[n]) for n in names}
    knn_label = config.data.knn_label
    if knn_label in train_y and "embedding" in train_x:
        k = min(e.knn_k, len(train_y[knn_label]))
        num_classes = int(max(train_y[knn_label].max(), test_y[knn_label].max()) + 1)
        acc = knn_accuracy(train_x["embedding"][: e.knn_max_train], train_y[knn_label][: e.knn_max_train],
                           test_x["embedding"][: e.knn_max_test], test_y[knn_label][: e.knn_max_test],
                           num_classes=num_classes, k=k, temperature=e.knn_temperature)
        results.setdefault("knn", {})[knn_label] = float(acc)
    return results


def run_experiment(config: ExperimentConfig, model_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
                   mode: str = "train_and_eval", progress_stream=None) -> Dict[str, Any]:
    """Trains (resuming if a checkpoint exists), then evaluates and exports (chief only)."""
    trainer = Trainer(config, model_dir, strategy, progress_stream=progress_stream)
    summary: Dict[str, Any] = {"model_dir": model_dir}
    if mode in ("train", "train_and_eval"):
        summary["train"] = trainer.train()
    else:
        trainer.restore()
    if mode == "train" or not trainer.chief:
        return summary
    t0 = time.perf_counter()
    results = {"pretrained": evaluate_encoder(trainer.encoder_fn(), config)}
    if config.eval.random_init_reference:
        with trainer.strategy.scope():
            tf.random.set_seed(config.train.seed + 1)
            reference = build_model(config)
        results["random-init"] = evaluate_encoder(
            tf.function(lambda x: reference.encode(x, training=False), reduce_retracing=True, autograph=False), config)
    summary["eval_seconds"] = time.perf_counter() - t0
    from hac_tf.evaluation import save_report

    out_dir = os.path.join(model_dir, "eval")
    report = save_report(results, out_dir, title=f"{config.model.method} / {config.augment.policy} "
                                                 f"(step {int(trainer.global_step.numpy())})")
    print(report.table, flush=True)
    summary["report"] = {"json": report.json, "png": report.png}
    summary["eval"] = results
    if config.export.enabled:
        from hac_tf.export import export_backbone

        name = config.export.name or os.path.basename(os.path.normpath(model_dir))
        path = export_backbone(trainer.model, config, os.path.join(config.export.base_dir, name),
                               step=int(trainer.global_step.numpy()), metrics=results)
        summary["export"] = path
        print(f"exported backbone to {path}", flush=True)
    with open(os.path.join(model_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    return summary
