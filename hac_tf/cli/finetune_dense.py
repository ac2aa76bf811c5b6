"""Transfer an exported backbone to detection (RetinaNet) and segmentation (FPN) on garment canvases.

  hac-finetune-dense --export_dir=saved_models/hier --task=both --steps=200 \
      --batch_size=16 --canvas_size=64 --output_json=results/dense.json

Builds TF Model Garden models on the export (hac_tf/downstream/transfer.py): RetinaNetModel
(FPN + RetinaNet head, focal + Huber loss) and SegmentationModel (FPN + SegmentationHead,
softmax cross-entropy), each trained for --steps steps on generated Fashion-MNIST canvases
(train garments for training, test garments for evaluation) with the whole backbone fine-tuned,
then evaluated: COCO box AP (Model Garden's COCOEvaluator, pycocotools) and mean IoU. The change
of the backbone weights is printed and stored. --verbose is Keras' progress verbosity here;
--verbosity=0 shows TensorFlow's and absl's log lines (hidden by default).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Dict, List

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-finetune-dense (same as tools/finetune_dense.py)."""
    fv = flag_values
    flags.DEFINE_string("export_dir", None, "Exported backbone: model base path (latest version) or version dir.",
                        flag_values=fv)
    flags.DEFINE_enum("task", "both", ["detection", "segmentation", "both"], "Which dense task(s).", flag_values=fv)
    flags.DEFINE_integer("steps", 100, "Training steps per task.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 16, "Batch size.", flag_values=fv)
    flags.DEFINE_integer("canvas_size", 64, "Canvas side in pixels.", flag_values=fv)
    flags.DEFINE_integer("num_train", 512, "Training canvases (from Fashion-MNIST train garments).", flag_values=fv)
    flags.DEFINE_integer("num_test", 128, "Evaluation canvases (from Fashion-MNIST test garments).", flag_values=fv)
    flags.DEFINE_integer("max_objects", 3, "Garments per canvas: 1..max_objects.", flag_values=fv)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", flag_values=fv)
    flags.DEFINE_bool("freeze_backbone", False, "Train only the decoder and head.", flag_values=fv)
    flags.DEFINE_enum("level_naming", "stride", ["stride", "export"],
                      "Feature-map levels: log2 of the measured stride (default) or the export's '2'..'5'.",
                      flag_values=fv)
    flags.DEFINE_integer("min_level", 2, "RetinaNet min level (stride 2**level).", flag_values=fv)
    flags.DEFINE_integer("max_level", 4, "RetinaNet max level.", flag_values=fv)
    flags.DEFINE_float("anchor_size", 3.0, "RetinaNet anchor size (times the level stride).", flag_values=fv)
    flags.DEFINE_string("data_dir", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX directory.",
                        flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Canvas and initialisation seed.", flag_values=fv)
    flags.DEFINE_integer("verbose", 1, "1 = progress bar, 0 = quiet (Keras verbosity; TensorFlow's own logs: "
                         "--verbosity=0).", flag_values=fv)
    flags.DEFINE_enum("onednn", "auto", ["auto", "on", "off"],
                      "TF oneDNN kernels; auto turns them off when training would hit the known "
                      "oneDNN conv-gradient crash (see hac_tf/downstream/onednn.py).", flag_values=fv)
    flags.DEFINE_string("output_json", None, "Write the results here.", flag_values=fv)


def main(argv: List[str]) -> int:
    """Runs the dense transfer of the parsed flags; returns the exit code (1: no export or no
    pycocotools, 2: no canvases)."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.downstream.classifier import write_json
    from hac_tf.downstream.onednn import configure_onednn
    from hac_tf.export.serving_layout import ExportNotFoundError, resolve_version_dir

    try:
        version_dir = resolve_version_dir(f.export_dir)  # no TensorFlow needed to report a missing export
    except ExportNotFoundError as e:
        print(f"error: --export_dir: {e}", file=sys.stderr)
        return 1
    print(configure_onednn(f.onednn, version_dir, f.canvas_size, training=not f.freeze_backbone))
    from hac_tf.downstream import canvas, metrics

    if f.task in ("detection", "both") and not metrics.pycocotools_available():
        print("error: pycocotools is not installed; Model Garden's COCOEvaluator needs it "
              "(pip install pycocotools)", file=sys.stderr)
        return 1
    import tf_keras

    from hac_tf.downstream.transfer import (DenseTransferSettings, backbone_change_line, run_detection,
                                            run_segmentation)

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
    settings = DenseTransferSettings(
        export_dir=f.export_dir, canvas_size=f.canvas_size, steps=f.steps, batch_size=f.batch_size,
        learning_rate=f.learning_rate, freeze_backbone=f.freeze_backbone, level_naming=f.level_naming,
        min_level=f.min_level, max_level=f.max_level, anchor_size=f.anchor_size, verbose=f.verbose)
    result: Dict[str, Any] = {"export_dir": version_dir, "canvas": dataclasses.asdict(spec.resolved()),
                              "num_train": f.num_train, "num_test": f.num_test, "steps": f.steps,
                              "batch_size": f.batch_size, "learning_rate": f.learning_rate,
                              "freeze_backbone": f.freeze_backbone, "seed": f.seed,
                              "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}
    if f.task in ("detection", "both"):
        det = result["detection"] = run_detection(settings, train, test)
        c = det["coco"]
        print(f"[detection] COCO box AP {c['AP']:.4f}  AP50 {c['AP50']:.4f}  AP75 {c['AP75']:.4f}  "
              f"ARmax100 {c['ARmax100']:.4f}  ({c['num_images']} images, {c['num_detections']} detections; "
              f"loss {det['train']['first_loss']:.3f} -> {det['train']['final_loss']:.3f} in "
              f"{det['train']['seconds']:.0f} s)")
        print(backbone_change_line("detection", det["train"]))
    if f.task in ("segmentation", "both"):
        seg = result["segmentation"] = run_segmentation(settings, train, test)
        s = seg["segmentation"]
        print(f"[segmentation] mean IoU {s['mean_iou']:.4f}  foreground IoU {s['foreground_iou']:.4f}  "
              f"pixel accuracy {s['pixel_accuracy']:.4f}  (loss {seg['train']['first_loss']:.3f} -> "
              f"{seg['train']['final_loss']:.3f} in {seg['train']['seconds']:.0f} s)")
        print(backbone_change_line("segmentation", seg["train"]))
    if f.output_json:
        print(f"wrote {write_json(result, f.output_json)}")
    return 0


def run() -> None:
    """Console script ``hac-finetune-dense``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
