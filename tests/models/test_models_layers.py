"""FusedBatchNormalization: the fused kernel reproduces Keras' BatchNormalization exactly (up to
float rounding) — outputs, gradients, moving statistics and inference — and falls back to the
Keras computation where the fused kernel does not apply; stride-1 'same' convs equal the
explicit PyTorch padding; SmallMapConv2D's im2col weight gradient equals the native one."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.models.layers import (
    IM2COL_FILTER_GRAD_MAX_POSITIONS,
    FusedBatchNormalization,
    SmallMapConv2D,
    batch_norm,
    batch_norm_view_groups,
    conv_layers,
    depthwise_layers,
    per_view_batch_norm,
)


def _run(layer, x, cotangent):
    """(train output, input/param gradients, moving mean, moving var, inference output)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * cotangent)
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return (y.numpy().astype(np.float64), [g.numpy() for g in grads], layer.moving_mean.numpy(),
            layer.moving_variance.numpy(), layer(x, training=False).numpy().astype(np.float64))


@pytest.mark.parametrize("shape", [(8, 5, 5, 6), (16, 6), (3, 1, 1, 4), (2, 6)])
@pytest.mark.parametrize("affine", [True, False])
def test_fused_equals_keras_batch_norm(shape, affine):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, size=shape).astype(np.float32))
    cot = tf.constant(rng.normal(size=shape).astype(np.float32))
    kw = dict(momentum=0.9, epsilon=1e-5, center=affine, scale=affine)
    ref, fused = keras.layers.BatchNormalization(**kw), FusedBatchNormalization(**kw)
    for layer in (ref, fused):
        layer.build(shape)
        if affine:
            layer.gamma.assign(np.linspace(-1.5, 2.0, shape[-1]).astype(np.float32))
            layer.beta.assign(np.linspace(0.5, -0.5, shape[-1]).astype(np.float32))
    # two training calls: the moving averages compound
    _run(ref, x, cot), _run(fused, x, cot)
    (ya, ga, ma, va, ia), (yb, gb, mb, vb, ib) = _run(ref, x * 0.5 - 1.0, cot), _run(fused, x * 0.5 - 1.0, cot)
    np.testing.assert_allclose(yb, ya, atol=2e-5)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(b, a, atol=1e-4 * max(1.0, np.abs(a).max()))
    np.testing.assert_allclose(mb, ma, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(vb, va, rtol=1e-5)  # biased batch variance, as Keras
    np.testing.assert_allclose(ib, ia, atol=2e-5)
    assert yb.shape == shape


def test_fused_runs_bfloat16_inputs_with_float32_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 2.0, size=(16, 4, 4, 8)).astype(np.float32)
    ref = FusedBatchNormalization(dtype="float32")
    bf16 = FusedBatchNormalization(dtype="mixed_bfloat16")
    y_ref = ref(tf.constant(x), training=True).numpy()
    y = bf16(tf.constant(x), training=True)
    assert y.dtype == tf.bfloat16 and bf16.moving_mean.dtype == "float32"
    np.testing.assert_allclose(y.numpy().astype(np.float32), y_ref, atol=0.05)
    np.testing.assert_allclose(bf16.moving_mean.numpy(), ref.moving_mean.numpy(), atol=0.02)


def test_fused_falls_back_to_keras_for_float64_and_masks():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 3, 3, 5))
    ref = keras.layers.BatchNormalization(dtype="float64")
    fused = FusedBatchNormalization(dtype="float64")
    assert not fused._fusable(tf.constant(x), None)
    np.testing.assert_allclose(fused(tf.constant(x), training=True).numpy(),
                               ref(tf.constant(x), training=True).numpy(), atol=1e-12)
    x32 = tf.constant(x.astype(np.float32))
    assert FusedBatchNormalization()._fusable(x32, None)
    assert not FusedBatchNormalization()._fusable(x32, tf.ones(x32.shape[:-1], tf.bool))


def test_factory_returns_fused_layers():
    assert type(batch_norm(False)) is FusedBatchNormalization
    assert isinstance(batch_norm(True), FusedBatchNormalization)  # SyncBN: fused on one replica


