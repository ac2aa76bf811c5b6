"""hac_tf/downstream/detection.py (and dense_training.train_dense): Model Garden RetinaNet on an
exported backbone loaded with tensorflow_hub.KerasLayer: anchor labels with positives, one
training step (finite losses, backbone weights move), COCO evaluation."""

import numpy as np
import pytest
import tensorflow as tf
from hacdense_helpers import BATCH, SIZE, export_tiny_backbone, finite, tiny_canvases

from hac_tf.downstream import detection, metrics
from hac_tf.downstream.dense_training import train_dense
from hac_tf.downstream.feature_backbone import SavedModelFeatureBackbone


@pytest.fixture(scope="module")
def export_path(tmp_path_factory):
    return export_tiny_backbone(str(tmp_path_factory.mktemp("dense") / "model"))


@pytest.fixture(scope="module")
def canvases():
    return tiny_canvases()


def test_detection_labels_have_positives(canvases):
    train, _ = canvases
    config = detection.DetectionConfig()
    images, labels = next(iter(detection.detection_inputs(train, config, (SIZE, SIZE), BATCH, training=True)))
    assert images.dtype == tf.float32 and float(tf.reduce_max(images)) <= 1.0
    assert sorted(labels["cls_targets"]) == ["2", "3", "4"]
    assert tuple(labels["cls_targets"]["2"].shape) == (BATCH, 8, 8, config.anchors_per_location)
    gt = labels["groundtruths"]
    n = gt["num_detections"].numpy()
    # every garment is matched to at least one anchor (force_match_for_each_col)
    assert np.all(labels["box_weights"].numpy().sum(axis=1) >= n)
    cls = gt["classes"].numpy()
    assert np.all(cls[cls >= 0] >= 1) and np.all(cls[cls >= 0] <= 10)


def test_retinanet_step_and_coco(export_path, canvases):
    assert metrics.pycocotools_available()
    train, test = canvases
    config = detection.DetectionConfig(fpn_filters=16, head_filters=16, head_convs=1)
    backbone = SavedModelFeatureBackbone(export_path, SIZE, trainable=True)
    model = detection.build_retinanet(backbone, config)
    from official.vision.modeling import retinanet_model

    assert isinstance(model, retinanet_model.RetinaNetModel)
    history = train_dense(
        model, detection.detection_inputs(train, config, (SIZE, SIZE), BATCH, training=True),
        lambda o, l: detection.retinanet_loss(o, l, detection.NUM_DETECTION_CLASSES, config), steps=1,
        verbose=0, use_tf_function=False)  # eager: no tracing cost for a single step
    assert history["steps"] == 1
    assert finite([history["losses"][k][0] for k in ("total_loss", "cls_loss", "box_loss")])
    assert history["losses"]["backbone_grad_norm"][0] > 0
    change = history["backbone_trainable_change"]
    assert change["num_variables"] == 60 and change["num_changed"] == 60
    assert history["backbone_bn_statistics_change"]["num_changed"] == 40  # training-mode BN
    coco = metrics.evaluate_detection(
        model, detection.detection_inputs(test, config, (SIZE, SIZE), BATCH, training=False),
        use_tf_function=False)
    assert {"AP", "AP50", "AP75", "ARmax100"} <= set(coco)
    assert 0.0 <= coco["AP"] <= 1.0 and 0.0 <= coco["AP50"] <= 1.0
    assert coco["num_images"] == 8 and coco["num_detections"] > 0
