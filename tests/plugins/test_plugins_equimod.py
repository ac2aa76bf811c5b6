"""EquiMod plug-in: the equivariant loss vs NumPy, the 4B-row positive/negative structure, the
parameter vector and its policy-derived standardisation, the heads' wiring, lambda = 0 equals the
base method exactly (SimCLR, BYOL), shared-BN mode, config wiring."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hacplugins_helpers import (
    FIXTURE_FMNIST,
    TINY_EQUIMOD,
    build,
    copy_weights,
    loss_and_grads,
    random_batch,
    small_spec,
)

from hac_tf.augment import AugmentationSettings, TwoViews
from hac_tf.augment.params import identity_params
from hac_tf.losses import equimod_nt_xent
from hac_tf.methods import ModelSpec
from hac_tf.plugins import EquiModConfig, encode_equimod_params, original_view, sample_param_statistics


def numpy_equimod(y_t, y_hat, tau):
    """docs/METHODS.md#equimod-loss: NT-Xent on Z = [y_t; y_hat] (4B rows), diagonal -1e8, target i +- 2B."""
    z = np.concatenate([y_t, y_hat]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    m2 = len(y_t)
    sim = z @ z.T / tau - 1e8 * np.eye(2 * m2)
    target = np.concatenate([np.arange(m2) + m2, np.arange(m2)])
    mx = sim.max(1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(sim - mx).sum(1))
    return float(np.mean(lse - sim[np.arange(2 * m2), target]))


def test_equivariant_loss_matches_numpy():
    rng = np.random.default_rng(0)
    y_t, y_hat = rng.normal(size=(12, 7)), rng.normal(size=(12, 7))
    got = equimod_nt_xent(tf.constant(y_t, tf.float32), tf.constant(y_hat, tf.float32), 0.2)
    np.testing.assert_allclose(float(got), numpy_equimod(y_t, y_hat, 0.2), rtol=1e-5)


def test_positives_and_negatives_over_4b_rows():
    """Orthonormal rows, y_hat[k] = y_t[k]: every row has its positive at cos 1 and exactly 4B - 2
    negatives at cos 0. Making view b of an image equal to its view a raises the loss: the other
    view of the same image is a negative."""
    B, tau = 3, 0.2
    eye = np.eye(4 * B)
    y_t = eye[: 2 * B]
    y_hat = y_t.copy()
    loss = float(equimod_nt_xent(tf.constant(y_t, tf.float32), tf.constant(y_hat, tf.float32), tau))
    expected = np.log(np.exp(1 / tau) + (4 * B - 2)) - 1 / tau
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    y_t2 = y_t.copy()
    y_t2[B:] = y_t[:B]  # view b of image k == view a of image k
    loss2 = float(equimod_nt_xent(tf.constant(y_t2, tf.float32), tf.constant(y_t2, tf.float32), tau))
    assert loss2 > loss + 0.5


def test_parameter_vector_by_hand():
    p = identity_params(2)
    p["crop"] = tf.constant([[0.1, 0.2, 0.7, 0.9], [0.0, 0.0, 1.0, 1.0]])
    p["flip"] = tf.constant([[1.0], [0.0]])
    p["jitter"] = tf.constant([[1.2, 0.9, 1.1, -0.05], [1.0, 1.0, 1.0, 0.0]])
    p["jitter_applied"] = tf.constant([[1.0], [0.0]])
    p["jitter_order"] = tf.constant([[3.0, 1.0, 0.0, 2.0], [0.0, 1.0, 2.0, 3.0]])
    p["grayscale"] = tf.constant([[1.0], [0.0]])
    p["blur_sigma"] = tf.constant([[1.5], [0.0]])
    v = encode_equimod_params(p).numpy()
    np.testing.assert_allclose(v[0], [0.1, 0.2, 0.6, 0.7, 1, 1, 3, 1, 0, 2, 1.2, 0.9, 1.1, -0.05, 1, 1, 1.5, 0, 0],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(v[1], [0, 0, 1, 1, 0, 0, 0, 1, 2, 3, 1, 1, 1, 0, 0, 0, 0, 0, 0], atol=1e-7)
    assert EquiModConfig().param_width == 19


def test_standardisation_constants_follow_the_augmentation_distributions():
    """Sampled constants agree with the analytic moments of the classical pipeline, and they
    standardise a fresh sample to mean 0 / std 1."""
    settings = AugmentationSettings(image_size=8, blur_probability=0.5, blur_kernel_size=3)
    policy = TwoViews(settings=settings)
    (mean,), (std,) = sample_param_statistics(policy, [1], source_size=32, num_samples=2048, seed=0)
    mean, std = np.array(mean), np.array(std)
    cols = {"flip": 4, "applied": 5, "b": 10, "h": 13, "gray": 14, "blur_on": 15, "sigma": 16, "sol": 17}
    np.testing.assert_allclose(mean[[cols["flip"], cols["applied"], cols["gray"], cols["blur_on"]]],
                               [0.5, 0.8, 0.2, 0.5], atol=0.03)
    np.testing.assert_allclose(std[cols["b"]], np.sqrt(0.8 * 0.8 ** 2 / 12), rtol=0.06)  # b ~ U(0.6,1.4) w.p. 0.8
    np.testing.assert_allclose(std[cols["h"]], np.sqrt(0.8 * 0.2 ** 2 / 12), rtol=0.06)
    np.testing.assert_allclose(mean[cols["sigma"]], 0.5 * 1.05, rtol=0.06)  # sigma ~ U(0.1, 2) w.p. 0.5
    assert std[cols["sol"]] == 1.0  # solarize never applied: constant column -> std 1
    fresh = policy(tf.zeros([2048, 32, 32, 3], tf.uint8), seed=tf.constant([5, 5], tf.int64))["level_1"]
    z = (encode_equimod_params(fresh["params_a"]).numpy() - mean) / std
    live = std != 1.0
    np.testing.assert_allclose(z.mean(0)[live], 0.0, atol=0.08)
    np.testing.assert_allclose(z.std(0)[live], 1.0, atol=0.08)


def test_heads_wiring_one_batched_call_and_tiled_y0():
    spec = small_spec("simclr", level_depths=(4,), embed_fields=(), equimod=TINY_EQUIMOD)
    model = build(spec)
    eq = model.equimod
    assert spec.equimod.levels == (1,)
    head = eq.heads[0]
    assert [type(l).__name__ for l in head.mlp_layers] == ["Dense", "FusedBatchNormalization", "ReLU", "Dense",
                                                           "FusedBatchNormalization", "ReLU", "Dense", "FusedBatchNormalization"]
    assert not head.mlp_layers[-1].center and not head.mlp_layers[-1].scale  # BN(affine=False)
    assert all(not l.use_bias for l in head.mlp_layers if type(l).__name__ == "Dense")
    assert eq.param_projectors[0].mlp_layers[0].kernel.shape == (19, 8)
    assert eq.predictors[0].mlp_layers[0].kernel.shape == (16 + 8, 16)
    rng = np.random.default_rng(0)
    h0, ha, hb = (tf.constant(rng.normal(size=(4, model.backbone.feature_dim)), tf.float32) for _ in range(3))
    params = random_batch(rng, 1)["level_1"]["params_a"]
    y_t, y_hat = eq.embeddings(0, h0, ha, hb, params, params, training=True)
    assert y_t.shape == (8, 16) and y_hat.shape == (8, 16)
    np.testing.assert_allclose(y_hat[:4].numpy(), y_hat[4:].numpy(), rtol=1e-5, atol=1e-5)  # same y0, same p
    # BN sees all 3B rows at once: y_t equals rows B: of one head call over [h0; ha; hb]
    y = head(tf.concat([h0, ha, hb], 0), training=True)
    np.testing.assert_allclose(y_t.numpy(), y[4:].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method,levels", [("simclr", dict(level_depths=(1, 2))),  # with the hierarchy
                                           ("byol", dict(level_depths=(4,), embed_fields=()))])  # without
def test_lambda_zero_is_the_base_method_exactly(method, levels):
    plug = build(small_spec(method, equimod=dict(TINY_EQUIMOD, weight=0.0), **levels))
    base = build(small_spec(method, **levels), seed=1)
    copy_weights(plug, base)
    batch = random_batch(np.random.default_rng(1), len(levels["level_depths"]))
    last = f"level_{len(levels['level_depths'])}"
    pv = plug.checkpoint_variables()
    shared = [v for v in base.trainable_variables]
    l_base, _, g_base = loss_and_grads(base, batch, shared)
    l_plug, m_plug, g_plug = loss_and_grads(plug, batch, [pv[v.path] for v in shared])
    assert float(m_plug[f"{last}/equimod_loss"]) > 0.0  # computed, weighted by 0
    assert float(l_plug) == float(l_base)
    for a, b in zip(g_plug, g_base):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if method == "simclr":  # with lambda = 1 the loss is L_base + L_eq
        plug1 = build(small_spec(method, equimod=dict(TINY_EQUIMOD, weight=1.0), **levels))
        copy_weights(plug, plug1)
        l1, m1 = plug1.compute_loss(batch)
        np.testing.assert_allclose(float(l1), float(l_base) + float(m1[f"{last}/equimod_loss"]), rtol=1e-6)


def test_shared_bn_mode_runs_x0_with_the_views():
    spec = small_spec("simclr", level_depths=(2,), equimod=dict(TINY_EQUIMOD, shared_bn=True))
    model = build(spec)
    batch = random_batch(np.random.default_rng(2), 1)
    for stage in model.backbone.stages:
        stage.call_count = 0
    loss, metrics = model.compute_loss(batch)
    assert np.isfinite(float(loss)) and float(metrics["level_1/equimod_loss"]) > 0
    assert [s.call_count for s in model.backbone.stages] == [1, 1, 0, 0]  # one call over [views; x0]
    separate = build(small_spec("simclr", level_depths=(2,), equimod=TINY_EQUIMOD))
    for stage in separate.backbone.stages:
        stage.call_count = 0
    separate.compute_loss(batch)
    assert [s.call_count for s in separate.backbone.stages] == [2, 2, 0, 0]


def test_original_view_and_missing_images():
    x = tf.constant(np.arange(2 * 6 * 8 * 3).reshape(2, 6, 8, 3) % 256, tf.uint8)
    out = original_view(x, 4)
    assert out.shape == (2, 4, 4, 3) and float(tf.reduce_max(out)) <= 1.0
    same = original_view(tf.constant(np.full((1, 4, 4, 3), 255), tf.uint8), 4)
    np.testing.assert_array_equal(same.numpy(), 1.0)
    model = build(small_spec("simclr", level_depths=(4,), embed_fields=(), equimod=TINY_EQUIMOD))
    batch = random_batch(np.random.default_rng(3), 1)
    del batch["images"]
    with pytest.raises(KeyError, match="original images"):
        model.compute_loss(batch)


def test_spec_and_config_rules_and_wiring():
    from hac_tf.training import builders
    from hac_tf.training.config import ConfigError, load_config

    with pytest.raises(ValueError, match="ModelSpec.equimod: applies to byol, simclr"):
        ModelSpec(method="simsiam", equimod={})
    with pytest.raises(ValueError, match="levels"):
        ModelSpec(method="simclr", level_depths=(4,), embed_fields=(), equimod={"levels": (2,)})
    with pytest.raises(ConfigError, match="plugins.equimod applies to"):
        load_config(None, ["model.method=moco", "plugins.equimod.enabled=true"])
    c = load_config(None, [f"data.data_dir={FIXTURE_FMNIST}", "data.batch_size=8", "augment.num_levels=2",
                           "model.level_depths=[1,2]", "model.method=simclr", "plugins.equimod.enabled=true",
                           "plugins.equimod.std_samples=256"])
    eq = builders.model_spec_kwargs(c)["equimod"]
    assert eq.levels == (2,) and len(eq.param_mean) == 1 and len(eq.param_std[0]) == 19
    np.testing.assert_allclose(eq.param_mean[0][5], 0.8, atol=0.06)  # jitter applied w.p. 0.8
    np.testing.assert_allclose(eq.param_mean[0][14], 0.2, atol=0.06)  # level 2 adds grayscale 0.2
    # (train_views keeps the uint8 "images" for x_0: exercised by the end-to-end run)