@pytest.mark.parametrize("size", [1, 2, 5, 8])
def test_same_padded_stride1_convs_equal_explicit_padding(size):
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(2, size, size, 4)).astype(np.float32))
    conv = conv_layers(6, 3, stride=1, padding=1, name="c")
    assert [type(l).__name__ for l in conv] == ["SmallMapConv2D"] and conv[0].padding == "same"
    y = conv[0](x)
    expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), conv[0].kernel, 1, "VALID")
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-5)
    dw = depthwise_layers(1, name="d")
    assert [type(l).__name__ for l in dw] == ["DepthwiseConv2D"]
    y = dw[0](x)
    expected = tf.nn.depthwise_conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), dw[0].kernel,
                                      [1, 1, 1, 1], "VALID")
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-5)
    # stride 2 keeps PyTorch's symmetric padding explicitly
    assert [type(l).__name__ for l in conv_layers(6, 3, stride=2, padding=1)] == ["ZeroPadding2D", "SmallMapConv2D"]
    assert [type(l).__name__ for l in depthwise_layers(2)] == ["ZeroPadding2D", "DepthwiseConv2D"]


@pytest.mark.parametrize("size,kernel,stride,padding", [
    (1, 3, 1, "same"), (2, 3, 1, "same"), (4, 3, 2, "valid"), (3, 3, 1, "same"), (4, 1, 2, "valid"),
    (2, 1, 1, "valid"), (9, 3, 1, "same"),
])
def test_small_map_conv_gradients_equal_keras_conv(size, kernel, stride, padding):
    rng = np.random.default_rng(4)
    x = tf.constant(rng.normal(size=(5, size, size, 6)).astype(np.float32))
    ref = keras.layers.Conv2D(7, kernel, strides=stride, padding=padding, use_bias=False)
    conv = SmallMapConv2D(7, kernel, strides=stride, padding=padding, use_bias=False)
    ref.build(x.shape)
    conv.build(x.shape)
    conv.kernel.assign(ref.kernel)
    out_positions = conv.compute_output_shape(tuple(x.shape))[1] ** 2
    assert conv._use_im2col(x) == (out_positions <= IM2COL_FILTER_GRAD_MAX_POSITIONS[tf.float32])
    results = []
    for layer in (ref, conv):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        results.append([y.numpy()] + [g.numpy() for g in tape.gradient(loss, [x, layer.kernel])])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)


def test_small_map_conv_bfloat16_and_unknown_sizes():
    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(8, 6, 6, 4)).astype(np.float32))
    conv = SmallMapConv2D(5, 3, padding="same", use_bias=False, dtype="mixed_bfloat16")
    ref = keras.layers.Conv2D(5, 3, padding="same", use_bias=False, dtype="mixed_bfloat16")
    conv.build(x.shape)
    ref.build(x.shape)
    conv.kernel.assign(ref.kernel)
    assert conv._use_im2col(tf.cast(x, tf.bfloat16))  # 36 positions: within the bf16 limit
    assert not conv._use_im2col(x)  # ... but not the fp32 one
    grads = []
    for layer in (ref, conv):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(layer(x), tf.float32) ** 2)
        grads.append(tape.gradient(loss, layer.kernel).numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=0.02, atol=0.02 * np.abs(grads[0]).max())
    # unknown spatial size (e.g. a serving signature): the native op
    spec = tf.TensorSpec([None, None, None, 4], tf.float32)
    graph = tf.function(conv.convolution_op).get_concrete_function(spec, tf.TensorSpec([3, 3, 4, 5])).graph
    assert not any(op.type == "IdentityN" for op in graph.get_operations())


def _bn_pair(shape=(None, 6), synchronized: bool = False):
    """Two identical 6-channel BatchNorm layers built for ``shape`` (same non-trivial gamma /
    beta / moving statistics)."""
    layers = []
    for _ in range(2):
        layer = batch_norm(synchronized=synchronized, name="bn")
        layer.build((None,) + tuple(shape[1:]))
        layers.append(layer)
    rng = np.random.default_rng(3)
    values = [rng.normal(size=6), rng.normal(size=6), rng.normal(size=6), rng.uniform(0.5, 2.0, size=6)]
    for layer in layers:
        for var, v in zip((layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance), values):
            var.assign(v.astype(np.float32))
    return layers


