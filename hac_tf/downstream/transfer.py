"""Dense transfer of an exported backbone, one task at a time: build the Model Garden model on
the export, train it on garment canvases, evaluate it (the library side of
``hac-finetune-dense`` / ``tools/finetune_dense.py``).

    settings = DenseTransferSettings(export_dir="saved_models/hier", steps=200)
    result = run_detection(settings, train_canvases, test_canvases)     # {"coco": {...}, "train": {...}, ...}
    result = run_segmentation(settings, train_canvases, test_canvases)  # {"segmentation": {...}, ...}

``train_canvases`` / ``test_canvases`` are :func:`hac_tf.downstream.canvas.canvas_dataset`
datasets. Each run fine-tunes the whole backbone unless ``freeze_backbone``; the change of the
backbone weights is reported in ``result["train"]``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict

import tensorflow as tf

from hac_tf.downstream import detection, metrics, segmentation
from hac_tf.downstream.dense_training import train_dense
from hac_tf.downstream.feature_backbone import SavedModelFeatureBackbone


@dataclasses.dataclass(frozen=True)
class DenseTransferSettings:
    """What a dense transfer run trains: the export, canvas side, steps and optimisation, the
    RetinaNet levels and anchor size, and the backbone's feature-level naming."""

    export_dir: str
    canvas_size: int = 64
    steps: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-3
    freeze_backbone: bool = False
    level_naming: str = "stride"  # "stride": log2 of the measured stride; "export": the export's '2'..'5'
    min_level: int = 2
    max_level: int = 4
    anchor_size: float = 3.0
    verbose: int = 1


def _backbone(s: DenseTransferSettings) -> SavedModelFeatureBackbone:
    return SavedModelFeatureBackbone(s.export_dir, (s.canvas_size, s.canvas_size),
                                     trainable=not s.freeze_backbone, level_naming=s.level_naming)


def train_summary(history: Dict[str, Any]) -> Dict[str, Any]:
    """``train_dense``'s history without the per-step losses, plus ``final_losses`` (last value of each)."""
    out = {k: v for k, v in history.items() if k != "losses"}
    out["final_losses"] = {k: v[-1] for k, v in history["losses"].items()}
    return out


def run_detection(s: DenseTransferSettings, train: tf.data.Dataset, test: tf.data.Dataset) -> Dict[str, Any]:
    """RetinaNet (FPN + RetinaNet head, focal + Huber loss) trained for ``s.steps`` steps;
    returns ``{"coco": COCO box AP dict, "train": summary, "eval_seconds", "config", "levels"}``."""
    config = detection.DetectionConfig(min_level=s.min_level, max_level=s.max_level, anchor_size=s.anchor_size)
    size = (s.canvas_size, s.canvas_size)
    backbone = _backbone(s)
    model = detection.build_retinanet(backbone, config)
    print(f"[detection] RetinaNet on backbone levels {backbone.levels} "
          f"(export keys -> levels {backbone.level_of_export_key}); FPN/head levels "
          f"{config.min_level}..{config.max_level}; {config.anchors_per_location} anchors/location")
    train_ds = detection.detection_inputs(train, config, size, s.batch_size, training=True)
    history = train_dense(
        model, train_ds, lambda o, l: detection.retinanet_loss(o, l, detection.NUM_DETECTION_CLASSES, config),
        s.steps, learning_rate=s.learning_rate, verbose=s.verbose)
    t = time.time()
    coco = metrics.evaluate_detection(model, detection.detection_inputs(test, config, size, s.batch_size,
                                                                        training=False))
    return {"coco": coco, "train": train_summary(history), "eval_seconds": time.time() - t,
            "config": dataclasses.asdict(config), "levels": backbone.levels}


def run_segmentation(s: DenseTransferSettings, train: tf.data.Dataset, test: tf.data.Dataset) -> Dict[str, Any]:
    """FPN + segmentation head (softmax cross-entropy) trained for ``s.steps`` steps; returns
    ``{"segmentation": mean IoU dict, "train": summary, "eval_seconds", "config", "levels"}``."""
    size = (s.canvas_size, s.canvas_size)
    backbone = _backbone(s)
    config = segmentation.resolve_segmentation_config(backbone)
    model = segmentation.build_segmentation_model(backbone, config)
    print(f"[segmentation] FPN levels {config.min_level}..{config.max_level}, head on level "
          f"{config.head_level}, {segmentation.NUM_SEGMENTATION_CLASSES} classes (0 = background)")
    train_ds = segmentation.segmentation_inputs(train, size, s.batch_size, training=True)
    history = train_dense(model, train_ds, segmentation.segmentation_loss, s.steps,
                          learning_rate=s.learning_rate, verbose=s.verbose)
    t = time.time()
    seg = metrics.evaluate_segmentation(model, segmentation.segmentation_inputs(test, size, s.batch_size,
                                                                                training=False))
    return {"segmentation": seg, "train": train_summary(history), "eval_seconds": time.time() - t,
            "config": dataclasses.asdict(config), "levels": backbone.levels}


def backbone_change_line(task: str, train: Dict[str, Any]) -> str:
    """One line: how many backbone variables (and BN statistics) training changed, and by how much."""
    ch, bn = train["backbone_trainable_change"], train["backbone_bn_statistics_change"]
    return (f"[{task}] backbone weights changed by training: {ch['num_changed']}/{ch['num_variables']} "
            f"trainable variables (max |dw| {ch['max_abs_change']:.3g}, mean {ch['mean_abs_change']:.3g}); "
            f"BN statistics {bn['num_changed']}/{bn['num_variables']}")
