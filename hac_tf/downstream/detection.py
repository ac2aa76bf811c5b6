"""Detection transfer: TF Model Garden RetinaNet on an exported backbone, its inputs and its loss.

Pieces (all Model Garden classes): ``decoders.FPN`` → ``heads.RetinaNetHead`` →
``retinanet_model.RetinaNetModel`` with ``layers.MultilevelDetectionGenerator``; anchors from
``ops.anchor.build_anchor_generator`` and targets from ``ops.anchor.AnchorLabeler`` (in the
``tf.data`` pipeline, as Model Garden's RetinaNet parser does); loss =
``losses.focal_loss.FocalLoss`` + ``box_loss_weight`` × Huber, both normalised by the number of
positive anchors (the formula of ``tasks.retinanet.RetinaNetTask.build_losses``); evaluation with
``evaluation.coco_evaluator.COCOEvaluator`` (pycocotools) in :mod:`hac_tf.downstream.metrics`.

Class ids: the canvases' garment classes ``0..9`` become detection classes ``1..10`` (Model
Garden's convention: 0 is the implicit background, dropped by the detection generator).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras

from hac_tf.downstream.canvas import NUM_GARMENT_CLASSES
from hac_tf.downstream.feature_backbone import SavedModelFeatureBackbone, backbone_images

__all__ = ["NUM_DETECTION_CLASSES", "DetectionConfig", "build_retinanet", "detection_inputs", "retinanet_loss"]

NUM_DETECTION_CLASSES = NUM_GARMENT_CLASSES + 1  # + implicit background 0


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
        return backbone_images(example), labels

    ds = canvases.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training if repeat is None else repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


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
