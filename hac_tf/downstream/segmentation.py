"""Segmentation transfer: TF Model Garden FPN semantic segmentation on an exported backbone, its
inputs and its loss.

Pieces (all Model Garden classes): ``decoders.FPN`` → ``heads.SegmentationHead`` →
``segmentation_model.SegmentationModel``; loss ``losses.segmentation_losses.SegmentationLoss``;
mean IoU with ``evaluation.segmentation_metrics.MeanIoU`` / ``PerClassIoU`` in
:mod:`hac_tf.downstream.metrics`.

Class ids: 0 = background, the canvases' garment class ``c`` is segmentation class ``c + 1``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from hac_tf.downstream.canvas import NUM_GARMENT_CLASSES
from hac_tf.downstream.feature_backbone import SavedModelFeatureBackbone, backbone_images

__all__ = ["NUM_SEGMENTATION_CLASSES", "SegmentationConfig", "build_segmentation_model",
           "resolve_segmentation_config", "segmentation_inputs", "segmentation_loss"]

NUM_SEGMENTATION_CLASSES = NUM_GARMENT_CLASSES + 1  # background 0, garment c -> c + 1


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


def segmentation_inputs(canvases: tf.data.Dataset, image_size: Sequence[int], batch_size: int,
                        training: bool, repeat: Optional[bool] = None) -> tf.data.Dataset:
    """Canvas elements -> ``(images, {"masks", "valid_masks", "image_info"})`` (Model Garden's
    segmentation label format: int32 masks ``[B,H,W,1]`` with 0 = background, 1+c = garment c)."""
    h, w = int(image_size[0]), int(image_size[1])
    image_info = tf.constant([[h, w], [h, w], [1.0, 1.0], [0.0, 0.0]], tf.float32)

    def convert(example):
        masks = tf.cast(example["semantic_mask"], tf.int32)[..., None]
        labels = {"masks": masks, "valid_masks": tf.ones_like(masks, tf.bool), "image_info": image_info}
        return backbone_images(example), labels

    ds = canvases.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training if repeat is None else repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def segmentation_loss(outputs: Mapping[str, Any], labels: Mapping[str, Any],
                      config: Optional[SegmentationConfig] = None) -> Dict[str, tf.Tensor]:
    """Model Garden ``SegmentationLoss`` (softmax cross-entropy over valid pixels)."""
    from official.vision.losses import segmentation_losses

    config = config or SegmentationConfig()
    loss_fn = segmentation_losses.SegmentationLoss(
        label_smoothing=config.label_smoothing, class_weights=[], ignore_label=config.ignore_label,
        use_groundtruth_dimension=True)
    return {"total_loss": loss_fn(outputs["logits"], labels["masks"])}
