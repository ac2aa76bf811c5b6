"""hac_tf/downstream/feature_backbone.py: an export as a Model Garden backbone (levels from the
measured strides, output specs, level selection and errors); the oneDNN crash guard on a real
export; tools/finetune_dense.py run as a subprocess on a missing export."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf
from hacdense_helpers import REPO, SIZE, export_tiny_backbone

from hac_tf.downstream import onednn
from hac_tf.downstream.feature_backbone import SavedModelFeatureBackbone


@pytest.fixture(scope="module")
def export_path(tmp_path_factory):
    return export_tiny_backbone(str(tmp_path_factory.mktemp("dense") / "model"))


def test_feature_backbone_levels_and_specs(export_path):
    bb = SavedModelFeatureBackbone(export_path, SIZE, trainable=True)
    # CIFAR stem: strides 1, 2, 4, 8 -> Model Garden levels 0..3 (log2 of the stride)
    assert bb.levels == [0, 1, 2, 3]
    assert bb.level_of_export_key == {"2": "0", "3": "1", "4": "2", "5": "3"}
    assert [tuple(bb.output_specs[str(lv)]) for lv in range(4)] == [
        (None, 32, 32, 8), (None, 16, 16, 16), (None, 8, 8, 32), (None, 4, 4, 64)]
    assert len(bb.trainable_variables) == 60 and len(bb.non_trainable_variables) == 40
    out = bb(tf.zeros((2, SIZE, SIZE, 3)))
    assert sorted(out) == ["0", "1", "2", "3"] and tuple(out["3"].shape) == (2, 4, 4, 64)
    as_exported = SavedModelFeatureBackbone(export_path, SIZE, levels=["4", 5], level_naming="export")
    assert sorted(as_exported.output_specs) == ["4", "5"]
    assert tuple(as_exported.output_specs["5"]) == (None, 4, 4, 64)
    with pytest.raises(ValueError, match="not among"):
        SavedModelFeatureBackbone(export_path, SIZE, levels=[5])
    with pytest.raises(ValueError, match="stride"):
        SavedModelFeatureBackbone(export_path, (SIZE, 36))


def test_onednn_crash_guard_reads_a_real_export(export_path):
    assert onednn.conv_backprop_crash_risk(export_path, 32) is None
    assert "oneDNN" in onednn.conv_backprop_crash_risk(export_path, 64)


def test_dense_tool_missing_export(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "finetune_dense.py"),
                           f"--export_dir={tmp_path / 'nothing_here'}"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 1
    assert "error: --export_dir: no exported model at" in proc.stderr and "nothing_here" in proc.stderr
