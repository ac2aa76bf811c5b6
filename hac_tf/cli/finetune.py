"""Linear probe or fine-tune an exported backbone on a classification source (Keras 3).

  hac-finetune --export_dir=saved_models/hier --mode=linear --epochs=5
  hac-finetune --export_dir=saved_models/hier/3 --mode=finetune --epochs=2 \
      --source=fashion_mnist --label_key=label --augment --output_json=results/ft.json

Builds Input -> hac_tf.export.load_backbone(export, trainable=mode == "finetune") ->
Dense(num_classes), trains it with model.fit on the source's train split (progress bar),
evaluates top-1 accuracy on its test split, prints it and writes the result JSON
(hac_tf/downstream/classifier.py, finetune_classifier). Exit status 1 with a one-line message
when the export directory holds no export; 2 for bad arguments. --verbose is Keras' verbosity
here; --verbosity=0 shows TensorFlow's and absl's log lines (hidden by default).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, verbose_requested

# Native image sides of the built-in sources (for the oneDNN decision before TF is imported).
NATIVE_SIDE = {"fashion_mnist": 28, "coloured_fashion_mnist": 32, "colored_fashion_mnist": 32}
COLOURED_SOURCES = ("coloured_fashion_mnist", "colored_fashion_mnist")


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-finetune (same as tools/finetune.py)."""
    fv = flag_values
    flags.DEFINE_string("export_dir", None, "Exported backbone: model base path (latest version) or version dir.",
                        flag_values=fv)
    flags.DEFINE_string("source", "coloured_fashion_mnist", "hac_tf.data source name (build_source).",
                        flag_values=fv)
    flags.DEFINE_string("label_key", "garment", "Label to predict (a key of the source's labels dict).",
                        flag_values=fv)
    flags.DEFINE_enum("mode", "linear", ["linear", "finetune"], "linear: frozen backbone; finetune: train all.",
                      flag_values=fv)
    flags.DEFINE_integer("epochs", 1, "Training epochs.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 64, "Batch size.", flag_values=fv)
    flags.DEFINE_float("learning_rate", None, "Adam learning rate; default 1e-2 (linear) / 1e-3 (finetune).",
                       flag_values=fv)
    flags.DEFINE_integer("max_train", 0, "Use only the first N training examples (0 = all).", flag_values=fv)
    flags.DEFINE_integer("max_test", 0, "Use only the first N test examples (0 = all).", flag_values=fv)
    flags.DEFINE_bool("augment", False, "Random horizontal flip + 4-px padded random crop on training images.",
                      flag_values=fv)
    flags.DEFINE_integer("image_size", 0, "Image side (0 = the source's own size).", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "data_dir for the source (e.g. the Fashion-MNIST IDX directory).",
                        flag_values=fv)
    flags.DEFINE_multi_string("source_arg", [], "Extra source keyword argument key=value (value parsed as JSON "
                              "if it can be).", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed (shuffling, augmentation, head initialisation).", flag_values=fv)
    flags.DEFINE_integer("verbose", 1, "Keras verbosity (1 = progress bar, 2 = one line per epoch, 0 = silent; "
                         "TensorFlow's own logs: --verbosity=0).", flag_values=fv)
    flags.DEFINE_enum("onednn", "auto", ["auto", "on", "off"],
                      "TF oneDNN kernels; auto turns them off when fine-tuning would hit the known "
                      "oneDNN conv-gradient crash (see hac_tf/downstream/onednn.py).", flag_values=fv)
    flags.DEFINE_string("output_json", None, "Write the results here.", flag_values=fv)


def parse_source_args(items: List[str]) -> Dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}`` (values parsed as JSON when they are JSON).

    Raises ValueError naming an item without ``=``.
    """
    out: Dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--source_arg must be key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def main(argv: List[str]) -> int:
    """Trains and evaluates the classifier of the parsed flags; returns the exit code."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.downstream.onednn import configure_onednn

    try:
        source_kwargs = parse_source_args(f.source_arg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if f.data_dir:
        source_kwargs.setdefault("data_dir", f.data_dir)
    image_size = f.image_size
    if image_size and f.source in COLOURED_SOURCES:
        source_kwargs.setdefault("image_size", image_size)  # generate at that size, no resize
        image_size = 0
    from hac_tf.downstream.classifier import finetune_classifier
    from hac_tf.export.serving_layout import ExportNotFoundError, resolve_version_dir

    try:
        resolve_version_dir(f.export_dir)  # no TensorFlow needed to report a missing export
    except ExportNotFoundError as e:
        print(f"error: --export_dir: {e}", file=sys.stderr)
        return 1
    side = f.image_size or NATIVE_SIDE.get(f.source, 0)
    if side:
        print(configure_onednn(f.onednn, f.export_dir, side, training=f.mode == "finetune"))
    try:
        result = finetune_classifier(
            f.export_dir, source=f.source, label_key=f.label_key, mode=f.mode, epochs=f.epochs,
            batch_size=f.batch_size, learning_rate=f.learning_rate, max_train=f.max_train or None,
            max_test=f.max_test or None, augment=f.augment, image_size=image_size, seed=f.seed,
            source_kwargs=source_kwargs, verbose=f.verbose, output_json=f.output_json)
    except ExportNotFoundError as e:
        print(f"error: --export_dir: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bb = result["backbone"]
    print(f"{result['mode']} {result['source']}/{result['label_key']}: top-1 test accuracy "
          f"{result['top1_accuracy']:.4f} on {result['num_test']} images "
          f"({result['num_train']} train, {result['epochs']} epochs, {result['seconds']:.1f} s); "
          f"backbone weights changed: {bb['num_changed']}/{bb['num_weights']}")
    if f.output_json:
        print(f"wrote {os.path.abspath(f.output_json)}")
    return 0


def run() -> None:
    """Console script ``hac-finetune``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
