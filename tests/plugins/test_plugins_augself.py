"""AugSelf plug-in: targets equal hand-computed differences (both flip-mirroring rules), the
symmetric batch and loss, heads on pre-embedding features, lambda = 0 equals the base method
exactly, lambda weighting, config wiring."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hacplugins_helpers import TINY_AUGSELF, build, copy_weights, loss_and_grads, random_batch, small_spec

from hac_tf.augment.params import identity_params
from hac_tf.methods import ModelSpec
from hac_tf.plugins import AugSelfConfig, augself_targets, colour_scale_from_strength


def two_views():
    """Three pairs with hand-picked parameters (see the expected values in the tests)."""
    p1, p2 = identity_params(3), identity_params(3)
    p1["crop"] = tf.constant([[0.1, 0.2, 0.5, 0.6], [0.2, 0.0, 0.6, 0.3], [0.0, 0.0, 1.0, 1.0]])
    p2["crop"] = tf.constant([[0.0, 0.5, 0.8, 1.0], [0.5, 0.5, 1.0, 0.9], [0.0, 0.0, 1.0, 1.0]])
    p1["flip"] = tf.constant([[1.0], [0.0], [0.0]])
    p2["flip"] = tf.constant([[0.0], [1.0], [0.0]])
    p1["jitter"] = tf.constant([[1.2, 0.8, 1.0, 0.05], [0.6, 1.4, 1.1, -0.1], [1.0, 1.0, 1.0, 0.0]])
    p1["jitter_applied"] = tf.constant([[1.0], [1.0], [0.0]])
    p2["jitter"] = tf.constant([[1.4, 1.4, 1.4, 0.1], [1.0, 1.0, 0.6, 0.1], [1.0, 1.0, 1.0, 0.0]])
    p2["jitter_applied"] = tf.constant([[0.0], [1.0], [0.0]])  # row 0: not applied -> w = 0
    p1["blur_sigma"] = tf.constant([[0.0], [1.0], [0.5]])
    p2["blur_sigma"] = tf.constant([[2.0], [1.0], [0.0]])
    p1["rotation"] = tf.constant([[3.0], [0.0], [1.0]])
    p2["rotation"] = tf.constant([[0.0], [1.0], [3.0]])
    return p1, p2


def test_targets_equal_hand_computed_differences():
    p1, p2 = two_views()
    t = augself_targets(p1, p2, flip_rule="per_view")
    # row 0: centres (0.3, 0.4 -> mirrored 0.6) vs (0.4, 0.75); sizes (0.4, 0.4) vs (0.8, 0.5)
    # row 1: (0.4, 0.15) vs (0.75, 0.7 -> mirrored 0.3); sizes (0.4, 0.3) vs (0.5, 0.4)
    np.testing.assert_allclose(t["crop"].numpy(), [[-0.1, -0.15, -0.4, -0.1], [-0.35, -0.15, -0.1, -0.1],
                                                   [0, 0, 0, 0]], atol=1e-6)
    # w = [(b-1)/0.8, (c-1)/0.8, (s-1)/0.8, h/0.2], 0 when not applied
    np.testing.assert_allclose(t["colour"].numpy(), [[0.25, -0.25, 0.0, 0.25], [-0.5, 0.5, 0.625, -1.0],
                                                     [0, 0, 0, 0]], atol=1e-6)
    np.testing.assert_array_equal(t["flip"].numpy()[:, 0], [0, 0, 1])
    np.testing.assert_allclose(t["blur"].numpy()[:, 0], [-1.0, 0.0, 0.25], atol=1e-7)
    np.testing.assert_array_equal(t["rotation"].numpy(), [3, 3, 2])  # (k1 - k2) mod 4


def test_code_flip_rule_mirrors_both_centres_with_view_1():
    p1, p2 = two_views()
    t = augself_targets(p1, p2, targets=("crop",), flip_rule="code")["crop"].numpy()
    # row 0: f1 = 1 mirrors both x-centres: 0.6 - (1 - 0.75); row 1: f1 = 0 mirrors neither: 0.15 - 0.7
    np.testing.assert_allclose(t[:, 1], [0.35, -0.55, 0.0], atol=1e-6)
    back = augself_targets(p2, p1, targets=("crop",), flip_rule="code")["crop"].numpy()
    np.testing.assert_allclose(back[:, 1], [0.75 - 0.4, 0.3 - 0.85, 0.0], atol=1e-6)  # swapped: view 2's flag


def test_symmetric_batch_heads_and_loss():
    cfg = AugSelfConfig(targets=("crop", "colour", "flip", "blur", "rotation"), weights=(1, 1, 0.5, 2, 1),
                        hidden_dim=8).resolved(1)
    from hac_tf.plugins import AugSelfModule

    mod = AugSelfModule(cfg, feature_dim=6)
    p1, p2 = two_views()
    targets = mod.targets(p1, p2)
    np.testing.assert_allclose(targets["crop"][3:].numpy(), -targets["crop"][:3].numpy(), atol=1e-7)
    rng = np.random.default_rng(0)
    fa, fb = (tf.constant(rng.normal(size=(3, 6)), tf.float32) for _ in range(2))
    total, metrics = mod.level_loss(0, fa, fb, p1, p2, training=False)
    x = tf.concat([tf.concat([fa, fb], 1), tf.concat([fb, fa], 1)], 0)
    expected_total = 0.0
    for t, w in zip(cfg.targets, cfg.weights):
        pred = mod.head(0, t)(x, training=False).numpy().astype(np.float64)
        y = targets[t].numpy()
        if t in ("crop", "colour", "blur"):
            ref = np.mean((np.tanh(pred) - y) ** 2)
        elif t == "flip":
            ref = np.mean(np.maximum(pred, 0) - pred * y + np.log1p(np.exp(-np.abs(pred))))
        else:
            lse = np.log(np.exp(pred).sum(1))
            ref = np.mean(lse - pred[np.arange(6), y])
        np.testing.assert_allclose(float(metrics[f"augself_{t}_loss"]), ref, rtol=1e-5)
        expected_total += w * ref
    np.testing.assert_allclose(float(total), expected_total, rtol=1e-5)
    head = mod.head(0, "crop")
    assert [type(l).__name__ for l in head.mlp_layers] == ["Dense", "FusedBatchNormalization", "ReLU", "Dense",
                                                           "FusedBatchNormalization", "ReLU", "Dense"]
    assert head.mlp_layers[0].kernel.shape == (12, 8) and not head.mlp_layers[0].use_bias
    assert head.mlp_layers[-1].use_bias


def test_lambda_zero_is_the_base_method_exactly_and_lambdas_weight_the_terms():
    levels = dict(level_depths=(2,))  # the level is embedded: the heads must see the features before it
    plug = build(small_spec("simsiam", augself=dict(TINY_AUGSELF, weights=(0.0, 0.0)), **levels))
    base = build(small_spec("simsiam", **levels), seed=1)
    copy_weights(plug, base)
    assert plug.augself.heads[0].mlp_layers[0].kernel.shape[0] == 2 * plug.backbone.feature_dim
    batch = random_batch(np.random.default_rng(1), 1)
    pv = plug.checkpoint_variables()
    shared = list(base.trainable_variables)
    l_base, _, g_base = loss_and_grads(base, batch, shared)
    l_plug, m, g_plug = loss_and_grads(plug, batch, [pv[v.path] for v in shared])
    assert float(m["level_1/augself_crop_loss"]) > 0 and float(m["level_1/augself_colour_loss"]) > 0
    assert float(l_plug) == float(l_base)
    for a, b in zip(g_plug, g_base):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    weighted = build(small_spec("simsiam", augself=dict(TINY_AUGSELF, weights=(0.5, 2.0)), **levels))
    copy_weights(plug, weighted)
    l_w, m_w = weighted.compute_loss(batch)
    np.testing.assert_allclose(float(l_w), float(l_base) + 0.5 * float(m_w["level_1/augself_crop_loss"])
                               + 2.0 * float(m_w["level_1/augself_colour_loss"]), rtol=1e-6)


def test_config_rules_and_wiring():
    from hac_tf.training import builders
    from hac_tf.training.config import ConfigError, load_config

    with pytest.raises(ValueError, match="weights"):
        ModelSpec(method="byol", augself={"targets": ("crop",), "weights": (1.0, 1.0)})
    with pytest.raises(ValueError, match="targets"):
        AugSelfConfig(targets=("crop", "size"), weights=(1, 1))
    with pytest.raises(ConfigError, match="plugins.augself.weights"):
        load_config(None, ["plugins.augself.enabled=true", "plugins.augself.weights=[1.0]"])
    with pytest.raises(ConfigError, match="flip_rule"):
        load_config(None, ["plugins.augself.enabled=true", "plugins.augself.flip_rule=mirror"])
    c = load_config(None, ["plugins.augself.enabled=true", "augment.jitter_strength=[0.8,0.8,0.8,0.2]",
                           "plugins.augself.levels=[2,4]", "plugins.augself.weights=[0.5,0.5]"])
    a = builders.model_spec_kwargs(c)["augself"]
    assert a.colour_scale == (1.6, 1.6, 1.6, 0.4) and a.levels == (2, 4) and a.weights == (0.5, 0.5)
    assert colour_scale_from_strength((0.4, 0.4, 0.0, 0.1)) == (0.8, 0.8, 1.0, 0.2)
