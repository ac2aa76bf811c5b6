"""hac_tf/downstream/onednn.py (TensorFlow-free): which exports at which image sides risk the
oneDNN conv-gradient crash, read from the export's metadata (a version dir or a base path), and
the TF_ENABLE_ONEDNN_OPTS decision of each mode."""

import json
import os

import pytest

from hac_tf.downstream import onednn


def _fake_export(base, version=1, channels=8, stem="cifar"):
    """A published version: saved_model.pb (never parsed here) and the metadata the guard reads."""
    path = base / str(version)
    os.makedirs(path)
    (path / "saved_model.pb").write_bytes(b"")
    (path / "hac_tf_metadata.json").write_text(json.dumps({"level_channels": {"2": channels},
                                                           "backbone": {"stem": stem}}))
    return str(path)


def test_crash_risk_by_channels_stem_and_side(tmp_path):
    narrow = _fake_export(tmp_path / "narrow")
    assert onednn.conv_backprop_crash_risk(narrow, 44) is None
    assert "8 feed a 1x1 stride-2 convolution" in onednn.conv_backprop_crash_risk(narrow, 45)
    assert onednn.conv_backprop_crash_risk(str(tmp_path / "narrow"), 64) is not None  # base path -> version 1
    wide = _fake_export(tmp_path / "wide", channels=16)
    assert onednn.conv_backprop_crash_risk(wide, 96) is None
    imagenet = _fake_export(tmp_path / "imagenet", stem="imagenet")  # stride-4 stem: 96 px -> 24 px maps
    assert onednn.conv_backprop_crash_risk(imagenet, 96) is None
    assert onednn.conv_backprop_crash_risk(imagenet, 224) is not None


def test_crash_risk_is_none_when_it_cannot_tell(tmp_path):
    assert onednn.conv_backprop_crash_risk(str(tmp_path / "absent"), 64) is None
    assert onednn.conv_backprop_crash_risk("", 64) is None
    os.makedirs(tmp_path / "empty")
    assert onednn.conv_backprop_crash_risk(str(tmp_path / "empty"), 64) is None
    broken = _fake_export(tmp_path / "broken")
    with open(os.path.join(broken, "hac_tf_metadata.json"), "w") as f:
        f.write("{not json")
    assert onednn.conv_backprop_crash_risk(broken, 64) is None


def test_configure_onednn_modes(tmp_path, monkeypatch):
    narrow = _fake_export(tmp_path / "narrow")
    monkeypatch.delenv(onednn.ONEDNN_ENV, raising=False)
    assert onednn.configure_onednn("auto", narrow, 32) == "oneDNN on (TensorFlow default)"
    assert onednn.ONEDNN_ENV not in os.environ
    assert onednn.configure_onednn("auto", narrow, 64, training=False) == "oneDNN on (TensorFlow default)"
    assert onednn.configure_onednn("auto", narrow, 64).startswith("oneDNN off (")
    assert os.environ[onednn.ONEDNN_ENV] == "0" and not onednn.onednn_enabled()
    assert "TF_ENABLE_ONEDNN_OPTS=0" in onednn.configure_onednn("auto", narrow, 64)  # the environment wins
    assert onednn.configure_onednn("on", narrow, 64) == "oneDNN on (--onednn=on)"
    assert os.environ[onednn.ONEDNN_ENV] == "1" and onednn.onednn_enabled()
    with pytest.raises(ValueError, match="auto, on or off"):
        onednn.configure_onednn("maybe", narrow, 64)
