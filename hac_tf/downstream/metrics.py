"""Dense-task metrics: COCO box AP with Model Garden's evaluator, mean IoU for segmentation.

    evaluate_detection(retinanet, detection_inputs(test_canvases, ..., training=False))
        -> {"AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", ...}
    evaluate_segmentation(seg_model, segmentation_inputs(test_canvases, ..., training=False))
        -> {"mean_iou", "per_class_iou", "pixel_accuracy", "foreground_iou", ...}

COCO metrics come from ``official.vision.evaluation.coco_evaluator.COCOEvaluator`` (which runs
pycocotools' ``COCOeval``) with the ground truth taken from the data (no annotation file):
boxes in pixels, class ids 1..10. Mean IoU is ``official.vision.evaluation.segmentation_metrics
.MeanIoU`` (a tf_keras ``MeanIoU`` over the confusion matrix: the mean over classes that occur in
the ground truth or the predictions).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf

from hac_tf.downstream.segmentation import NUM_SEGMENTATION_CLASSES

__all__ = ["evaluate_detection", "evaluate_segmentation", "pycocotools_available"]


def pycocotools_available() -> bool:
    """Whether ``pycocotools`` (needed by Model Garden's COCO evaluator) can be imported."""
    try:
        import pycocotools.cocoeval  # noqa: F401
    except ImportError:
        return False
    return True


def evaluate_detection(model, dataset: tf.data.Dataset, max_batches: Optional[int] = None,
                       per_category: bool = False, use_tf_function: bool = True) -> Dict[str, float]:
    """COCO box metrics with Model Garden's ``COCOEvaluator`` (pycocotools) over ``dataset``.

    ``dataset`` yields ``detection_inputs(..., training=False)`` batches. Returns the evaluator's
    dict (``AP``, ``AP50``, ``AP75``, ``APs``/``APm``/``APl``, ``ARmax1`` ...) as floats, plus
    ``num_images`` and ``num_detections``; -1 means "no ground truth in that bucket" (COCO).
    ``use_tf_function=False`` predicts eagerly (no tracing; quicker for a batch or two).
    """
    from official.vision.evaluation import coco_evaluator

    evaluator = coco_evaluator.COCOEvaluator(annotation_file=None, include_mask=False,
                                             need_rescale_bboxes=False,
                                             per_category_metrics=per_category)

    def predict(images):
        n = tf.shape(images)[0]
        image_shape = tf.tile(tf.shape(images)[1:3][None], [n, 1])
        return model(images, image_shape=image_shape, training=False)

    if use_tf_function:
        predict = tf.function(predict)

    num_images = num_detections = 0
    for i, (images, labels) in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        outputs = predict(images)
        gt = labels["groundtruths"]
        predictions = {
            "source_id": gt["source_id"],
            "num_detections": outputs["num_detections"],
            "detection_boxes": outputs["detection_boxes"],
            "detection_classes": outputs["detection_classes"],
            "detection_scores": outputs["detection_scores"],
        }
        evaluator.update_state(gt, predictions)
        num_images += int(images.shape[0])
        num_detections += int(tf.reduce_sum(outputs["num_detections"]))
    if num_detections == 0:
        # pycocotools cannot load an empty result list; no detection means AP = AR = 0.
        raise RuntimeError("the detector produced no detection above pre_nms_score_threshold; "
                           "COCO metrics are undefined (lower DetectionConfig.pre_nms_score_threshold)")
    metrics = {k: float(v) for k, v in evaluator.result().items()}
    metrics["num_images"] = num_images
    metrics["num_detections"] = num_detections
    return metrics


def evaluate_segmentation(model, dataset: tf.data.Dataset, num_classes: int = NUM_SEGMENTATION_CLASSES,
                          max_batches: Optional[int] = None, use_tf_function: bool = True) -> Dict[str, Any]:
    """Mean IoU (Model Garden ``segmentation_metrics.MeanIoU``), per-class IoU and pixel accuracy.

    Mean IoU averages over the classes present in the ground truth or the predictions.
    ``use_tf_function=False`` predicts eagerly.
    """
    from official.vision.evaluation import segmentation_metrics

    miou = segmentation_metrics.MeanIoU(num_classes=num_classes, rescale_predictions=False)
    per_class = segmentation_metrics.PerClassIoU(num_classes=num_classes, rescale_predictions=False)

    def predict(images):
        return model(images, training=False)["logits"]

    if use_tf_function:
        predict = tf.function(predict)

    correct = total = 0
    for i, (images, labels) in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        logits = predict(images)
        miou.update_state(labels, logits)
        per_class.update_state(labels, logits)
        pred = tf.argmax(tf.image.resize(logits, tf.shape(labels["masks"])[1:3]), axis=-1, output_type=tf.int32)
        correct += int(tf.reduce_sum(tf.cast(pred == labels["masks"][..., 0], tf.int32)))
        total += int(tf.size(pred))
    if total == 0:
        raise ValueError("the evaluation dataset produced no batch")
    cm = miou.total_cm.numpy()
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    return {
        "mean_iou": float(miou.result()),
        "per_class_iou": [float(v) if p else None for v, p in zip(per_class.result().numpy(), present)],
        "pixel_accuracy": correct / total,
        "foreground_iou": _foreground_iou(cm),
        "num_pixels": total,
    }


def _foreground_iou(cm: np.ndarray) -> float:
    """IoU of "any garment" vs background from the confusion matrix (rows: truth, cols: pred)."""
    tp = cm[1:, 1:].sum()
    fp = cm[0, 1:].sum()
    fn = cm[1:, 0].sum()
    return float(tp / (tp + fp + fn)) if tp + fp + fn else 0.0
