"""hac_tf.downstream: transfer of an exported backbone to classification, detection and segmentation.

Modules (names are imported lazily; TensorFlow / Model Garden load on first use):

  classifier  Keras 3 linear probe / fine-tuning: ``finetune_classifier(export_dir, ...)``,
              ``build_classifier``, ``safe_adam`` (``tools/finetune.py``).
  canvas      a generated detection/segmentation set of Fashion-MNIST garments on canvases:
              ``CanvasSpec``, ``generate_canvases``, ``canvas_dataset``.
  dense       TF Model Garden RetinaNet and FPN segmentation on the export
              (``SavedModelFeatureBackbone``, ``build_retinanet``, ``build_segmentation_model``,
              input pipelines, losses, ``train_dense``) (``tools/finetune_dense.py``).
  metrics     COCO AP (Model Garden ``COCOEvaluator``) and mean IoU.
  onednn      guard against a TF 2.20 oneDNN crash when training narrow backbones at >= 45 px
              (TensorFlow-free, so tools can set ``TF_ENABLE_ONEDNN_OPTS`` before importing TF).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "classifier": ("build_classifier", "classification_data", "finetune_classifier", "safe_adam", "write_json"),
    "canvas": ("NUM_GARMENT_CLASSES", "CanvasArrays", "CanvasSpec", "canvas_dataset",
               "generate_canvas", "generate_canvases", "masks_to_boxes"),
    "dense": ("DetectionConfig", "NUM_DETECTION_CLASSES", "NUM_SEGMENTATION_CLASSES",
              "SavedModelFeatureBackbone", "SegmentationConfig", "build_retinanet",
              "build_segmentation_model", "detection_inputs", "resolve_segmentation_config",
              "retinanet_loss", "segmentation_inputs", "segmentation_loss", "snapshot_variables",
              "train_dense", "variables_change"),
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