@pytest.mark.parametrize("shape", [(4, 5, 5, 6), (6, 6)])
@pytest.mark.parametrize("groups", [2, 3])
@pytest.mark.parametrize("synchronized", [False, True])
def test_per_view_batch_norm_equals_one_call_per_view(shape, groups, synchronized):
    """concat of the views through per-view BN == each view through its own call, in order: the
    outputs, the gradients (input and gamma / beta) and the moving statistics (updated once per
    view, as PyTorch's per-view calls do)."""
    rng = np.random.default_rng(0)
    views = [tf.constant(rng.normal(loc=g, scale=1 + g, size=shape).astype(np.float32)) for g in range(groups)]
    cot = [tf.constant(rng.normal(size=shape).astype(np.float32)) for _ in range(groups)]
    per_view, separate = _bn_pair(shape, synchronized=synchronized)
    x = tf.concat(views, axis=0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        with per_view_batch_norm(groups):
            y = per_view(x, training=True)
        loss = tf.reduce_sum(y * tf.concat(cot, axis=0))
    grads = tape.gradient(loss, [x, per_view.gamma, per_view.beta])
    ys, gx, gg, gb = [], [], np.zeros(6), np.zeros(6)
    for v, c in zip(views, cot):
        with tf.GradientTape() as tape:
            tape.watch(v)
            yv = separate(v, training=True)
            lv = tf.reduce_sum(yv * c)
        g = tape.gradient(lv, [v, separate.gamma, separate.beta])
        ys.append(yv.numpy())
        gx.append(g[0].numpy())
        gg += g[1].numpy()
        gb += g[2].numpy()
    np.testing.assert_allclose(y.numpy(), np.concatenate(ys), atol=1e-5)
    np.testing.assert_allclose(grads[0].numpy(), np.concatenate(gx), atol=1e-5)
    np.testing.assert_allclose(grads[1].numpy(), gg, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[2].numpy(), gb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(per_view.moving_mean.numpy(), separate.moving_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(per_view.moving_variance.numpy(), separate.moving_variance.numpy(), atol=1e-6)


def test_per_view_batch_norm_differs_from_shared_statistics_and_spares_inference():
    """The switch changes training outputs (views with different statistics), not inference."""
    rng = np.random.default_rng(1)
    x = tf.constant(np.concatenate([rng.normal(0, 1, (8, 6)), rng.normal(3, 2, (8, 6))]).astype(np.float32))
    per_view, shared = _bn_pair()
    with per_view_batch_norm(2):
        y_view = per_view(x, training=True).numpy()
        y_inf = per_view(x, training=False).numpy()
    y_shared = shared(x, training=True).numpy()
    assert np.abs(y_view - y_shared).max() > 0.5
    # inference uses the moving statistics, whatever the switch (both layers updated them once
    # per call above with different batch statistics, so compare against fresh layers)
    fresh, reference = _bn_pair()
    with per_view_batch_norm(2):
        a = fresh(x, training=False).numpy()
    np.testing.assert_allclose(a, reference(x, training=False).numpy(), atol=1e-6)
    assert y_inf.shape == y_view.shape


def test_per_view_batch_norm_float64_fallback_and_bad_input():
    rng = np.random.default_rng(2)
    views = [tf.constant(rng.normal(g, 1 + g, (5, 6))) for g in range(2)]
    per_view, separate = _bn_pair()
    per_view_64 = keras.layers.BatchNormalization(dtype="float64", epsilon=1e-5)  # the Keras path
    separate_64 = keras.layers.BatchNormalization(dtype="float64", epsilon=1e-5)
    with per_view_batch_norm(2):
        y = per_view(tf.concat(views, 0), training=True)
        y64 = per_view_64(tf.concat(views, 0), training=True)  # not a project layer: ignores the switch
    expected = np.concatenate([separate(v, training=True).numpy() for v in views])
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-5)
    assert np.abs(y64.numpy() - separate_64(tf.concat(views, 0), training=True).numpy()).max() < 1e-9
    with per_view_batch_norm(2):
        with pytest.raises(ValueError, match="not a multiple of 2"):
            per_view(tf.zeros((5, 6)), training=True)
    with pytest.raises(ValueError, match="groups must be an int >= 1"):
        with per_view_batch_norm(0):
            pass
    assert batch_norm_view_groups() == 1
