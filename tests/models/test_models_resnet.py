"""Tests for hac_tf.models.resnet: shapes, parameter counts, max_stage, zero-init, weight sharing."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.models import (
    BasicBlock,
    Bottleneck,
    Normalize,
    ResNetBackbone,
    batch_norm,
    build_functional_backbone,
    build_resnet,
)

WIDTH = 0.125  # stage widths 8, 16, 32, 64


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


@pytest.fixture(scope="module")
def backbones():
    """One narrow backbone per (depth, stem), built once for the module."""
    keras.utils.set_random_seed(0)
    return {
        (d, s): build_resnet(d, s, WIDTH)
        for d in (18, 34, 50)
        for s in ("cifar", "imagenet")
    }


def _expected_hw(stem: str, px: int) -> list[int]:
    h = px if stem == "cifar" else math.ceil(math.ceil(px / 2) / 2)
    return [h, math.ceil(h / 2), math.ceil(h / 4), math.ceil(h / 8)]


@pytest.mark.parametrize("depth", [18, 34, 50])
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_stage_output_shapes(backbones, depth, stem):
    bb = backbones[(depth, stem)]
    exp = 4 if depth == 50 else 1
    assert bb.expansion == exp
    assert bb.base_channels == [8, 16, 32, 64]
    assert bb.stage_channels == [8 * exp, 16 * exp, 32 * exp, 64 * exp]
    assert bb.feature_dim == 64 * exp
    assert len(bb.stages) == 4
    for px in (32, 64):
        hw = _expected_hw(stem, px)
        out = bb(tf.random.uniform((1, px, px, 3)), training=False)
        assert sorted(out) == ["stage1", "stage2", "stage3", "stage4"]
        static = bb.stage_output_shapes((None, px, px, 3))
        for k in range(4):
            expected = (1, hw[k], hw[k], bb.stage_channels[k])
            assert tuple(out[f"stage{k + 1}"].shape) == expected
            assert static[f"stage{k + 1}"] == (None,) + expected[1:]


def test_stages_chain_from_stem(backbones):
    """stage k maps stage k-1's output to stage k's output; the stem takes [0,1] images."""
    bb = backbones[(18, "imagenet")]
    x = tf.random.uniform((2, 64, 64, 3))
    ref = bb(x, training=False)
    h = bb.stem(x, training=False)
    for k, stage in enumerate(bb.stages):
        h = stage(h, training=False)
        np.testing.assert_allclose(h.numpy(), ref[f"stage{k + 1}"].numpy(), atol=1e-6)


# torchvision parameter counts without the 1000-way fc (counts nn.Parameters: conv kernels and
# BN gamma/beta; BN running stats are buffers, not counted there).
TORCHVISION_NO_FC = {
    18: 11_689_512 - 513_000,
    34: 21_797_672 - 513_000,
    50: 25_557_032 - 2_049_000,
}
# BN channels per full-width model (each BN has 2 moving statistics per channel).
BN_CHANNELS = {18: 4_800, 34: 8_512, 50: 26_560}


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_full_width_parameter_count_matches_torchvision(depth):
    bb = build_resnet(depth, "imagenet", 1.0)
    trainable = _count(bb.trainable_weights)
    assert trainable == TORCHVISION_NO_FC[depth]
    # Non-trainable = BN moving mean + variance, exactly 2 per BN channel.
    assert _count(bb.non_trainable_weights) == 2 * BN_CHANNELS[depth]
    assert bb.count_params() == trainable + 2 * BN_CHANNELS[depth]
    if depth == 18:
        assert trainable == 11_176_512
        assert bb.count_params() == 11_186_112


def test_cifar_stem_parameter_count():
    # 3x3 instead of 7x7 stem conv: 64*3*(49-9) fewer weights.
    bb = build_resnet(18, "cifar", 1.0)
    assert _count(bb.trainable_weights) == 11_176_512 - 64 * 3 * 40


@pytest.mark.parametrize("max_stage", [1, 2, 3, 4])
def test_max_stage_runs_only_shallow_stages(backbones, max_stage):
    bb = backbones[(50, "cifar")]
    for stage in bb.stages:
        stage.call_count = 0
    out = bb(tf.random.uniform((2, 32, 32, 3)), training=True, max_stage=max_stage)
    assert sorted(out) == [f"stage{k}" for k in range(1, max_stage + 1)]
    assert [s.call_count for s in bb.stages] == [1] * max_stage + [0] * (4 - max_stage)


def test_max_stage_graph_has_no_deeper_ops(backbones):
    bb = backbones[(18, "cifar")]

    @tf.function(autograph=False)
    def level2(x):
        return bb(x, training=True, max_stage=2)

    graph = level2.get_concrete_function(tf.TensorSpec([None, 32, 32, 3], tf.float32)).graph
    names = [op.name for op in graph.get_operations()]
    assert any("stage2" in n for n in names)
    assert not any("stage3" in n or "stage4" in n for n in names)
    outputs = level2.get_concrete_function(tf.TensorSpec([None, 32, 32, 3], tf.float32)).outputs
    assert len(outputs) == 2


@pytest.mark.parametrize("bad", [0, 5, 2.5, True])
def test_max_stage_validation(backbones, bad):
    with pytest.raises(ValueError, match="max_stage"):
        backbones[(18, "cifar")](tf.zeros((1, 32, 32, 3)), max_stage=bad)


def test_invalid_arguments_name_allowed_values():
    with pytest.raises(ValueError, match=r"18, 34, 50"):
        build_resnet(101)
    with pytest.raises(ValueError, match=r"cifar.*imagenet"):
        build_resnet(18, stem="tiny")
    for w in (0, -0.5):
        with pytest.raises(ValueError, match="width_multiplier"):
            build_resnet(18, width_multiplier=w)


def test_width_rounding_floor_at_8():
    bb = ResNetBackbone(18, "cifar", width_multiplier=0.05)
    assert bb.base_channels == [8, 8, 13, 26]
    bb = ResNetBackbone(50, "cifar", width_multiplier=0.3)
    assert bb.base_channels == [19, 38, 77, 154]
    assert bb.feature_dim == 154 * 4


@pytest.mark.parametrize("depth", [18, 50])
def test_zero_init_residual(backbones, depth):
    bb = backbones[(depth, "cifar")]
    block_cls = Bottleneck if depth == 50 else BasicBlock
    h = bb.stem(tf.random.uniform((2, 32, 32, 3)), training=False)
    for stage in bb.stages:
        for block in stage.blocks:
            assert isinstance(block, block_cls)
            gamma = block.last_bn.gamma.numpy()
            assert gamma.shape == (block.out_channels,)
            assert np.all(gamma == 0.0)
            # Every other BN gamma starts at one.
            for layer in block.residual_layers[:-1] + block.shortcut_layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    assert np.all(layer.gamma.numpy() == 1.0)
            for training in (False, True):
                out = block(h, training=training)
                np.testing.assert_allclose(
                    out.numpy(), tf.nn.relu(block.shortcut(h, training=training)).numpy(), atol=1e-6
                )
                np.testing.assert_array_equal(block.residual(h, training=training).numpy(), 0.0)
            h = block(h, training=False)


def test_zero_init_residual_off():
    bb = build_resnet(18, "cifar", WIDTH, zero_init_residual=False)
    assert all(np.all(b.last_bn.gamma.numpy() == 1.0) for s in bb.stages for b in s.blocks)


def test_shortcut_projection_only_where_needed(backbones):
    basic = backbones[(18, "cifar")]
    assert [bool(b.shortcut_layers) for s in basic.stages for b in s.blocks] == [
        False, False, True, False, True, False, True, False
    ]
    bottle = backbones[(50, "cifar")]
    # ResNet-50: the first block of every stage projects (stage 1: 8 -> 32 channels).
    assert [bool(s.blocks[0].shortcut_layers) for s in bottle.stages] == [True] * 4
    assert not any(b.shortcut_layers for s in bottle.stages for b in s.blocks[1:])


def test_convs_have_no_bias_and_pytorch_padding(backbones):
    bb = backbones[(18, "imagenet")]
    convs = [l for l in bb._flatten_layers() if isinstance(l, keras.layers.Conv2D)]
    assert convs and all(not c.use_bias for c in convs)
    # "same" only where TF pads symmetrically (stride 1, odd kernel); stride 2 pads explicitly
    for c in convs:
        if c.padding == "same":
            assert c.strides == (1, 1) and c.kernel_size[0] % 2 == 1, c.name
        elif c.kernel_size[0] > 1:
            assert c.strides == (2, 2), c.name
    assert {c.padding for c in convs} == {"same", "valid"}
    bns = [l for l in bb._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert all(b.momentum == 0.9 and b.epsilon == 1e-5 for b in bns)


def test_stem_normalises_with_configurable_mean_std():
    norm = Normalize()
    x = tf.constant([[[[0.485, 0.456, 0.406]]]], tf.float32)
    np.testing.assert_allclose(norm(x).numpy(), 0.0, atol=1e-7)
    norm = Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    np.testing.assert_allclose(norm(tf.ones((1, 1, 1, 3))).numpy(), 1.0)
    bb = build_resnet(18, "cifar", WIDTH, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert bb.stem.stem_layers[0] is bb.stem.normalize
    assert bb.stem.normalize.mean == (0.5, 0.5, 0.5) and bb.stem.normalize.std == (0.25,) * 3
    with pytest.raises(ValueError):
        Normalize(mean=(0.5,), std=(0.5, 0.5))


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_functional_model_shares_weights(backbones, stem):
    bb = backbones[(50, stem)]
    fm = bb.functional_model()
    assert isinstance(fm, keras.Model) and not isinstance(fm, ResNetBackbone)
    assert {id(v) for v in fm.weights} == {id(v) for v in bb.weights}
    x = tf.random.uniform((2, 64, 64, 3))
    a, b = bb(x, training=False), fm(x, training=False)
    assert sorted(b) == ["stage1", "stage2", "stage3", "stage4"]
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-6)
    # A weight change through one is seen by the other.
    v = bb.stages[3].blocks[-1].last_bn.gamma
    old = v.numpy()
    v.assign(np.full(old.shape, 0.5, np.float32))
    try:
        a, b = bb(x, training=False), fm(x, training=False)
        np.testing.assert_allclose(a["stage4"].numpy(), b["stage4"].numpy(), atol=1e-6)
    finally:
        v.assign(old)


def test_functional_model_fixed_input_and_helper():
    keras.utils.set_random_seed(1)
    fm = build_functional_backbone(depth=18, stem="cifar", width_multiplier=WIDTH, input_shape=(32, 32, 3))
    assert tuple(fm.inputs[0].shape) == (None, 32, 32, 3)
    assert tuple(fm.output["stage4"].shape) == (None, 4, 4, 64)


def test_training_flag_reaches_batchnorm(backbones):
    bb = backbones[(18, "cifar")]
    bn = bb.stem.stem_layers[2]  # normalize, conv1 (same-padded), bn1
    assert isinstance(bn, keras.layers.BatchNormalization)
    before = bn.moving_mean.numpy().copy()
    bb(tf.random.uniform((4, 32, 32, 3)), training=False, max_stage=1)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
    bb(tf.random.uniform((4, 32, 32, 3)), training=True, max_stage=1)
    assert not np.allclose(bn.moving_mean.numpy(), before)


def test_get_config_round_trip(backbones):
    bb = backbones[(34, "imagenet")]
    config = bb.get_config()
    clone = ResNetBackbone.from_config(config)
    assert clone.get_config() == config
    clone.build((None, None, None, 3))
    assert clone.count_params() == bb.count_params()
    clone.set_weights(bb.get_weights())
    x = tf.random.uniform((1, 32, 32, 3))
    np.testing.assert_allclose(
        clone(x, training=False)["stage4"].numpy(), bb(x, training=False)["stage4"].numpy(), atol=1e-6
    )


def test_batch_norm_factory():
    bn = batch_norm(synchronized=True, gamma_zero=True, name="x")
    assert bn.synchronized and bn.momentum == 0.9 and bn.epsilon == 1e-5 and bn.name == "x"
    bn.build((None, 4))
    np.testing.assert_array_equal(bn.gamma.numpy(), 0.0)


def test_sync_bn_backbone_runs_on_one_device():
    keras.utils.set_random_seed(2)
    x = tf.random.uniform((4, 32, 32, 3))
    bb = build_resnet(18, "cifar", WIDTH, sync_bn=True)
    bns = [l for l in bb._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(b.synchronized for b in bns)
    out = bb(x, training=True)
    assert tuple(out["stage4"].shape) == (4, 4, 4, 64)
    # Also inside a (single-replica) distribution strategy, where SyncBN all-reduces.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        sbb = build_resnet(18, "cifar", WIDTH, sync_bn=True)
    sbb.set_weights(bb.get_weights())
    res = strategy.run(tf.function(lambda im: sbb(im, training=True)["stage4"]), args=(x,))
    plain = build_resnet(18, "cifar", WIDTH, sync_bn=False)
    plain.set_weights(bb.get_weights())
    np.testing.assert_allclose(
        strategy.experimental_local_results(res)[0].numpy(),
        plain(x, training=True)["stage4"].numpy(),
        atol=1e-4,
    )
