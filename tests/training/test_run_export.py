"""hac_tf/training/run_export.py (hac-export, tools/export.py): config + latest checkpoint of a run
dir -> exported version; tools/export.py run as a subprocess on a run without a config.

The training model (hac_tf.methods.HierarchicalContrastiveModel) is replaced by a stand-in with
the same contract — built from the config, holding its ResNetBackbone in ``.backbone`` and saved
as ``tf.train.Checkpoint(model=..., step=...)`` in ``<model_dir>/checkpoints`` — so this tests the
restore/export logic, not the training model itself."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.export import read_metadata
from hac_tf.models import build_resnet
from hac_tf.training.config import load_config, to_yaml
from hac_tf.training.run_export import RunExportError, export_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StandInModel(tf.Module):
    """Like HierarchicalContrastiveModel, checkpoints its variables keyed by Keras path (a bare
    ResNetBackbone exposes none of its weights to tf.train.Checkpoint)."""

    def __init__(self, config):
        super().__init__()
        m = config.model
        self.backbone = build_resnet(m.depth, m.stem, width_multiplier=m.width_multiplier)

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        if save_type != "checkpoint":
            return super()._trackable_children(save_type, **kwargs)
        return {v.path: v for v in self.backbone.weights}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    model_dir = root / "hier"
    os.makedirs(model_dir / "eval")
    # image_size 16: the export must take its serving size from the config object
    config = load_config(None, ["model.width_multiplier=0.125", "data.image_size=16"])
    (model_dir / "config.yaml").write_text(to_yaml(config))
    (model_dir / "eval" / "results.json").write_text(
        json.dumps({"title": "t", "results": {"knn": {"garment": 0.5}}, "metadata": {}}))
    keras.utils.set_random_seed(5)
    trained = StandInModel(config)
    for w in trained.backbone.weights:  # "training": move every weight away from its init
        w.assign(w.numpy() + np.random.default_rng(0).normal(0, 0.01, w.shape).astype(np.float32))
    step = tf.Variable(42, dtype=tf.int64)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=trained, step=step, optimizer=tf.Module()),
        str(model_dir / "checkpoints"), max_to_keep=2)
    manager.save(checkpoint_number=42)
    return {"root": root, "model_dir": str(model_dir), "trained": trained}


def test_export_run_restores_latest_checkpoint(run_dir):
    export_dir = str(run_dir["root"] / "saved_models" / "hier")
    path = export_run(run_dir["model_dir"], export_dir=export_dir, build_fn=StandInModel)
    assert path == os.path.join(export_dir, "1")
    meta = read_metadata(path)
    assert meta["step"] == 42 and meta["metrics"] == {"knn": {"garment": 0.5}}
    assert meta["config"]["model"]["width_multiplier"] == 0.125 and meta["image_size"] == 16
    assert meta["config"] == json.loads(json.dumps(load_config(
        os.path.join(run_dir["model_dir"], "config.yaml")).as_dict()))
    x = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    loaded = tf.saved_model.load(path)
    assert loaded.signatures["feature_maps"](images=tf.zeros((1, 40, 40, 3), tf.uint8))["2"].shape[1:3] == (16, 16)
    out = loaded.signatures["serving_default"](images=tf.constant(x))
    ref = run_dir["trained"].backbone(x.astype(np.float32) / 255.0, training=False)["stage4"]
    np.testing.assert_allclose(out["embedding"].numpy(), tf.reduce_mean(ref, [1, 2]).numpy(), atol=1e-5)
    assert os.path.isfile(run_dir["root"] / "saved_models" / "models.config")
    with pytest.raises(RunExportError, match="already exists"):
        export_run(run_dir["model_dir"], export_dir=export_dir, version=1, build_fn=StandInModel)


def test_export_run_errors(run_dir, tmp_path):
    with pytest.raises(RunExportError, match="no config"):
        export_run(str(tmp_path), build_fn=StandInModel)
    (tmp_path / "config.yaml").write_text(open(os.path.join(run_dir["model_dir"], "config.yaml")).read())
    with pytest.raises(RunExportError, match="no checkpoint"):
        export_run(str(tmp_path), build_fn=StandInModel)
    # A checkpoint without the backbone (e.g. a different model) restores nothing: refuse.
    tf.train.Checkpoint(step=tf.Variable(3, dtype=tf.int64)).save(str(tmp_path / "checkpoints" / "ckpt"))
    with pytest.raises(RunExportError, match="restored no backbone weight"):
        export_run(str(tmp_path), export_dir=str(tmp_path / "out" / "m"), build_fn=StandInModel)
    assert not os.path.exists(tmp_path / "out" / "m")


def test_export_tool_reports_a_run_without_config(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "export.py"), f"--model_dir={tmp_path}",
                           f"--export_dir={tmp_path / 'out'}"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "error: no config at" in proc.stderr and str(tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr and not os.path.exists(tmp_path / "out")


def test_export_run_skips_a_damaged_newer_checkpoint(run_dir, tmp_path):
    """The newest checkpoint truncated on disk: the export names it and uses the newest intact one;
    every checkpoint damaged: a clear error, nothing exported."""
    import glob
    import shutil

    model_dir = tmp_path / "hier"
    shutil.copytree(run_dir["model_dir"], model_dir)
    trained = StandInModel(load_config(str(model_dir / "config.yaml")))
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=trained, step=tf.Variable(50, dtype=tf.int64), optimizer=tf.Module()),
        str(model_dir / "checkpoints"), max_to_keep=3)
    manager.save(checkpoint_number=50)
    (newest,) = glob.glob(str(model_dir / "checkpoints" / "ckpt-50.data-*"))
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) // 2)
    path = export_run(str(model_dir), export_dir=str(tmp_path / "out" / "hier"), build_fn=StandInModel)
    assert read_metadata(path)["step"] == 42
    (older,) = glob.glob(str(model_dir / "checkpoints" / "ckpt-42.data-*"))
    with open(older, "r+b") as f:
        f.truncate(os.path.getsize(older) // 2)
    with pytest.raises(RunExportError, match="every checkpoint .* is damaged"):
        export_run(str(model_dir), export_dir=str(tmp_path / "out" / "again"), build_fn=StandInModel)
    assert not os.path.exists(tmp_path / "out" / "again")
