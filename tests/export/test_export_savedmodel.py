"""export_backbone: serving signatures vs the Keras backbone, TF Serving emulation (tf.compat.v1
session loader), warmup records, bad inputs, variables stored once, metadata, models.config."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.export import (
    METADATA_FILE,
    export_backbone,
    parse_models_config,
    read_warmup_records,
    variables_size_bytes,
)
from hac_tf.models import build_resnet

MODEL = "tiny"
SIZE = 32
CONFIG = {"model": {"depth": 18, "width_multiplier": 0.125}, "data": {"image_size": SIZE}}
METRICS = {"pretrained": {"stage4": {"garment": 0.75, "colour": np.float32(0.5)}},
           "knn": {"garment": 0.625}}


def _gap(x):
    return tf.reduce_mean(x, axis=[1, 2]).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(7)
    backbone = build_resnet(18, "cifar", width_multiplier=0.125, zero_init_residual=False)
    # Give BN non-trivial moving statistics so inference mode is really tested.
    warm = np.random.default_rng(0).random((8, SIZE, SIZE, 3)).astype(np.float32)
    for _ in range(3):
        backbone(warm, training=True)
    base_dir = tmp_path_factory.mktemp("saved_models")
    path = export_backbone(backbone, CONFIG, str(base_dir / MODEL), step=123, metrics=METRICS,
                           image_size=SIZE)
    return {"backbone": backbone, "path": path, "base_dir": str(base_dir),
            "loaded": tf.saved_model.load(path)}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)


def test_layout(exported):
    assert exported["path"] == os.path.join(exported["base_dir"], MODEL, "1")
    names = set(os.listdir(exported["path"]))
    assert {"saved_model.pb", "variables", "assets.extra", METADATA_FILE} <= names
    assert not [n for n in os.listdir(os.path.dirname(exported["path"])) if n.startswith(".tmp")]


def test_serving_default_matches_keras_backbone(exported, images):
    sig = exported["loaded"].signatures["serving_default"]
    assert sig.structured_input_signature[1]["images"].dtype == tf.uint8
    assert sig.structured_input_signature[1]["images"].shape.as_list() == [None, None, None, 3]
    out = sig(images=tf.constant(images))
    assert sorted(out) == ["embedding", "stage1", "stage2", "stage3", "stage4"]
    ref = exported["backbone"](images.astype(np.float32) / 255.0, training=False)
    np.testing.assert_allclose(out["embedding"].numpy(), _gap(ref["stage4"]), atol=1e-5)
    for k, c in zip(("stage1", "stage2", "stage3", "stage4"), exported["backbone"].stage_channels):
        assert out[k].shape == (5, c)
        np.testing.assert_allclose(out[k].numpy(), _gap(ref[k]), atol=1e-5)


def test_feature_maps_levels(exported, images):
    out = exported["loaded"].signatures["feature_maps"](images=tf.constant(images))
    assert sorted(out) == ["2", "3", "4", "5"]
    ref = exported["backbone"](images.astype(np.float32) / 255.0, training=False)
    ch = exported["backbone"].stage_channels
    for i, level in enumerate("2345"):
        side = SIZE // 2 ** i
        assert out[level].shape == (5, side, side, ch[i])
        np.testing.assert_allclose(out[level].numpy(), ref[f"stage{i + 1}"].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 3, 17])
def test_any_batch_size(exported, n):
    x = np.random.default_rng(n).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    out = exported["loaded"].signatures["serving_default"](images=tf.constant(x))
    assert out["embedding"].shape == (n, exported["backbone"].feature_dim)


def test_other_sizes_are_resized_bilinear(exported):
    x = np.random.default_rng(2).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    out = exported["loaded"].signatures["serving_default"](images=tf.constant(x))
    resized = tf.image.resize(x.astype(np.float32) / 255.0, [SIZE, SIZE], method="bilinear")
    ref = exported["backbone"](resized, training=False)
    np.testing.assert_allclose(out["embedding"].numpy(), _gap(ref["stage4"]), atol=1e-5)
    rect = np.zeros((1, 24, 50, 3), np.uint8)
    maps = exported["loaded"].signatures["feature_maps"](images=tf.constant(rect))
    assert maps["2"].shape == (1, SIZE, SIZE, exported["backbone"].stage_channels[0])


def test_float_callables_and_batchnorm_modes(exported, images):
    """__call__/call_inference use moving averages; call_training uses batch statistics and
    updates the moving averages of the *loaded* variables only."""
    loaded = tf.saved_model.load(exported["path"])  # a private copy: call_training mutates it
    x = images.astype(np.float32) / 255.0
    bb = exported["backbone"]
    ref = bb(x, training=False)
    np.testing.assert_allclose(loaded(tf.constant(x))["embedding"].numpy(), _gap(ref["stage4"]), atol=1e-5)
    np.testing.assert_allclose(loaded.call_inference(tf.constant(x))["5"].numpy(), ref["stage4"].numpy(),
                               rtol=1e-5, atol=1e-5)
    moving = [v for v in loaded.variables if not v.trainable]
    assert moving and len(loaded.trainable_variables) + len(moving) == len(loaded.variables)
    before = [v.numpy().copy() for v in loaded.variables]
    loaded.call_inference(tf.constant(x))
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, loaded.variables))
    # Reference for training mode: the Keras backbone, restored afterwards.
    snapshot = bb.get_weights()
    ref_train = bb(x, training=True)
    bb.set_weights(snapshot)
    out = loaded(tf.constant(x), training=True)
    np.testing.assert_allclose(out["embedding"].numpy(), _gap(ref_train["stage4"]), atol=1e-4)
    after = {id(v): v.numpy() for v in loaded.variables}
    changed_moving = sum(not np.array_equal(b, after[id(v)])
                         for b, v in zip(before, loaded.variables) if not v.trainable)
    changed_trainable = sum(not np.array_equal(b, after[id(v)])
                            for b, v in zip(before, loaded.variables) if v.trainable)
    assert changed_moving == len(moving) and changed_trainable == 0
    assert loaded.regularization_losses == []


def test_variables_stored_once(exported):
    bb = exported["backbone"]
    num_params = bb.count_params()
    size = variables_size_bytes(exported["path"])
    assert 4 * num_params <= size < 1.3 * 4 * num_params, (size, num_params)
    stored = [name for name, _ in tf.train.list_variables(os.path.join(exported["path"], "variables",
                                                                       "variables"))
              if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")]
    assert len(stored) == len(bb.weights)


def test_tf_serving_session_emulation(exported, images):
    """TF Serving's path: tag-'serve' MetaGraph in a v1 Session, tensors named by the signature_def."""
    tf2_pooled = exported["loaded"].signatures["serving_default"](images=tf.constant(images))
    tf2_maps = exported["loaded"].signatures["feature_maps"](images=tf.constant(images))
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], exported["path"])
        assert {"serving_default", "feature_maps"} <= set(meta.signature_def)
        for name, expected in (("serving_default", tf2_pooled), ("feature_maps", tf2_maps)):
            sig = meta.signature_def[name]
            assert list(sig.inputs) == ["images"]
            assert sig.inputs["images"].dtype == tf.uint8.as_datatype_enum
            fetches = {k: v.name for k, v in sig.outputs.items()}
            assert set(fetches) == set(expected)
            got = sess.run(fetches, {sig.inputs["images"].name: images})
            for k in expected:
                np.testing.assert_allclose(got[k], expected[k].numpy(), rtol=1e-5, atol=1e-5)
        sig = meta.signature_def["serving_default"]
        too_many = np.zeros((1025, 2, 2, 3), np.uint8)
        with pytest.raises(tf.errors.InvalidArgumentError, match="max_batch=1024"):
            sess.run(sig.outputs["embedding"].name, {sig.inputs["images"].name: too_many})
        ok = sess.run(sig.outputs["embedding"].name, {sig.inputs["images"].name: images[:1]})
        assert ok.shape == (1, exported["backbone"].feature_dim)  # the session survived


