"""hac_tf/downstream/segmentation.py (and dense_training.train_dense): Model Garden FPN
segmentation on an exported backbone: levels chosen from the backbone, logits at input
resolution, one tf.function training step, mean IoU; a frozen backbone does not move."""

import numpy as np
import pytest
import tensorflow as tf
from hacdense_helpers import BATCH, SIZE, export_tiny_backbone, finite, tiny_canvases

from hac_tf.downstream import metrics, segmentation
from hac_tf.downstream.dense_training import train_dense
from hac_tf.downstream.feature_backbone import SavedModelFeatureBackbone


@pytest.fixture(scope="module")
def export_path(tmp_path_factory):
    return export_tiny_backbone(str(tmp_path_factory.mktemp("dense") / "model"))


@pytest.fixture(scope="module")
def canvases():
    return tiny_canvases()


def test_segmentation_step_and_miou(export_path, canvases):
    train, test = canvases
    backbone = SavedModelFeatureBackbone(export_path, SIZE, trainable=True)
    config = segmentation.resolve_segmentation_config(
        backbone, segmentation.SegmentationConfig(fpn_filters=16, head_filters=16))
    assert (config.min_level, config.max_level, config.head_level) == (1, 3, 1)
    model = segmentation.build_segmentation_model(backbone, config)
    logits = model(tf.zeros((1, SIZE, SIZE, 3)), training=False)["logits"]
    assert tuple(logits.shape) == (1, SIZE, SIZE, segmentation.NUM_SEGMENTATION_CLASSES)
    # the tf.function step, as the tool runs it
    history = train_dense(model, segmentation.segmentation_inputs(train, (SIZE, SIZE), BATCH, training=True),
                          segmentation.segmentation_loss, steps=1, verbose=0)
    assert finite(history["losses"]["total_loss"])
    change = history["backbone_trainable_change"]
    assert change["num_changed"] == change["num_variables"] == 60
    result = metrics.evaluate_segmentation(
        model, segmentation.segmentation_inputs(test, (SIZE, SIZE), BATCH, training=False),
        use_tf_function=False)
    assert 0.0 <= result["mean_iou"] <= 1.0
    assert 0.0 <= result["pixel_accuracy"] <= 1.0
    assert result["num_pixels"] == 8 * SIZE * SIZE
    assert len(result["per_class_iou"]) == segmentation.NUM_SEGMENTATION_CLASSES


def test_frozen_backbone_does_not_move(export_path, canvases):
    train, _ = canvases
    backbone = SavedModelFeatureBackbone(export_path, SIZE, trainable=False)
    model = segmentation.build_segmentation_model(
        backbone, segmentation.SegmentationConfig(fpn_filters=8, head_filters=8, head_convs=1))
    assert not backbone.trainable_variables
    weights = [v.numpy().copy() for v in backbone.hub_layer.variables]
    train_dense(model, segmentation.segmentation_inputs(train, (SIZE, SIZE), BATCH, training=True),
                segmentation.segmentation_loss, steps=1, verbose=0, use_tf_function=False)
    assert all(np.array_equal(w, v.numpy()) for w, v in zip(weights, backbone.hub_layer.variables))
