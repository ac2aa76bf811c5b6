"""Fine-tuning an export: hub.KerasLayer (tf_keras), keras.layers.TFSMLayer and load_backbone
(Keras 3). One fit step must move the backbone weights when trainable and leave them alone
when frozen; BN uses batch statistics only in trainable training mode."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.export import export_backbone, load_backbone, read_metadata, resolve_version_dir
from hac_tf.models import build_resnet

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(11)
    # zero_init_residual=False: every trainable weight gets a non-zero gradient.
    backbone = build_resnet(18, "cifar", width_multiplier=0.125, zero_init_residual=False)
    base = str(tmp_path_factory.mktemp("ft") / "model")
    path = export_backbone(backbone, None, base, image_size=SIZE, warmup=False)
    return {"backbone": backbone, "path": path, "base": base}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return rng.random((16, SIZE, SIZE, 3)).astype(np.float32), rng.integers(0, 3, 16)


def _snapshot(variables):
    return [np.array(v.numpy(), copy=True) for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def _check_fit_effect(layer, fit, trainable):
    train_w, frozen_w = list(layer.trainable_weights), list(layer.non_trainable_weights)
    assert len(train_w) + len(frozen_w) == 100  # width-0.125 ResNet-18: 60 trainable + 40 BN stats
    before_t, before_f = _snapshot(train_w), _snapshot(frozen_w)
    fit()
    changed_t, changed_f = _changed(before_t, train_w), _changed(before_f, frozen_w)
    if trainable:
        assert len(train_w) == 60 and all(changed_t)
        assert sum(changed_f) == 40  # BN moving averages were updated (batch statistics used)
    else:
        assert not train_w and not any(changed_f)


@pytest.mark.parametrize("trainable", [True, False])
def test_hub_keras_layer_tf_keras(exported, data, trainable):
    import tensorflow_hub as hub
    import tf_keras

    x, y = data
    layer = hub.KerasLayer(exported["path"], trainable=trainable, output_key="embedding")
    inputs = tf_keras.Input((SIZE, SIZE, 3))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3)(layer(inputs)))
    model.compile(tf_keras.optimizers.SGD(0.1),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    _check_fit_effect(layer, lambda: model.fit(x, y, batch_size=16, epochs=1, verbose=0), trainable)


@pytest.mark.parametrize("trainable", [True, False])
def test_tfsm_layer_uint8_endpoints(exported, data, trainable):
    x, y = data
    # A frozen TFSMLayer must not get a training endpoint: TFSMLayer calls it whenever
    # training=True, even with trainable=False, which would update the BN statistics.
    layer = keras.layers.TFSMLayer(exported["path"], call_endpoint="serving_default",
                                   call_training_endpoint="serve_training" if trainable else None,
                                   trainable=trainable)
    inputs = keras.Input((SIZE, SIZE, 3), dtype="uint8")
    model = keras.Model(inputs, keras.layers.Dense(3)(layer(inputs)["embedding"]))
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    xu = (x * 255).astype(np.uint8)
    _check_fit_effect(layer, lambda: model.fit(xu, y, batch_size=16, epochs=1, verbose=0), trainable)


@pytest.mark.parametrize("trainable", [True, False])
def test_load_backbone_functional_fit(exported, data, trainable):
    x, y = data
    layer = load_backbone(exported["path"], trainable=trainable)
    inputs = keras.Input((SIZE, SIZE, 3))
    features = layer(inputs)
    assert tuple(features.shape) == (None, exported["backbone"].feature_dim)
    model = keras.Model(inputs, keras.layers.Dense(3)(features))
    # The trainable case runs the compiled (tf.function) train step, as real fine-tuning does;
    # the other fit tests run eagerly to save tracing time.
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=not trainable)
    _check_fit_effect(layer, lambda: model.fit(x, y, batch_size=16, epochs=1, verbose=0), trainable)


def test_load_backbone_matches_keras_and_bn_modes(exported, data):
    x, _ = data
    bb = exported["backbone"]
    layer = load_backbone(exported["base"], trainable=True)  # base path -> latest version
    ref = tf.reduce_mean(bb(x, training=False)["stage4"], axis=[1, 2]).numpy()
    np.testing.assert_allclose(layer(x).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(layer(x, training=False).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(layer((x * 255).round().astype(np.uint8)).numpy(),
                               tf.reduce_mean(bb((x * 255).round() / 255, training=False)["stage4"],
                                              axis=[1, 2]).numpy(), atol=1e-5)
    snapshot = bb.get_weights()
    ref_train = tf.reduce_mean(bb(x, training=True)["stage4"], axis=[1, 2]).numpy()
    bb.set_weights(snapshot)
    stats = _snapshot(layer.non_trainable_weights)
    np.testing.assert_allclose(layer(x, training=True).numpy(), ref_train, atol=1e-4)
    assert all(_changed(stats, layer.non_trainable_weights))
    # Frozen later: training=True now means inference mode, stats untouched.
    layer.trainable = False
    stats = _snapshot(layer.non_trainable_weights)
    layer(x, training=True)
    assert not any(_changed(stats, layer.non_trainable_weights))


def test_load_backbone_outputs(exported, data):
    x, _ = data
    ch = exported["backbone"].stage_channels
    layer = load_backbone(exported["path"], output="feature_maps")
    maps = layer(x[:2])
    assert sorted(maps) == ["2", "3", "4", "5"]
    assert [tuple(maps[k].shape) for k in "2345"] == [
        (2, SIZE // 2 ** i, SIZE // 2 ** i, ch[i]) for i in range(4)]
    inputs = keras.Input((None, None, 3))  # any image size: the float endpoints do not resize
    model = keras.Model(inputs, layer(inputs))
    assert tuple(model(np.zeros((1, 48, 40, 3), np.float32))["5"].shape) == (1, 6, 5, ch[3])
    several = load_backbone(exported["path"], output=["embedding", "3", "stage2"])(x[:2])
    assert sorted(several) == ["3", "embedding", "stage2"]
    assert tuple(several["stage2"].shape) == (2, ch[1])
    with pytest.raises(ValueError, match="output="):
        load_backbone(exported["path"], output="stage9")


def test_load_backbone_metadata_and_paths(exported, tmp_path):
    layer = load_backbone(exported["path"])
    assert layer.feature_dim == exported["backbone"].feature_dim
    assert read_metadata(exported["base"])["image_size"] == SIZE
    assert resolve_version_dir(exported["base"]) == exported["path"]
    os.makedirs(tmp_path / "empty" / ".tmp-1-h-1")
    with pytest.raises(FileNotFoundError, match="numeric version"):
        load_backbone(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError):
        load_backbone(str(tmp_path / "missing"))
    config = layer.get_config()
    assert config["filepath"] == exported["path"] and config["output"] == "embedding"
    assert "call_endpoint" not in config
