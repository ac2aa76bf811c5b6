"""tools/finetune.py and hac_tf.downstream.classifier: linear probe leaves the export's weights
alone, fine-tuning moves them, results JSON, clear error for a missing export."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from hac_tf.downstream.classifier import finetune_classifier
from hac_tf.export import ExportNotFoundError, export_backbone
from hac_tf.models import build_resnet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE_DIR = os.path.join(REPO, "tests", "fixtures", "fashion_mnist")
TOOL = os.path.join(REPO, "tools", "finetune.py")


@pytest.fixture(scope="module")
def export_path(tmp_path_factory):
    keras.utils.set_random_seed(21)
    # zero_init_residual=False: every kernel gets a non-zero gradient from the first step.
    backbone = build_resnet(18, "cifar", width_multiplier=0.125, zero_init_residual=False)
    base = str(tmp_path_factory.mktemp("cls") / "model")
    export_backbone(backbone, None, base, image_size=32, warmup=False)
    return base


def _run_tool(*args, timeout=240):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def test_tool_linear_writes_json_and_keeps_backbone(export_path, tmp_path):
    out = tmp_path / "res" / "linear.json"
    proc = _run_tool(f"--export_dir={export_path}", "--mode=linear", "--epochs=1", "--batch_size=32",
                     f"--data_dir={FIXTURE_DIR}", "--max_test=16", "--verbose=2",
                     f"--output_json={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "top-1 test accuracy" in proc.stdout
    result = json.loads(out.read_text())
    assert 0.0 <= result["top1_accuracy"] <= 1.0
    assert result["mode"] == "linear" and result["num_classes"] == 10
    assert result["num_train"] == 64 and result["num_test"] == 16
    assert result["export_dir"].endswith(os.path.join("model", "1"))
    bb = result["backbone"]
    assert bb["num_weights"] == 100 and bb["num_trainable_weights"] == 0
    assert bb["num_changed"] == 0 and bb["max_abs_change"] == 0.0
    assert len(result["history"]["loss"]) == 1


def test_finetune_changes_backbone(export_path, tmp_path):
    out = tmp_path / "ft.json"
    result = finetune_classifier(export_path, source="coloured_fashion_mnist", label_key="colour",
                                 mode="finetune", epochs=1, batch_size=32, max_train=64, max_test=16,
                                 augment=True, source_kwargs={"data_dir": FIXTURE_DIR, "num_colours": 4},
                                 verbose=0, output_json=str(out))
    assert result["num_classes"] == 4 and result["label_key"] == "colour"
    bb = result["backbone"]
    assert bb["num_trainable_weights"] == 60
    assert bb["num_changed"] == bb["num_weights"] == 100  # kernels, BN affine and BN statistics
    assert np.isfinite(result["test_loss"]) and 0.0 <= result["top1_accuracy"] <= 1.0
    assert json.loads(out.read_text())["backbone"]["num_changed"] == 100


def test_missing_export_dir(tmp_path):
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(ExportNotFoundError, match="no_such_model"):
        finetune_classifier(missing, verbose=0)
    proc = _run_tool(f"--export_dir={missing}", f"--data_dir={FIXTURE_DIR}")
    assert proc.returncode == 1
    assert "error: --export_dir: no exported model at" in proc.stderr and "no_such_model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_label_key(export_path):
    with pytest.raises(ValueError, match="no label 'shape'"):
        finetune_classifier(export_path, label_key="shape", source_kwargs={"data_dir": FIXTURE_DIR},
                            verbose=0)
