"""Tests for hac_tf.models.branches: SepConv, StageBranch, GlobalPoolBranch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.models import (
    GlobalPoolBranch,
    SepConv,
    StageBranch,
    build_resnet,
    build_stage_branches,
    resize_like,
)


@pytest.fixture(scope="module")
def nets():
    keras.utils.set_random_seed(0)
    out = {}
    for depth, stem in [(18, "cifar"), (50, "imagenet")]:
        bb = build_resnet(depth, stem, 0.125)
        out[(depth, stem)] = (
            bb,
            build_stage_branches(bb.stage_channels, bb.base_channels, bb.feature_dim),
        )
    return out


@pytest.mark.parametrize(
    "key,px",
    [((18, "cifar"), 32), ((50, "imagenet"), 32), ((50, "imagenet"), 64), ((50, "imagenet"), 96)],
)
def test_every_level_yields_feature_dim(nets, key, px):
    bb, branches = nets[key]
    maps = bb(tf.random.uniform((2, px, px, 3)), training=True)
    assert [b.level for b in branches] == [1, 2, 3, 4]
    assert isinstance(branches[3], GlobalPoolBranch)
    for k, branch in enumerate(branches):
        for training in (True, False):
            feat = branch(maps[f"stage{k + 1}"], training=training)
            assert tuple(feat.shape) == (2, bb.feature_dim)
            assert np.all(np.isfinite(feat.numpy()))


def test_level4_is_global_average_pool(nets):
    bb, branches = nets[(18, "cifar")]
    x = tf.random.normal((2, 4, 4, bb.feature_dim))
    np.testing.assert_allclose(
        branches[3](x).numpy(), tf.reduce_mean(x, axis=[1, 2]).numpy(), rtol=1e-6
    )
    assert not branches[3].weights


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_odd_and_tiny_maps(size):
    keras.utils.set_random_seed(0)
    branch = StageBranch(1, 16, [8, 16, 32, 64], feature_dim=64)
    x = tf.random.normal((2, size, size, 16))
    assert tuple(branch(x, training=True).shape) == (2, 64)
    prepared = branch.prepare(x, training=False)
    attention = branch.attention(prepared, training=False)
    assert attention.shape == prepared.shape
    assert np.all((attention.numpy() > 0) & (attention.numpy() < 1))


def test_dynamic_spatial_shape_in_graph():
    branch = StageBranch(2, 32, [8, 16, 32], feature_dim=128)
    fn = tf.function(lambda t: branch(t, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([None, None, None, 32], tf.float32))
    for size in (7, 8):
        assert tuple(concrete(tf.random.normal((2, size, size, 32))).shape) == (2, 128)


def _torch_upsample2x_bilinear(a: np.ndarray) -> np.ndarray:
    """Reference: PyTorch Upsample(scale_factor=2, bilinear, align_corners=False) on NHWC."""

    def axis_weights(n_in: int):
        src = np.maximum((np.arange(2 * n_in) + 0.5) / 2.0 - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    h0, h1, lh = axis_weights(a.shape[1])
    w0, w1, lw = axis_weights(a.shape[2])
    rows = a[:, h0] * (1 - lh)[None, :, None, None] + a[:, h1] * lh[None, :, None, None]
    return rows[:, :, w0] * (1 - lw)[None, None, :, None] + rows[:, :, w1] * lw[None, None, :, None]


def test_resize_equals_upsample_x2_for_even_maps():
    a = tf.random.normal((2, 4, 3, 5))
    ref = tf.zeros((2, 8, 6, 5))
    out = resize_like(a, ref).numpy()
    np.testing.assert_allclose(out, _torch_upsample2x_bilinear(a.numpy()), atol=1e-5)
    up = keras.layers.UpSampling2D(2, interpolation="bilinear")(a).numpy()
    np.testing.assert_allclose(out, up, atol=1e-6)
    # Odd target: resized to the reference size.
    assert tuple(resize_like(tf.random.normal((1, 4, 4, 3)), tf.zeros((1, 7, 7, 3))).shape) == (
        1, 7, 7, 3
    )


@pytest.mark.parametrize("size,stride,expected", [(8, 2, 4), (7, 2, 4), (1, 2, 1), (2, 2, 1), (5, 1, 5)])
def test_sepconv_shapes(size, stride, expected):
    sep = SepConv(12, stride=stride)
    y = sep(tf.random.normal((2, size, size, 6)), training=True)
    assert tuple(y.shape) == (2, expected, expected, 12)
    assert sep.compute_output_shape((None, size, size, 6)) == (None, expected, expected, 12)
    assert np.all(y.numpy() >= 0)  # ends in ReLU


def test_sepconv_structure_and_params():
    cin, cout = 6, 12
    sep = SepConv(cout)
    sep.build((None, 8, 8, cin))
    kinds = [type(l).__name__ for l in sep.sep_layers]
    # stride 2: explicit PyTorch padding + valid; stride 1: "same" (symmetric, identical)
    assert kinds == [
        "ZeroPadding2D", "DepthwiseConv2D", "SmallMapConv2D", "FusedBatchNormalization", "ReLU",
        "DepthwiseConv2D", "SmallMapConv2D", "FusedBatchNormalization", "ReLU",
    ]
    assert sep.sep_layers[1].strides == (2, 2) and sep.sep_layers[1].padding == "valid"
    assert sep.sep_layers[5].strides == (1, 1) and sep.sep_layers[5].padding == "same"
    trainable = sum(int(np.prod(w.shape)) for w in sep.trainable_weights)
    assert trainable == 9 * cin + cin * cin + 2 * cin + 9 * cin + cin * cout + 2 * cout


def test_branch_channel_plan():
    # Level 1 of ResNet-50 at width 1: 64 -> 128 -> 256 -> 512 SepConvs, then 1x1 -> 2048.
    b1 = StageBranch(1, 256, [64, 128, 256], feature_dim=2048)
    assert b1.scala_widths == [128, 256, 512]
    b3 = StageBranch(3, 1024, [64, 128, 256], feature_dim=2048)
    assert b3.scala_widths == [512]
    b2 = StageBranch(2, 38, [19, 38, 77, 154], feature_dim=154)
    assert b2.scala_widths == [77, 154]
    with pytest.raises(ValueError, match="GlobalPoolBranch"):
        StageBranch(4, 512, [64, 128, 256], feature_dim=512)
    with pytest.raises(ValueError, match="base_channels"):
        StageBranch(1, 64, [64, 128], feature_dim=512)


def test_branch_input_channel_check():
    branch = StageBranch(1, 16, [8, 16, 32], feature_dim=64)
    with pytest.raises(ValueError, match="input channels"):
        branch.build((None, 8, 8, 17))


def test_branch_and_sepconv_get_config_round_trip():
    for layer in (
        StageBranch(2, 32, [8, 16, 32, 64], feature_dim=256, sync_bn=True, name="b2"),
        SepConv(24, stride=1, name="s"),
        GlobalPoolBranch(64, name="g"),
    ):
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        restored = keras.layers.deserialize(keras.layers.serialize(layer))
        assert type(restored) is type(layer) and restored.get_config() == config


def test_branch_sync_bn_runs():
    branch = StageBranch(3, 32, [8, 16, 32], feature_dim=64, sync_bn=True)
    assert tuple(branch(tf.random.normal((2, 2, 2, 32)), training=True).shape) == (2, 64)


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_level_k_gradients_reach_only_stages_1_to_k(nets, level):
    bb, branches = nets[(18, "cifar")]
    with tf.GradientTape() as tape:
        maps = bb(tf.random.uniform((2, 32, 32, 3)), training=True, max_stage=level)
        loss = tf.reduce_sum(branches[level - 1](maps[f"stage{level}"], training=True))
    grads = tape.gradient(loss, bb.trainable_weights + branches[level - 1].trainable_weights)
    for var, grad in zip(bb.trainable_weights, grads):
        deeper = any(f"stage{k}/" in var.path for k in range(level + 1, 5))
        assert (grad is None) == deeper, var.path
    assert all(g is not None for g in grads[len(bb.trainable_weights):])


@pytest.fixture
def bf16_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


def test_depthwise_convs_compute_in_float32_under_mixed_bfloat16(bf16_policy):
    """oneDNN's bf16 depthwise backprop is ~80x slower than fp32 on CPU (docs/PERFORMANCE.md):
    under mixed_bfloat16 the SepConv depthwise convs run in float32, the 1x1 convs in bf16."""
    from hac_tf.models.branches import SepConv

    layer = SepConv(16, stride=2)
    x = tf.random.normal([2, 8, 8, 16])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32))
    dw = [l for l in layer.sep_layers if isinstance(l, keras.layers.DepthwiseConv2D)]
    pw = [l for l in layer.sep_layers if isinstance(l, keras.layers.Conv2D) and l not in dw]
    assert dw and all(l.compute_dtype == "float32" for l in dw)
    assert pw and all(l.compute_dtype == "bfloat16" for l in pw)
    assert y.dtype == tf.bfloat16 and y.shape == (2, 4, 4, 16)
    grads = tape.gradient(loss, [x] + layer.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert all(v.dtype == tf.float32 for v in layer.trainable_variables)
