"""hac_tf.downstream: transfer of an exported backbone to classification, detection and segmentation.

Modules (names are imported lazily; TensorFlow / Model Garden load on first use):

  classifier        Keras 3 linear probe / fine-tuning: ``finetune_classifier(export_dir, ...)``,
                    ``build_classifier``, ``safe_adam`` (``tools/finetune.py``).
  canvas            a generated detection/segmentation set of Fashion-MNIST garments on canvases:
                    ``CanvasSpec``, ``generate_canvases``, ``canvas_dataset``.
  feature_backbone  the export as a TF Model Garden backbone of feature maps (tf_keras):
                    ``SavedModelFeatureBackbone``.
  detection         Model Garden RetinaNet on it: ``DetectionConfig``, ``build_retinanet``,
                    ``detection_inputs``, ``retinanet_loss``.
  segmentation      Model Garden FPN segmentation on it: ``SegmentationConfig``,
                    ``build_segmentation_model``, ``segmentation_inputs``, ``segmentation_loss``.
  dense_training    the training loop of both: ``train_dense``, ``variables_change``.
  transfer          one dense task end to end: build, train, evaluate (``tools/finetune_dense.py``).
  metrics           COCO AP (Model Garden ``COCOEvaluator``) and mean IoU.
  onednn            guard against a TF 2.20 oneDNN crash when training narrow backbones at >= 45 px
                    (TensorFlow-free, so tools can set ``TF_ENABLE_ONEDNN_OPTS`` before importing TF).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "classifier": ("build_classifier", "classification_data", "finetune_classifier", "safe_adam", "write_json"),
    "canvas": ("NUM_GARMENT_CLASSES", "CanvasArrays", "CanvasSpec", "canvas_dataset",
               "generate_canvas", "generate_canvases", "masks_to_boxes"),
    "feature_backbone": ("EXPORT_LEVEL_KEYS", "SavedModelFeatureBackbone", "backbone_images"),
    "detection": ("NUM_DETECTION_CLASSES", "DetectionConfig", "build_retinanet", "detection_inputs",
                  "retinanet_loss"),
    "segmentation": ("NUM_SEGMENTATION_CLASSES", "SegmentationConfig", "build_segmentation_model",
                     "resolve_segmentation_config", "segmentation_inputs", "segmentation_loss"),
    "dense_training": ("snapshot_variables", "train_dense", "variables_change"),
    "transfer": ("DenseTransferSettings", "run_detection", "run_segmentation"),
    "metrics": ("evaluate_detection", "evaluate_segmentation", "pycocotools_available"),
    "onednn": ("configure_onednn", "conv_backprop_crash_risk", "onednn_enabled"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hac_tf.downstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hac_tf.downstream.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
