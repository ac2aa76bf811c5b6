"""Dense-task transfer: TF Model Garden RetinaNet and FPN semantic segmentation on an exported backbone.

Model Garden (``official.vision``) models are tf_keras (Keras 2) models. The exported backbone is
loaded with ``tensorflow_hub.KerasLayer`` (the export's TF-Hub style ``__call__(images, training)``)
inside :class:`SavedModelFeatureBackbone`, a functional ``tf_keras.Model`` that returns the
export's spatial maps as a ``{level: tensor}`` dict and exposes ``output_specs`` — exactly what
Model Garden's decoders and models need from a backbone.

Levels. Model Garden names a feature map by ``level = log2(stride)`` (anchors of level ``l`` are
placed every ``2**l`` pixels and sized ``anchor_size * 2**l``). The export keys its maps
``"2".."5"`` (stage 1..4) whatever the stem; that equals ``log2(stride)`` only for the ImageNet
stem (strides 4..32). The CIFAR stem has strides 1, 2, 4, 8, so with ``level_naming="stride"``
(default) the wrapper probes the real strides and re-keys the maps ``"0".."3"``; anchors and
feature maps then line up for either stem. ``level_naming="export"`` keeps ``"2".."5"``.

Pieces (all Model Garden classes unless noted):

* detection: ``decoders.FPN`` → ``heads.RetinaNetHead`` → ``retinanet_model.RetinaNetModel`` with
  ``layers.MultilevelDetectionGenerator``; anchors from ``ops.anchor.build_anchor_generator`` and
  targets from ``ops.anchor.AnchorLabeler`` (in the ``tf.data`` pipeline, as Model Garden's
  RetinaNet parser does); loss = ``losses.focal_loss.FocalLoss`` + ``box_loss_weight`` × Huber,
  both normalised by the number of positive anchors (the formula of
  ``tasks.retinanet.RetinaNetTask.build_losses``); evaluation with
  ``evaluation.coco_evaluator.COCOEvaluator`` (pycocotools) in :mod:`hac_tf.downstream.metrics`.
* segmentation: ``decoders.FPN`` → ``heads.SegmentationHead`` →
  ``segmentation_model.SegmentationModel``; loss ``losses.segmentation_losses.SegmentationLoss``;
  mean IoU with ``evaluation.segmentation_metrics.MeanIoU`` / ``PerClassIoU``.

Training loops are plain ``tf.GradientTape`` steps (own code) with a tf_keras optimizer and a
``tf_keras.utils.Progbar``. Class ids: the canvases' garment classes ``0..9`` become detection
classes ``1..10`` (Model Garden's convention: 0 is the implicit background, dropped by the
detection generator) and segmentation classes ``1..10`` with 0 = background.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tf_keras

from hac_tf.downstream.canvas import NUM_GARMENT_CLASSES

__all__ = [
    "SavedModelFeatureBackbone",
    "DetectionConfig",
    "SegmentationConfig",
    "build_retinanet",
    "build_segmentation_model",
    "resolve_segmentation_config",
    "detection_inputs",
    "segmentation_inputs",
    "retinanet_loss",
    "segmentation_loss",
    "train_dense",
    "snapshot_variables",
    "variables_change",
]

EXPORT_LEVEL_KEYS = ("2", "3", "4", "5")
NUM_DETECTION_CLASSES = NUM_GARMENT_CLASSES + 1     # + implicit background 0
NUM_SEGMENTATION_CLASSES = NUM_GARMENT_CLASSES + 1  # background 0, garment c -> c + 1


# ----------------------------------------------------------------------------- backbone
def _warn_onednn_risk(version_dir: str, side: int, trainable: bool) -> None:
    from absl import logging

    from hac_tf.downstream.onednn import ONEDNN_ENV, conv_backprop_crash_risk, onednn_enabled

    reason = conv_backprop_crash_risk(version_dir, side) if trainable and onednn_enabled() else None
    if reason:
        logging.warning("Training may crash the process: %s. Set %s=0 before importing TensorFlow "
                        "(see hac_tf.downstream.onednn).", reason, ONEDNN_ENV)


class SavedModelFeatureBackbone(tf_keras.Model):
    """A hac_tf export as a Model Garden backbone (tf_keras functional model).

    Input: float32 ``[N, H, W, 3]`` images in [0, 1] with the fixed ``input_size``. Output: a dict
    ``{level: [N, h, w, C]}``; with ``level_naming="stride"`` ``h = H / 2**level`` (see the module
    doc). Weights: the
    ``hub.KerasLayer`` (``self.hub_layer``) holds the restored variables; with ``trainable=True``
    and ``training=True`` BatchNorm uses batch statistics and updates its moving averages.

    Args:
      path: export base path (latest version) or version directory.
      input_size: ``(H, W)`` or an int side.
      trainable: fine-tune the backbone.
      levels: keep only these levels (strings or ints, after renaming); None = all four.
      level_naming: "stride" (``log2`` of the measured stride) or "export" (``"2".."5"``).
    """

    def __init__(self, path: Union[str, os.PathLike], input_size: Union[int, Sequence[int]],
                 trainable: bool = True, levels: Optional[Sequence[Union[int, str]]] = None,
                 level_naming: str = "stride", name: str = "saved_model_backbone", **kwargs):
        import tensorflow_hub as hub

        from hac_tf.export import resolve_version_dir

        if level_naming not in ("stride", "export"):
            raise ValueError(f"level_naming must be 'stride' or 'export', got {level_naming!r}")
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        height, width = (int(v) for v in input_size)
        version_dir = resolve_version_dir(path)
        _warn_onednn_risk(version_dir, max(height, width), trainable)
        hub_layer = hub.KerasLayer(version_dir, trainable=trainable, name="saved_model")
        inputs = tf_keras.Input(shape=(height, width, 3), name="images")
        outputs = hub_layer(inputs)
        missing = [k for k in EXPORT_LEVEL_KEYS if k not in outputs]
        if missing:
            raise ValueError(f"{version_dir}: the export's __call__ returns no feature maps {missing} "
                             f"(keys: {sorted(outputs)}); is it a hac_tf backbone export?")
        rename = {}
        for key in EXPORT_LEVEL_KEYS:
            fh, fw = outputs[key].shape[1:3]
            if level_naming == "export":
                rename[key] = key
                continue
            stride_y, stride_x = height / fh, width / fw
            level = math.log2(stride_y)
            if stride_y != stride_x or abs(level - round(level)) > 1e-6:
                raise ValueError(
                    f"map {key!r} of {version_dir} is {fh}x{fw} for a {height}x{width} input: the stride "
                    "is not the same power of two on both axes; use an input size divisible by the "
                    "coarsest stride (or level_naming='export')")
            rename[key] = str(int(round(level)))
        endpoints = {rename[k]: outputs[k] for k in EXPORT_LEVEL_KEYS}
        if levels is not None:
            wanted = [str(level) for level in levels]
            bad = [level for level in wanted if level not in endpoints]
            if bad:
                raise ValueError(f"levels {bad} not among the backbone's levels {sorted(endpoints, key=int)}")
            endpoints = {k: endpoints[k] for k in wanted}
        super().__init__(inputs=inputs, outputs=endpoints, name=name, **kwargs)
        self.hub_layer = hub_layer
        self.version_dir = version_dir
        self.level_of_export_key = dict(rename)
        self._output_specs = {k: v.get_shape() for k, v in endpoints.items()}
        self._init_args = dict(path=version_dir, input_size=(height, width), trainable=trainable,
                               levels=None if levels is None else [str(v) for v in levels],
                               level_naming=level_naming, name=name)

    @property
    def output_specs(self) -> Dict[str, tf.TensorShape]:
        """``{level: TensorShape([None, h, w, c])}``, as Model Garden backbones report it."""
        return dict(self._output_specs)

    @property
    def levels(self) -> List[int]:
        return sorted(int(k) for k in self._output_specs)

    def get_config(self) -> Dict[str, Any]:
        return dict(self._init_args)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


# ----------------------------------------------------------------------------- configs
@dataclasses.dataclass
class DetectionConfig:
    """RetinaNet settings (small defaults for 64..96 px canvases on CPU).

    With the default levels 2..4 and ``anchor_size=3`` the anchors are 12/17, 24/34 and 48/68 px
    (two scales per octave, three aspect ratios): the garments are 5..48 px.
    """

    min_level: int = 2
    max_level: int = 4
    num_scales: int = 2
    aspect_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_size: float = 3.0
    fpn_filters: int = 64
    head_convs: int = 2
    head_filters: int = 64
    match_threshold: float = 0.5
    unmatched_threshold: float = 0.4
    focal_alpha: float = 0.25
    focal_gamma: float = 1.5
    huber_delta: float = 0.1
    box_loss_weight: float = 50.0
    pre_nms_score_threshold: float = 0.001
    nms_iou_threshold: float = 0.5
    max_num_detections: int = 50
    nms_version: str = "v2"

    @property
    def anchors_per_location(self) -> int:
        return self.num_scales * len(self.aspect_ratios)

    def anchor_boxes(self, image_size: Sequence[int]) -> "collections.OrderedDict[str, tf.Tensor]":
        from official.vision.ops import anchor

        gen = anchor.build_anchor_generator(self.min_level, self.max_level, self.num_scales,
                                            list(self.aspect_ratios), self.anchor_size)
        return gen(list(image_size))


@dataclasses.dataclass
class SegmentationConfig:
    """FPN segmentation settings. ``None`` levels are chosen from the backbone: the FPN spans
    ``max(1, backbone min level)`` .. backbone max level and the head sits on its finest level,
    upsampled (nearest) back to the input resolution."""

    min_level: Optional[int] = None
    max_level: Optional[int] = None
    head_level: Optional[int] = None
    fpn_filters: int = 64
    head_convs: int = 2
    head_filters: int = 64
    label_smoothing: float = 0.0
    ignore_label: int = 255


# ----------------------------------------------------------------------------- models
def build_retinanet(backbone: SavedModelFeatureBackbone, config: Optional[DetectionConfig] = None,
                    num_classes: int = NUM_DETECTION_CLASSES):
    """Model Garden ``RetinaNetModel`` (FPN decoder, RetinaNet head, multilevel NMS) on ``backbone``."""
    from official.vision.modeling import retinanet_model
    from official.vision.modeling.decoders import fpn
    from official.vision.modeling.heads import dense_prediction_heads
    from official.vision.modeling.layers import detection_generator

    config = config or DetectionConfig()
    levels = backbone.levels
    if config.min_level < levels[0] or config.min_level > levels[-1]:
        raise ValueError(f"RetinaNet min_level={config.min_level} must be one of the backbone's levels "
                         f"{levels}")
    if config.max_level < config.min_level:
        raise ValueError("max_level must be >= min_level")
    decoder = fpn.FPN(input_specs=backbone.output_specs, min_level=config.min_level,
                      max_level=config.max_level, num_filters=config.fpn_filters)
    head = dense_prediction_heads.RetinaNetHead(
        min_level=config.min_level, max_level=config.max_level, num_classes=num_classes,
        num_anchors_per_location=config.anchors_per_location, num_convs=config.head_convs,
        num_filters=config.head_filters)
    height, width = backbone.input_shape[1:3]
    # Builds decoder and head (as official.vision.modeling.factory.build_retinanet does).
    _ = head(decoder(backbone(tf_keras.Input((height, width, 3)))))
    generator = detection_generator.MultilevelDetectionGenerator(
        apply_nms=True, pre_nms_score_threshold=config.pre_nms_score_threshold,
        nms_iou_threshold=config.nms_iou_threshold, max_num_detections=config.max_num_detections,
        nms_version=config.nms_version)
    return retinanet_model.RetinaNetModel(
        backbone, decoder, head, generator, anchor_boxes=config.anchor_boxes((height, width)),
        min_level=config.min_level, max_level=config.max_level, num_scales=config.num_scales,
        aspect_ratios=list(config.aspect_ratios), anchor_size=config.anchor_size)


def resolve_segmentation_config(backbone: SavedModelFeatureBackbone,
                                config: Optional[SegmentationConfig] = None) -> SegmentationConfig:
    """``config`` with its ``None`` levels filled in for ``backbone``."""
    config = dataclasses.replace(config or SegmentationConfig())
    levels = backbone.levels
    if config.min_level is None:
        config.min_level = max(1, levels[0]) if levels[-1] >= 1 else levels[0]
    if config.max_level is None:
        config.max_level = levels[-1]
    if config.head_level is None:
        config.head_level = config.min_level
    if not levels[0] <= config.min_level <= config.head_level <= config.max_level:
        raise ValueError(f"need backbone min level {levels[0]} <= min_level {config.min_level} <= "
                         f"head_level {config.head_level} <= max_level {config.max_level}")
    return config


def build_segmentation_model(backbone: SavedModelFeatureBackbone,
                             config: Optional[SegmentationConfig] = None,
                             num_classes: int = NUM_SEGMENTATION_CLASSES):
    """Model Garden ``SegmentationModel`` (FPN decoder + ``SegmentationHead``) on ``backbone``.

    The logits come out at input resolution (the head upsamples its level by its stride).
    """
    from official.vision.modeling import segmentation_model
    from official.vision.modeling.decoders import fpn
    from official.vision.modeling.heads import segmentation_heads

    config = resolve_segmentation_config(backbone, config)
    height, width = backbone.input_shape[1:3]
    decoder = fpn.FPN(input_specs=backbone.output_specs, min_level=config.min_level,
                      max_level=config.max_level, num_filters=config.fpn_filters)
    head_size = int(decoder.output_specs[str(config.head_level)][1])
    upsample = max(1, height // head_size)
    head = segmentation_heads.SegmentationHead(
        num_classes=num_classes, level=config.head_level, num_convs=config.head_convs,
        num_filters=config.head_filters, upsample_factor=upsample)
    model = segmentation_model.SegmentationModel(backbone, decoder, head)
    model(tf_keras.Input((height, width, 3)))  # builds every layer
    return model


# ----------------------------------------------------------------------------- inputs
def _groundtruths(example: Mapping[str, tf.Tensor], image_size: Sequence[int]) -> Dict[str, tf.Tensor]:
    classes = tf.cast(example["classes"], tf.int32)
    return {
        "source_id": tf.cast(example["source_id"], tf.int64),
        "height": tf.constant(int(image_size[0]), tf.int32),
        "width": tf.constant(int(image_size[1]), tf.int32),
        "num_detections": tf.cast(example["num_objects"], tf.int32),
        "boxes": tf.cast(example["boxes"], tf.float32),
        # Model Garden ids: garment c -> c + 1 (0 is the background); padding stays -1.
        "classes": tf.where(classes >= 0, classes + 1, -1),
    }


def _images(example) -> tf.Tensor:
    """uint8 canvas -> float32 in [0, 1] (the export normalises internally)."""
    return tf.cast(example["image"], tf.float32) / 255.0


def detection_inputs(canvases: tf.data.Dataset, config: Optional[DetectionConfig], image_size: Sequence[int],
                     batch_size: int, training: bool, repeat: Optional[bool] = None) -> tf.data.Dataset:
    """Canvas elements -> ``(images float32 [B,H,W,3] in [0,1], labels)`` for RetinaNet.

    ``labels``: ``cls_targets``/``box_targets`` (``{level: [B, h, w, A(*4)]}``), ``cls_weights`` /
    ``box_weights`` ``[B, num_anchors]`` from Model Garden's ``AnchorLabeler``, and
    ``groundtruths`` (the fields ``COCOEvaluator.update_state`` reads, boxes in pixels).
    ``training`` repeats the data (unless ``repeat=False``) and keeps only full batches.
    """
    from official.vision.ops import anchor

    config = config or DetectionConfig()
    anchor_boxes = config.anchor_boxes(image_size)
    labeler = anchor.AnchorLabeler(config.match_threshold, config.unmatched_threshold)

    def convert(example):
        n = tf.cast(example["num_objects"], tf.int32)
        gt_boxes = tf.cast(example["boxes"][:n], tf.float32)
        gt_classes = tf.cast(example["classes"][:n], tf.int32) + 1
        cls_targets, box_targets, _, cls_weights, box_weights = labeler.label_anchors(
            anchor_boxes, gt_boxes, gt_classes[:, None])
        labels = {"cls_targets": dict(cls_targets), "box_targets": dict(box_targets),
                  "cls_weights": cls_weights, "box_weights": box_weights,
                  "groundtruths": _groundtruths(example, image_size)}
        return _images(example), labels

    ds = canvases.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training if repeat is None else repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def segmentation_inputs(canvases: tf.data.Dataset, image_size: Sequence[int], batch_size: int,
                        training: bool, repeat: Optional[bool] = None) -> tf.data.Dataset:
    """Canvas elements -> ``(images, {"masks", "valid_masks", "image_info"})`` (Model Garden's
    segmentation label format: int32 masks ``[B,H,W,1]`` with 0 = background, 1+c = garment c)."""
    h, w = int(image_size[0]), int(image_size[1])
    image_info = tf.constant([[h, w], [h, w], [1.0, 1.0], [0.0, 0.0]], tf.float32)

    def convert(example):
        masks = tf.cast(example["semantic_mask"], tf.int32)[..., None]
        labels = {"masks": masks, "valid_masks": tf.ones_like(masks, tf.bool), "image_info": image_info}
        return _images(example), labels

    ds = canvases.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training if repeat is None else repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------- losses
def _by_level(d: Mapping[str, tf.Tensor]) -> "collections.OrderedDict[str, tf.Tensor]":
    return collections.OrderedDict((k, d[k]) for k in sorted(d, key=int))


def retinanet_loss(outputs: Mapping[str, Any], labels: Mapping[str, Any], num_classes: int,
                   config: Optional[DetectionConfig] = None) -> Dict[str, tf.Tensor]:
    """Focal + Huber box loss, normalised by the positives (``RetinaNetTask.build_losses``' formula).

    Returns ``{"total_loss", "cls_loss", "box_loss"}``.
    """
    from official.vision.losses import focal_loss, loss_utils

    config = config or DetectionConfig()
    cls_loss_fn = focal_loss.FocalLoss(alpha=config.focal_alpha, gamma=config.focal_gamma,
                                       reduction=tf_keras.losses.Reduction.SUM)
    box_loss_fn = tf_keras.losses.Huber(config.huber_delta, reduction=tf_keras.losses.Reduction.SUM)
    box_weights = tf.cast(labels["box_weights"], tf.float32)
    num_positives = tf.reduce_sum(box_weights) + 1.0
    cls_weights = tf.cast(labels["cls_weights"], tf.float32) / num_positives
    box_weights = box_weights / num_positives
    y_true_cls = tf.one_hot(loss_utils.multi_level_flatten(_by_level(labels["cls_targets"])), num_classes)
    y_pred_cls = loss_utils.multi_level_flatten(_by_level(outputs["cls_outputs"]), last_dim=num_classes)
    y_true_box = loss_utils.multi_level_flatten(_by_level(labels["box_targets"]), last_dim=4)
    y_pred_box = loss_utils.multi_level_flatten(_by_level(outputs["box_outputs"]), last_dim=4)
    cls_loss = cls_loss_fn(y_true=y_true_cls, y_pred=y_pred_cls, sample_weight=cls_weights)
    box_loss = box_loss_fn(y_true=y_true_box, y_pred=y_pred_box, sample_weight=box_weights)
    return {"total_loss": cls_loss + config.box_loss_weight * box_loss, "cls_loss": cls_loss,
            "box_loss": box_loss}


def segmentation_loss(outputs: Mapping[str, Any], labels: Mapping[str, Any],
                      config: Optional[SegmentationConfig] = None) -> Dict[str, tf.Tensor]:
    """Model Garden ``SegmentationLoss`` (softmax cross-entropy over valid pixels)."""
    from official.vision.losses import segmentation_losses

    config = config or SegmentationConfig()
    loss_fn = segmentation_losses.SegmentationLoss(
        label_smoothing=config.label_smoothing, class_weights=[], ignore_label=config.ignore_label,
        use_groundtruth_dimension=True)
    return {"total_loss": loss_fn(outputs["logits"], labels["masks"])}


# ----------------------------------------------------------------------------- training
def snapshot_variables(variables: Sequence[tf.Variable]) -> List[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in variables]


def variables_change(before: Sequence[np.ndarray], variables: Sequence[tf.Variable]) -> Dict[str, Any]:
    """How much ``variables`` moved since ``before``: counts and the largest / mean |change|."""
    deltas = [np.abs(v.numpy().astype(np.float64) - b) for b, v in zip(before, variables)]
    changed = [bool(np.any(d > 0)) for d in deltas]
    return {
        "num_variables": len(deltas),
        "num_changed": int(sum(changed)),
        "max_abs_change": float(max((d.max() for d in deltas if d.size), default=0.0)),
        "mean_abs_change": float(np.mean([d.mean() for d in deltas if d.size])) if deltas else 0.0,
    }


def train_dense(model, dataset: tf.data.Dataset, loss_fn, steps: int, optimizer=None,
                learning_rate: float = 1e-3, verbose: int = 1, log_every: int = 1,
                use_tf_function: bool = True) -> Dict[str, Any]:
    """``steps`` gradient steps of ``model`` on ``dataset`` (``(images, labels)`` batches).

    ``loss_fn(outputs, labels) -> {"total_loss": ..., ...}``. Runs a ``tf.function`` step with a
    ``tf_keras`` optimizer (default Adam(``learning_rate``), gradients clipped to global norm 10).
    ``use_tf_function=False`` runs the step eagerly (no tracing: quicker for a step or two).
    Returns the per-step losses, wall time and the change of the backbone's trainable weights.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    optimizer = optimizer or tf_keras.optimizers.Adam(learning_rate, global_clipnorm=10.0)
    backbone_vars = list(model.backbone.trainable_variables)
    before = snapshot_variables(backbone_vars)
    bn_vars = list(model.backbone.non_trainable_variables)
    backbone_ids = {id(v) for v in backbone_vars}
    bn_before = snapshot_variables(bn_vars)

    def step(images, labels):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            losses = loss_fn(outputs, labels)
        variables = model.trainable_variables
        grads = tape.gradient(losses["total_loss"], variables)
        backbone_grad_norm = tf.linalg.global_norm(
            [g for g, v in zip(grads, variables) if g is not None and id(v) in backbone_ids]
            or [tf.zeros([])])
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return dict(losses, backbone_grad_norm=backbone_grad_norm)

    if use_tf_function:
        step = tf.function(step)

    history: Dict[str, List[float]] = collections.defaultdict(list)
    progbar = tf_keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=None) if verbose else None
    start = time.time()
    for i, (images, labels) in enumerate(dataset.take(steps)):
        values = {k: float(v) for k, v in step(images, labels).items()}
        for k, v in values.items():
            history[k].append(v)
        if progbar is not None and ((i + 1) % log_every == 0 or i + 1 == steps):
            progbar.update(i + 1, [(k, v) for k, v in values.items() if k != "backbone_grad_norm"])
    seconds = time.time() - start
    if not history:
        raise ValueError("the training dataset produced no batch")
    return {
        "steps": len(history["total_loss"]),
        "seconds": seconds,
        "losses": dict(history),
        "first_loss": history["total_loss"][0],
        "final_loss": history["total_loss"][-1],
        "backbone_trainable_change": variables_change(before, backbone_vars),
        "backbone_bn_statistics_change": variables_change(bn_before, bn_vars),
    }