def test_warmup_records(exported):
    logs = read_warmup_records(exported["path"])
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == [
        "serving_default", "feature_maps"]
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == MODEL
        x = tf.make_ndarray(request.inputs["images"])
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[-1] == 3 and 1 <= len(x) <= 8
        out = exported["loaded"].signatures[request.model_spec.signature_name](images=tf.constant(x))
        assert all(np.isfinite(v.numpy()).all() for v in out.values())


@pytest.mark.parametrize("name,array,pattern", [
    ("float", np.zeros((2, SIZE, SIZE, 3), np.float32), "uint8"),
    ("rank3", np.zeros((SIZE, SIZE, 3), np.uint8), r"\[N,H,W,3\]"),
    ("gray", np.zeros((2, SIZE, SIZE, 1), np.uint8), "3 RGB channels"),
    ("rgba", np.zeros((2, SIZE, SIZE, 4), np.uint8), "3 RGB channels"),
    ("rank5", np.zeros((1, 2, SIZE, SIZE, 3), np.uint8), r"\[N,H,W,3\]"),
    ("oversized", np.zeros((1025, 4, 4, 3), np.uint8), "max_batch=1024"),
    ("empty_batch", np.zeros((0, SIZE, SIZE, 3), np.uint8), "batch size must be between 1"),
    ("zero_height", np.zeros((2, 0, SIZE, 3), np.uint8), "height and width"),
])
def test_bad_inputs_give_clear_errors(exported, name, array, pattern):
    sig = exported["loaded"].signatures["serving_default"]
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match=pattern):
        sig(images=tf.constant(array))
    # the loaded model keeps working afterwards
    assert sig(images=tf.zeros((1, SIZE, SIZE, 3), tf.uint8))["embedding"].shape[0] == 1


