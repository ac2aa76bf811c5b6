"""Export the backbone of a training run as a TF Serving SavedModel version.

  python tools/export.py --model_dir=runs/hier                      # -> saved_models/hier/<next>
  python tools/export.py --model_dir=runs/hier --export_dir=saved_models/hier_v2 --version=3
  python tools/export.py --model_dir=runs/hier --serving_root=/models   # paths as seen in Docker

Reads ``<model_dir>/config.yaml``, builds a fresh model from it, restores the latest checkpoint
of ``<model_dir>/checkpoints`` (or --checkpoint) and exports its backbone with
``hac_tf.export.export_backbone``: signatures ``serving_default`` / ``feature_maps``, warmup
requests, ``hac_tf_metadata.json`` (config, step, the run's evaluation results from
``<model_dir>/eval/results.json`` when present), published atomically, and
``<dirname(export_dir)>/models.config`` rewritten. Serve with
``tensorflow_model_server --model_config_file=saved_models/models.config``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # noqa: E402


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("model_dir", None, "Training run directory (with checkpoints/ and config.yaml).")
    flags.DEFINE_string("export_dir", None, "Model base path; default saved_models/<basename of model_dir>.")
    flags.DEFINE_integer("version", None, "Version number; default: one more than the largest existing.")
    flags.DEFINE_integer("image_size", 0, "Side the serving signatures resize to; 0 = data.image_size of the config.")
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix to restore; default: latest in <model_dir>/checkpoints.")
    flags.DEFINE_string("config_file", None, "Config YAML; default <model_dir>/config.yaml.")
    flags.DEFINE_multi_string("params_override", [], "Config overrides ('a.b=v'), applied after the YAML.")
    flags.DEFINE_string("metrics_file", None,
                        "Evaluation JSON stored in the metadata; default <model_dir>/eval/results.json.")
    flags.DEFINE_string("serving_root", None, "Directory of the model base paths as the server sees it (models.config).")
    flags.DEFINE_integer("max_batch", 1024, "Largest batch the serving signatures accept.")
    flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")
    flags.DEFINE_bool("allow_uninitialized", False, "Export even if the checkpoint restored no backbone weight.")
    flags.mark_flag_as_required("model_dir")


class ExportToolError(RuntimeError):
    """A user-facing problem (missing config/checkpoint, nothing restored, version exists)."""


def _load_metrics(path: str) -> Optional[Any]:
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    return payload.get("results", payload) if isinstance(payload, dict) else payload


def _checkpoint_step(path: str, restored_step) -> int:
    value = int(restored_step.numpy())
    if value:
        return value
    m = re.search(r"-(\d+)$", path)
    return int(m.group(1)) if m else 0


def _default_build_fn(config):
    from hac_tf.training.trainer import build_model

    return build_model(config)


def restore_model(config, checkpoint_path: str, build_fn=None):
    """Builds the training model from ``config`` and restores ``checkpoint_path`` into it.

    The checkpoint is the trainer's ``tf.train.Checkpoint(model=..., optimizer=..., step=...)``;
    only ``model`` and ``step`` are read (``expect_partial``). ``build_fn(config)`` defaults to
    ``hac_tf.training.trainer.build_model``. Returns ``(model, step, num_backbone_weights_changed)``.
    """
    import numpy as np
    import tensorflow as tf

    model = (build_fn or _default_build_fn)(config)
    backbone = model.backbone
    before = [np.array(w.numpy(), copy=True) for w in backbone.weights]
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    tf.train.Checkpoint(model=model, step=step).restore(checkpoint_path).expect_partial()
    changed = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, backbone.weights))
    return model, _checkpoint_step(checkpoint_path, step), changed


def export_run(model_dir: str, export_dir: Optional[str] = None, version: Optional[int] = None,
               image_size: int = 0, checkpoint: Optional[str] = None, config_file: Optional[str] = None,
               params_override: Sequence[str] = (), metrics_file: Optional[str] = None,
               serving_root: Optional[str] = None, max_batch: int = 1024, warmup: bool = True,
               allow_uninitialized: bool = False, build_fn=None) -> str:
    """Restores the latest checkpoint of ``model_dir`` and exports it; returns the version dir.

    Raises ExportToolError (missing config/checkpoint, nothing restored, version exists) and
    hac_tf.training.config.ConfigError.
    """
    import tensorflow as tf

    from hac_tf.export import ExportWriteError, VersionExistsError, export_backbone
    from hac_tf.training.config import load_config

    config_file = config_file or os.path.join(model_dir, "config.yaml")
    if not os.path.isfile(config_file):
        raise ExportToolError(f"no config at {config_file} (pass --config_file)")
    config = load_config(config_file, list(params_override))
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    checkpoint = checkpoint or tf.train.latest_checkpoint(ckpt_dir)
    if not checkpoint:
        raise ExportToolError(f"no checkpoint in {ckpt_dir}")
    model, step, changed = restore_model(config, checkpoint, build_fn)
    logging.info("restored %s (step %d, %d backbone weights loaded)", checkpoint, step, changed)
    if changed == 0 and not allow_uninitialized:
        raise ExportToolError(f"{checkpoint} restored no backbone weight (wrong config or checkpoint?); "
                              "pass --allow_uninitialized to export anyway")
    export_dir = export_dir or os.path.join("saved_models", os.path.basename(os.path.normpath(model_dir)))
    metrics = _load_metrics(metrics_file or os.path.join(model_dir, "eval", "results.json"))
    try:
        return export_backbone(model, config, export_dir, step=step, metrics=metrics, version=version,
                               image_size=image_size or None, warmup=warmup, max_batch=max_batch,
                               serving_root=serving_root)
    except (VersionExistsError, ExportWriteError) as e:
        raise ExportToolError(str(e)) from e


def main(argv: List[str]) -> int:
    del argv
    from absl import flags

    from hac_tf.training.config import ConfigError

    import tensorflow as tf

    tf.get_logger().setLevel("WARNING")  # absl's INFO would show every SavedModel-writer line
    f = flags.FLAGS
    try:
        path = export_run(f.model_dir, f.export_dir, f.version, f.image_size, f.checkpoint,
                          f.config_file, f.params_override, f.metrics_file, f.serving_root,
                          f.max_batch, f.warmup, f.allow_uninitialized)
    except ConfigError as e:
        print(f"ConfigError: {e}", file=sys.stderr)
        return 2
    except ExportToolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"exported {f.model_dir} to {path}")
    return 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
