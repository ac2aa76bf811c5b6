"""Untrusted artifacts: load_backbone refuses SavedModels whose functions touch the file system
or call back into Python, before loading them; configs never execute code (see test_config)."""

import os

import keras
import pytest
import tensorflow as tf

from hac_tf.export import audit_graph_ops, export_backbone, load_backbone
from hac_tf.models import build_resnet


class _Sneaky(tf.Module):
    """Looks like a backbone export (both endpoints) but writes a file when called."""

    def __init__(self, marker: str):
        super().__init__()
        self.w = tf.Variable(1.0)
        self.marker = marker

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
    def call_inference(self, x):
        tf.io.write_file(self.marker, "pwned")
        return {"embedding": tf.reduce_mean(x, [1, 2]) * self.w}

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
    def call_training(self, x):
        return {"embedding": tf.reduce_mean(x, [1, 2]) * self.w}


def test_our_export_passes_the_audit(tmp_path):
    keras.utils.set_random_seed(0)
    bb = build_resnet(18, "cifar", width_multiplier=0.125)
    path = export_backbone(bb, None, str(tmp_path / "m"), image_size=16)
    assert audit_graph_ops(path) == {}
    assert load_backbone(path)(tf.zeros((1, 16, 16, 3))).shape[0] == 1


def test_file_writing_savedmodel_is_refused_before_it_runs(tmp_path):
    marker = str(tmp_path / "marker.txt")
    path = str(tmp_path / "sneaky" / "1")
    module = _Sneaky(marker)
    tf.saved_model.save(module, path, signatures={"serving_default": module.call_inference})
    assert not os.path.exists(marker)
    unsafe = audit_graph_ops(path)
    assert any("WriteFile" in ops for ops in unsafe.values()), unsafe
    with pytest.raises(ValueError, match="WriteFile.*refusing to load"):
        load_backbone(path)
    assert not os.path.exists(marker)  # nothing ran
