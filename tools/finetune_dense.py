"""Transfer an exported backbone to detection (RetinaNet) and segmentation (FPN) on garment canvases.

  python tools/finetune_dense.py --export_dir=saved_models/hier --task=both --steps=200 \
      --batch_size=16 --canvas_size=64 --output_json=results/dense.json

Builds TF Model Garden models on the export (loaded with ``tensorflow_hub.KerasLayer`` inside
``hac_tf.downstream.dense.SavedModelFeatureBackbone``): ``RetinaNetModel`` (FPN + RetinaNet head,
focal + Huber loss) and ``SegmentationModel`` (FPN + SegmentationHead, softmax cross-entropy).
Each is trained for ``--steps`` steps on generated Fashion-MNIST canvases
(``hac_tf.downstream.canvas``; train garments for training, test garments for evaluation) with
the whole backbone fine-tuned, then evaluated: COCO box AP with Model Garden's
``COCOEvaluator`` (pycocotools) and mean IoU with Model Garden's ``MeanIoU``. The change of the
backbone weights (gradients reached the SavedModel variables) is printed and stored.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("export_dir", None, "Exported backbone: model base path (latest version) or version dir.")
    flags.DEFINE_enum("task", "both", ["detection", "segmentation", "both"], "Which dense task(s).")
    flags.DEFINE_integer("steps", 100, "Training steps per task.")
    flags.DEFINE_integer("batch_size", 16, "Batch size.")
    flags.DEFINE_integer("canvas_size", 64, "Canvas side in pixels.")
    flags.DEFINE_integer("num_train", 512, "Training canvases (from Fashion-MNIST train garments).")
    flags.DEFINE_integer("num_test", 128, "Evaluation canvases (from Fashion-MNIST test garments).")
    flags.DEFINE_integer("max_objects", 3, "Garments per canvas: 1..max_objects.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
    flags.DEFINE_bool("freeze_backbone", False, "Train only the decoder and head.")
    flags.DEFINE_enum("level_naming", "stride", ["stride", "export"],
                      "Feature-map levels: log2 of the measured stride (default) or the export's '2'..'5'.")
    flags.DEFINE_integer("min_level", 2, "RetinaNet min level (stride 2**level).")
    flags.DEFINE_integer("max_level", 4, "RetinaNet max level.")
    flags.DEFINE_float("anchor_size", 3.0, "RetinaNet anchor size (times the level stride).")
    flags.DEFINE_string("data_dir", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX directory.")
    flags.DEFINE_integer("seed", 0, "Canvas and initialisation seed.")
    flags.DEFINE_integer("verbose", 1, "1 = progress bar, 0 = quiet.")
    flags.DEFINE_enum("onednn", "auto", ["auto", "on", "off"],
                      "TF oneDNN kernels; auto turns them off when training would hit the known "
                      "oneDNN conv-gradient crash (see hac_tf/downstream/onednn.py).")
    flags.DEFINE_string("output_json", None, "Write the results here.")


def _run_detection(f, train, test) -> Dict[str, Any]:
    from hac_tf.downstream import dense, metrics

    config = dense.DetectionConfig(min_level=f.min_level, max_level=f.max_level, anchor_size=f.anchor_size)
    size = (f.canvas_size, f.canvas_size)
    backbone = dense.SavedModelFeatureBackbone(f.export_dir, size, trainable=not f.freeze_backbone,
                                               level_naming=f.level_naming)
    model = dense.build_retinanet(backbone, config)
    print(f"[detection] RetinaNet on backbone levels {backbone.levels} "
          f"(export keys -> levels {backbone.level_of_export_key}); FPN/head levels "
          f"{config.min_level}..{config.max_level}; {config.anchors_per_location} anchors/location")
    train_ds = dense.detection_inputs(train, config, size, f.batch_size, training=True)
    history = dense.train_dense(
        model, train_ds, lambda o, l: dense.retinanet_loss(o, l, dense.NUM_DETECTION_CLASSES, config),
        f.steps, learning_rate=f.learning_rate, verbose=f.verbose)
    t = time.time()
    coco = metrics.evaluate_detection(model, dense.detection_inputs(test, config, size, f.batch_size,
                                                                    training=False))
    return {"coco": coco, "train": _summary(history), "eval_seconds": time.time() - t,
            "config": dataclasses.asdict(config), "levels": backbone.levels}


def _run_segmentation(f, train, test) -> Dict[str, Any]:
    from hac_tf.downstream import dense, metrics

    size = (f.canvas_size, f.canvas_size)
    backbone = dense.SavedModelFeatureBackbone(f.export_dir, size, trainable=not f.freeze_backbone,
                                               level_naming=f.level_naming)
    config = dense.resolve_segmentation_config(backbone)
    model = dense.build_segmentation_model(backbone, config)
    print(f"[segmentation] FPN levels {config.min_level}..{config.max_level}, head on level "
          f"{config.head_level}, {dense.NUM_SEGMENTATION_CLASSES} classes (0 = background)")
    train_ds = dense.segmentation_inputs(train, size, f.batch_size, training=True)
    history = dense.train_dense(model, train_ds, dense.segmentation_loss, f.steps,
                                learning_rate=f.learning_rate, verbose=f.verbose)
    t = time.time()
    seg = metrics.evaluate_segmentation(model, dense.segmentation_inputs(test, size, f.batch_size,
                                                                         training=False))
    return {"segmentation": seg, "train": _summary(history), "eval_seconds": time.time() - t,
            "config": dataclasses.asdict(config), "levels": backbone.levels}


def _summary(history: Dict[str, Any]) -> Dict[str, Any]:
    out = {k: v for k, v in history.items() if k != "losses"}
    out["final_losses"] = {k: v[-1] for k, v in history["losses"].items()}
    return out


def _print_backbone_change(task: str, train: Dict[str, Any]) -> None:
    ch, bn = train["backbone_trainable_change"], train["backbone_bn_statistics_change"]
    print(f"[{task}] backbone weights changed by training: {ch['num_changed']}/{ch['num_variables']} "
          f"trainable variables (max |dw| {ch['max_abs_change']:.3g}, mean {ch['mean_abs_change']:.3g}); "
          f"BN statistics {bn['num_changed']}/{bn['num_variables']}")


def main(argv: List[str]) -> int:
    del argv
    from absl import flags

    from hac_tf.downstream.onednn import configure_onednn

    f = flags.FLAGS
    if not f["verbosity"].present:  # Model Garden logs every FPN/evaluator step at INFO
        from absl import logging

        logging.set_verbosity(logging.WARNING)
    from hac_tf.downstream.classifier import ExportNotFoundError, resolve_export, write_json

    try:
        version_dir = resolve_export(f.export_dir)  # no TensorFlow needed to report a missing export
    except ExportNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(configure_onednn(f.onednn, version_dir, f.canvas_size, training=not f.freeze_backbone))
    from hac_tf.downstream import canvas, metrics

    if f.task in ("detection", "both") and not metrics.pycocotools_available():
        print("error: pycocotools is not installed; Model Garden's COCOEvaluator needs it "
              "(pip install pycocotools)", file=sys.stderr)
        return 1
    import tf_keras

    tf_keras.utils.set_random_seed(f.seed)
    spec = canvas.CanvasSpec(canvas_size=f.canvas_size, max_objects=f.max_objects)
    t = time.time()
    try:
        train = canvas.canvas_dataset(f.num_train, "train", spec, f.seed, f.data_dir, shuffle=True)
        test = canvas.canvas_dataset(f.num_test, "test", spec, f.seed, f.data_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"canvases: {f.num_train} train / {f.num_test} test, {f.canvas_size}x{f.canvas_size}, "
          f"1..{f.max_objects} garments ({time.time() - t:.1f} s)")
    result: Dict[str, Any] = {"export_dir": version_dir, "canvas": dataclasses.asdict(spec.resolved()),
                              "num_train": f.num_train, "num_test": f.num_test, "steps": f.steps,
                              "batch_size": f.batch_size, "learning_rate": f.learning_rate,
                              "freeze_backbone": f.freeze_backbone, "seed": f.seed,
                              "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}
    if f.task in ("detection", "both"):
        det = result["detection"] = _run_detection(f, train, test)
        c = det["coco"]
        print(f"[detection] COCO box AP {c['AP']:.4f}  AP50 {c['AP50']:.4f}  AP75 {c['AP75']:.4f}  "
              f"ARmax100 {c['ARmax100']:.4f}  ({c['num_images']} images, {c['num_detections']} detections; "
              f"loss {det['train']['first_loss']:.3f} -> {det['train']['final_loss']:.3f} in "
              f"{det['train']['seconds']:.0f} s)")
        _print_backbone_change("detection", det["train"])
    if f.task in ("segmentation", "both"):
        seg = result["segmentation"] = _run_segmentation(f, train, test)
        s = seg["segmentation"]
        print(f"[segmentation] mean IoU {s['mean_iou']:.4f}  foreground IoU {s['foreground_iou']:.4f}  "
              f"pixel accuracy {s['pixel_accuracy']:.4f}  (loss {seg['train']['first_loss']:.3f} -> "
              f"{seg['train']['final_loss']:.3f} in {seg['train']['seconds']:.0f} s)")
        _print_backbone_change("segmentation", seg["train"])
    if f.output_json:
        print(f"wrote {write_json(result, f.output_json)}")
    return 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