def test_feature_maps_signature_checks_too(exported):
    with pytest.raises(tf.errors.InvalidArgumentError, match="3 RGB channels"):
        exported["loaded"].signatures["feature_maps"](images=tf.zeros((1, 8, 8, 1), tf.uint8))


@pytest.mark.parametrize("value", [0, 255])
def test_extreme_images_are_finite(exported, value):
    x = np.full((2, SIZE, SIZE, 3), value, np.uint8)
    for sig in ("serving_default", "feature_maps"):
        out = exported["loaded"].signatures[sig](images=tf.constant(x))
        assert all(np.isfinite(v.numpy()).all() for v in out.values())


def test_metadata(exported):
    with open(os.path.join(exported["path"], METADATA_FILE), encoding="utf-8") as f:
        meta = json.load(f)
    bb = exported["backbone"]
    assert meta["step"] == 123
    assert meta["metrics"] == {"pretrained": {"stage4": {"garment": 0.75, "colour": 0.5}},
                               "knn": {"garment": 0.625}}
    assert meta["config"] == CONFIG
    assert meta["image_size"] == SIZE and meta["max_batch"] == 1024
    assert meta["feature_dim"] == bb.feature_dim
    assert meta["stage_channels"] == dict(zip(["stage1", "stage2", "stage3", "stage4"], bb.stage_channels))
    assert meta["level_channels"]["5"] == bb.feature_dim
    assert meta["num_params"] == bb.count_params()
    assert meta["hac_tf_version"] and meta["export_time"] and meta["model_name"] == MODEL


def test_models_config(exported):
    config = parse_models_config(os.path.join(exported["base_dir"], "models.config"))
    entries = [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config]
    assert entries == [(MODEL, f"/models/{MODEL}", "tensorflow")]  # CONFIG has no export.serving_root
    host = parse_models_config(os.path.join(exported["base_dir"], "models.host.config"))
    entries = [(c.name, c.base_path, c.model_platform) for c in host.model_config_list.config]
    assert entries == [(MODEL, os.path.join(exported["base_dir"], MODEL), "tensorflow")]


def test_rejects_non_backbone(tmp_path):
    with pytest.raises(TypeError, match="ResNetBackbone"):
        export_backbone(keras.Sequential([keras.layers.Dense(2)]), None, str(tmp_path / "m"))
    assert not os.path.exists(tmp_path / "m" / "1")
