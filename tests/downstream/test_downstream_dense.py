"""Model Garden RetinaNet and FPN segmentation on an exported backbone loaded with
tensorflow_hub.KerasLayer: build, one training step (finite loss, backbone weights move),
COCO evaluation and mean IoU.

Canvases are 32 px: a width-0.125 backbone trained on >= 45 px images hits a TF 2.20 oneDNN
crash (see hac_tf/downstream/onednn.py), and the test process cannot turn oneDNN off."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.downstream import canvas, dense, metrics, onednn
from hac_tf.export import export_backbone
from hac_tf.models import build_resnet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE_DIR = os.path.join(REPO, "tests", "fixtures", "fashion_mnist")
SIZE = 32
BATCH = 4
SPEC = canvas.CanvasSpec(canvas_size=SIZE, max_objects=2)


@pytest.fixture(scope="module")
def export_path(tmp_path_factory):
    keras.utils.set_random_seed(7)
    backbone = build_resnet(18, "cifar", width_multiplier=0.125, zero_init_residual=False)
    base = str(tmp_path_factory.mktemp("dense") / "model")
    return export_backbone(backbone, None, base, image_size=SIZE, warmup=False)


@pytest.fixture(scope="module")
def canvases():
    train = canvas.canvas_dataset(16, "train", SPEC, seed=1, data_dir=FIXTURE_DIR)
    test = canvas.canvas_dataset(8, "test", SPEC, seed=1, data_dir=FIXTURE_DIR)
    return train, test


def _finite(values):
    return all(np.isfinite(v) for v in values)


def test_feature_backbone_levels_and_specs(export_path):
    bb = dense.SavedModelFeatureBackbone(export_path, SIZE, trainable=True)
    # CIFAR stem: strides 1, 2, 4, 8 -> Model Garden levels 0..3 (log2 of the stride)
    assert bb.levels == [0, 1, 2, 3]
    assert bb.level_of_export_key == {"2": "0", "3": "1", "4": "2", "5": "3"}
    assert [tuple(bb.output_specs[str(lv)]) for lv in range(4)] == [
        (None, 32, 32, 8), (None, 16, 16, 16), (None, 8, 8, 32), (None, 4, 4, 64)]
    assert len(bb.trainable_variables) == 60 and len(bb.non_trainable_variables) == 40
    out = bb(tf.zeros((2, SIZE, SIZE, 3)))
    assert sorted(out) == ["0", "1", "2", "3"] and tuple(out["3"].shape) == (2, 4, 4, 64)
    as_exported = dense.SavedModelFeatureBackbone(export_path, SIZE, levels=["4", 5], level_naming="export")
    assert sorted(as_exported.output_specs) == ["4", "5"]
    assert tuple(as_exported.output_specs["5"]) == (None, 4, 4, 64)
    with pytest.raises(ValueError, match="not among"):
        dense.SavedModelFeatureBackbone(export_path, SIZE, levels=[5])
    with pytest.raises(ValueError, match="stride"):
        dense.SavedModelFeatureBackbone(export_path, (SIZE, 36))


def test_detection_labels_have_positives(canvases):
    train, _ = canvases
    config = dense.DetectionConfig()
    images, labels = next(iter(dense.detection_inputs(train, config, (SIZE, SIZE), BATCH, training=True)))
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
    config = dense.DetectionConfig(fpn_filters=16, head_filters=16, head_convs=1)
    backbone = dense.SavedModelFeatureBackbone(export_path, SIZE, trainable=True)
    model = dense.build_retinanet(backbone, config)
    from official.vision.modeling import retinanet_model

    assert isinstance(model, retinanet_model.RetinaNetModel)
    history = dense.train_dense(
        model, dense.detection_inputs(train, config, (SIZE, SIZE), BATCH, training=True),
        lambda o, l: dense.retinanet_loss(o, l, dense.NUM_DETECTION_CLASSES, config), steps=1,
        verbose=0, use_tf_function=False)  # eager: no tracing cost for a single step
    assert history["steps"] == 1
    assert _finite([history["losses"][k][0] for k in ("total_loss", "cls_loss", "box_loss")])
    assert history["losses"]["backbone_grad_norm"][0] > 0
    change = history["backbone_trainable_change"]
    assert change["num_variables"] == 60 and change["num_changed"] == 60
    assert history["backbone_bn_statistics_change"]["num_changed"] == 40  # training-mode BN
    coco = metrics.evaluate_detection(
        model, dense.detection_inputs(test, config, (SIZE, SIZE), BATCH, training=False),
        use_tf_function=False)
    assert {"AP", "AP50", "AP75", "ARmax100"} <= set(coco)
    assert 0.0 <= coco["AP"] <= 1.0 and 0.0 <= coco["AP50"] <= 1.0
    assert coco["num_images"] == 8 and coco["num_detections"] > 0


def test_segmentation_step_and_miou(export_path, canvases):
    train, test = canvases
    backbone = dense.SavedModelFeatureBackbone(export_path, SIZE, trainable=True)
    config = dense.resolve_segmentation_config(backbone, dense.SegmentationConfig(fpn_filters=16,
                                                                                 head_filters=16))
    assert (config.min_level, config.max_level, config.head_level) == (1, 3, 1)
    model = dense.build_segmentation_model(backbone, config)
    logits = model(tf.zeros((1, SIZE, SIZE, 3)), training=False)["logits"]
    assert tuple(logits.shape) == (1, SIZE, SIZE, dense.NUM_SEGMENTATION_CLASSES)
    # the tf.function step, as the tool runs it
    history = dense.train_dense(model, dense.segmentation_inputs(train, (SIZE, SIZE), BATCH, training=True),
                                dense.segmentation_loss, steps=1, verbose=0)
    assert _finite(history["losses"]["total_loss"])
    change = history["backbone_trainable_change"]
    assert change["num_changed"] == change["num_variables"] == 60
    result = metrics.evaluate_segmentation(model, dense.segmentation_inputs(test, (SIZE, SIZE), BATCH,
                                                                            training=False),
                                           use_tf_function=False)
    assert 0.0 <= result["mean_iou"] <= 1.0
    assert 0.0 <= result["pixel_accuracy"] <= 1.0
    assert result["num_pixels"] == 8 * SIZE * SIZE
    assert len(result["per_class_iou"]) == dense.NUM_SEGMENTATION_CLASSES


def test_frozen_backbone_does_not_move(export_path, canvases):
    train, _ = canvases
    backbone = dense.SavedModelFeatureBackbone(export_path, SIZE, trainable=False)
    model = dense.build_segmentation_model(backbone, dense.SegmentationConfig(fpn_filters=8, head_filters=8,
                                                                              head_convs=1))
    assert not backbone.trainable_variables
    weights = [v.numpy().copy() for v in backbone.hub_layer.variables]
    dense.train_dense(model, dense.segmentation_inputs(train, (SIZE, SIZE), BATCH, training=True),
                      dense.segmentation_loss, steps=1, verbose=0, use_tf_function=False)
    assert all(np.array_equal(w, v.numpy()) for w, v in zip(weights, backbone.hub_layer.variables))


def test_onednn_crash_guard(export_path):
    assert onednn.conv_backprop_crash_risk(export_path, 32) is None
    assert "oneDNN" in onednn.conv_backprop_crash_risk(export_path, 64)
    assert onednn.conv_backprop_crash_risk(os.path.dirname(export_path), 96) is not None  # base path


def test_dense_tool_missing_export(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "finetune_dense.py"),
                           f"--export_dir={tmp_path / 'nothing_here'}"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 1
    assert "error: --export_dir: no exported model at" in proc.stderr and "nothing_here" in proc.stderr
