"""Export the backbone of a training run directory: its config + latest checkpoint -> a TF
Serving version directory (the library side of ``hac-export`` / ``tools/export.py``).

    export_run("runs/hier")                      # -> saved_models/hier/<next version>
    export_run("runs/hier", export_dir="saved_models/hier_v2", version=3)

Reads ``<model_dir>/config.yaml``, rebuilds the run's model from the resolved spec it saved
(``<model_dir>/model_spec.json``; from the config for runs of hac_tf <= 0.2), restores the latest checkpoint
of ``<model_dir>/checkpoints`` (or ``checkpoint``) and exports its backbone with
:func:`hac_tf.export.export_backbone`: signatures ``serving_default`` / ``feature_maps``, warmup
requests, ``hac_tf_metadata.json`` (config, step, the run's evaluation results from
``<model_dir>/eval/results.json`` when present), published atomically, and
``<dirname(export_dir)>/models.config`` rewritten.

Exporting *a run* needs the run's config and the model builder, so it lives here on the training
side; :mod:`hac_tf.export` knows SavedModels only and imports nothing from ``hac_tf.training``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Optional, Sequence

from absl import logging


class RunExportError(RuntimeError):
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
    from hac_tf.training.builders import build_model

    return build_model(config)


def rebuild_run_model(model_dir: str, config=None):
    """The training model of the run in ``model_dir``, rebuilt from the resolved spec the run saved
    (``<model_dir>/model_spec.json``): neither the data nor the augmentation policy is read.
    A run without that file (hac_tf <= 0.2) is rebuilt from ``config`` as its trainer did."""
    from hac_tf.methods import HierarchicalContrastiveModel, ModelSpec
    from hac_tf.methods.spec import MODEL_SPEC_FILE

    path = os.path.join(model_dir, MODEL_SPEC_FILE)
    if os.path.isfile(path):
        return HierarchicalContrastiveModel(ModelSpec.load(path))
    if config is None:
        raise RunExportError(f"{model_dir} has no {MODEL_SPEC_FILE} and no config was given to rebuild its model")
    return _default_build_fn(config)


def restore_model(config, checkpoint_path: str, build_fn=None):
    """Builds the training model from ``config`` and restores ``checkpoint_path`` into it.

    The checkpoint is the trainer's ``tf.train.Checkpoint(model=..., optimizer=..., step=...)``;
    only ``model`` and ``step`` are read (``expect_partial``). ``build_fn(config)`` defaults to
    ``hac_tf.training.builders.build_model``. Returns ``(model, step, num_backbone_weights_changed)``.
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

    ``export_dir`` defaults to ``saved_models/<basename of model_dir>``; ``image_size`` 0 = the
    config's ``data.image_size``. Raises RunExportError (missing config/checkpoint, nothing
    restored, version exists) and hac_tf.training.config.ConfigError.
    """

    from hac_tf.export import ExportWriteError, VersionExistsError, export_backbone
    from hac_tf.training.config import load_config

    config_file = config_file or os.path.join(model_dir, "config.yaml")
    if not os.path.isfile(config_file):
        raise RunExportError(f"no config at {config_file} (pass --config_file)")
    config = load_config(config_file, list(params_override))
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    if not checkpoint:  # the newest one that verifies (a damaged newer one is named and skipped)
        from hac_tf.training.checkpoint_integrity import DamagedCheckpointError, newest_intact_checkpoint

        try:
            checkpoint = newest_intact_checkpoint(ckpt_dir)
        except DamagedCheckpointError as e:
            raise RunExportError(str(e)) from None
    if not checkpoint:
        raise RunExportError(f"no checkpoint in {ckpt_dir}")
    model, step, changed = restore_model(config, checkpoint, build_fn or (lambda c: rebuild_run_model(model_dir, c)))
    logging.info("restored %s (step %d, %d backbone weights loaded)", checkpoint, step, changed)
    if changed == 0 and not allow_uninitialized:
        raise RunExportError(f"{checkpoint} restored no backbone weight (wrong config or checkpoint?); "
                             "pass --allow_uninitialized to export anyway")
    export_dir = export_dir or os.path.join("saved_models", os.path.basename(os.path.normpath(model_dir)))
    metrics = _load_metrics(metrics_file or os.path.join(model_dir, "eval", "results.json"))
    try:
        return export_backbone(model, config, export_dir, step=step, metrics=metrics, version=version,
                               image_size=image_size or None, warmup=warmup, max_batch=max_batch,
                               serving_root=serving_root)
    except (VersionExistsError, ExportWriteError, ValueError) as e:  # ValueError: e.g. a bad serving_root
        raise RunExportError(str(e)) from e
