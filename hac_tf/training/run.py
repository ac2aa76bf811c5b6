"""One experiment end to end: train -> evaluate (kNN + per-stage multi-task probe) -> export.

Evaluation reads labelled data only (hac_tf/training/eval_data.py): the config is checked before
training starts (a split naming unlabelled examples fails in seconds), the labels of every split
right after its features are extracted (label -1 or out of range: an error naming the split and
the key). With ``data.labels: none`` and no ``data.eval_data_dir`` evaluation, the random-init
reference and the kNN monitor are skipped with a one-line notice; the export still happens.
With ``train.knn_every_steps`` > 0 the chief logs ``knn/<data.knn_label>`` during training
(hac_tf/training/knn_monitor.py).
"""

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
from hac_tf.training.eval_data import (check_eval_config, eval_split_names, evaluation_skip_reason,
                                       label_hint)
from hac_tf.training.trainer import Trainer, build_model


def _features_and_labels(encoder_fn, config: ExperimentConfig, role: str, max_examples: int):
    """Features ``{name: float32 [N, D]}`` and checked labels ``{key: int64 [N]}`` of a role.

    Only the keys of ``data.label_keys`` are kept. Raises LabelError (naming the split and the
    key) when a kept label is -1 (unlabelled) or outside the source's known class range, or when
    the split has none of ``data.label_keys``.
    """
    from hac_tf.evaluation import LabelError, check_labels, extract_features

    src, info = builders.eval_source(config, role, max_examples)
    split = eval_split_names(config)[role]
    features, labels = extract_features(encoder_fn, src, batch_size=256, progress=True)
    keys = [k for k in config.data.label_keys if k in labels]
    if not keys:
        raise LabelError(f"split {split!r} has labels {sorted(labels)}, none of data.label_keys="
                         f"{list(config.data.label_keys)}; {label_hint(config, role)}")
    checked = {}
    for key in keys:
        known = info.num_classes.get(key, -1)
        checked[key] = check_labels(labels[key], known if known > 0 else None, split=split, key=key,
                                    hint=label_hint(config, role))
    return features, checked


def evaluate_encoder(encoder_fn, config: ExperimentConfig) -> Dict[str, Dict[str, float]]:
    """Per-stage linear-probe (and kNN) accuracy for every label key: {feature: {label: acc}}."""
    from hac_tf.evaluation import knn_accuracy, multi_task_probe

    e = config.eval
    splits = eval_split_names(config)
    split_names = (splits["train"], splits["test"])
    train_x, train_y = _features_and_labels(encoder_fn, config, "train", e.probe_max_train)
    test_x, test_y = _features_and_labels(encoder_fn, config, "test", e.probe_max_test)
    keys = tuple(k for k in config.data.label_keys if k in train_y and k in test_y)
    names = [n for n in ("stage1", "stage2", "stage3", "stage4") if n in train_x]
    probe = multi_task_probe(train_x, train_y, test_x, test_y, label_keys=keys, feature_names=names,
                             split_names=split_names)
    results: Dict[str, Dict[str, float]] = {n: dict(probe[n]) for n in names}
    knn_label = config.data.knn_label
    if knn_label in keys and "embedding" in train_x:
        k = min(e.knn_k, len(train_y[knn_label]))
        num_classes = int(max(train_y[knn_label].max(), test_y[knn_label].max()) + 1)
        acc = knn_accuracy(train_x["embedding"][: e.knn_max_train], train_y[knn_label][: e.knn_max_train],
                           test_x["embedding"][: e.knn_max_test], test_y[knn_label][: e.knn_max_test],
                           num_classes=num_classes, k=k, temperature=e.knn_temperature,
                           label_key=knn_label, split_names=split_names)
        results.setdefault("knn", {})[knn_label] = float(acc)
    return results


def _knn_monitor(config: ExperimentConfig, skip_reason: Optional[str]):
    """The chief's kNN monitor, read and label-checked now (before training), or None."""
    if not config.train.knn_every_steps:
        return None
    if skip_reason:
        print(f"kNN monitor (train.knn_every_steps={config.train.knn_every_steps}) skipped: "
              f"{skip_reason.removeprefix('evaluation skipped: ')}", flush=True)
        return None
    from hac_tf.training.knn_monitor import TrainingKnnMonitor

    monitor = TrainingKnnMonitor(config)
    monitor.prepare()
    return monitor


def run_experiment(config: ExperimentConfig, model_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
                   mode: str = "train_and_eval", progress_stream=None) -> Dict[str, Any]:
    """Trains (resuming if a checkpoint exists), then evaluates and exports (chief only).

    Raises ConfigError before anything is built when evaluation (or the kNN monitor) would read
    an unlabelled split (`check_eval_config`), and LabelError when evaluation data turns out to
    have unusable labels (at the start for the kNN monitor, else after feature extraction).
    """
    skip_reason = evaluation_skip_reason(config)
    training = mode in ("train", "train_and_eval")
    if mode != "train" or (training and config.train.knn_every_steps):
        check_eval_config(config)
    trainer = Trainer(config, model_dir, strategy, progress_stream=progress_stream)
    summary: Dict[str, Any] = {"model_dir": model_dir}
    if training:
        monitor = _knn_monitor(config, skip_reason) if trainer.chief else None
        summary["train"] = trainer.train(knn_monitor=monitor)
    else:
        trainer.restore()
    if mode == "train" or not trainer.chief:
        return summary
    if skip_reason:
        print(skip_reason, flush=True)
        summary["eval_skipped"] = skip_reason
        results = None
    else:
        t0 = time.perf_counter()
        results = {"pretrained": evaluate_encoder(trainer.encoder_fn(), config)}
        if config.eval.random_init_reference:
            with trainer.strategy.scope():
                tf.random.set_seed(config.train.seed + 1)
                reference = build_model(config)
            results["random-init"] = evaluate_encoder(
                tf.function(lambda x: reference.encode(x, training=False), reduce_retracing=True, autograph=False),
                config)
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
