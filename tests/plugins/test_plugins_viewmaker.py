"""Viewmaker plug-in: the generator of docs/METHODS.md#viewmaker-generator, the L1-sphere budget (mean |delta| = eps
per image), gradient isolation, the signs of the two players' steps, the add-one group hook and
the config rules. (The end-to-end training run is in test_plugins_training.py.)"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hacplugins_helpers import TINY_VIEWMAKER, build, random_batch, small_spec

from hac_tf.augment import AddOneViews, AugmentationSettings
from hac_tf.methods import ModelSpec
from hac_tf.plugins import ViewmakerConfig, ViewmakerGenerator, ViewmakerModule, project_perturbation

SEED = tf.constant([1, 2], tf.int64)


def test_generator_architecture():
    c, r = 4, 2
    gen = ViewmakerGenerator(channels=3, base_channels=c, num_res_blocks=r)
    gen.build()
    shapes = {l.name: tuple(l.conv.kernel.shape) for l in gen._flatten_layers() if hasattr(l, "conv") and l.conv}
    assert shapes["conv1"] == (9, 9, 3 + 1, c)  # image + one noise channel
    assert shapes["conv2"] == (3, 3, c, 2 * c) and shapes["conv3"] == (3, 3, 2 * c, 4 * c)
    for k in range(1, r + 1):  # residual block k works on 4c + k channels (one more noise channel each)
        assert shapes[f"res{k}_conv1"] == shapes[f"res{k}_conv2"] == (3, 3, 4 * c + k, 4 * c + k)
    assert shapes["deconv1"] == (3, 3, 4 * c + r, 2 * c) and shapes["deconv2"] == (3, 3, 2 * c, c)
    assert shapes["conv_out"] == (9, 9, c, 3)
    convs = [l for l in gen._flatten_layers() if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 6 + 2 * r and all(l.use_bias and l.padding == "valid" and l.strides in ((1, 1), (2, 2))
                                           for l in convs)
    norms = [l for l in gen._flatten_layers() if isinstance(l, keras.layers.GroupNormalization)]
    assert len(norms) == 5 + 2 * r  # in1..in5 + two per residual block
    for l in norms:  # instance norm with affine parameters
        assert l.groups == l.gamma.shape[0] and l.epsilon == 1e-5 and l.center and l.scale
    x = tf.random.stateless_uniform([2, 32, 32, 3], [0, 1])
    graph = tf.function(lambda x: gen(x, SEED)).get_concrete_function(x).graph
    ops = [op.type for op in graph.get_operations()]
    assert ops.count("MirrorPad") == 6 + 2 * r  # every conv is reflection padded
    pads = [op for op in graph.get_operations() if op.type == "MirrorPad"]
    assert all(op.get_attr("mode") == b"REFLECT" for op in pads)
    y = gen(x, SEED)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y.numpy(), gen(x, SEED).numpy())  # noise = f(seed)
    assert not np.allclose(y.numpy(), gen(x, tf.constant([1, 3], tf.int64)).numpy())
    with pytest.raises(ValueError, match="divisible by 4"):
        gen(tf.zeros([1, 30, 30, 3]), SEED)


def test_every_perturbation_has_mean_abs_epsilon():
    rng = np.random.default_rng(0)
    y = tf.constant(rng.normal(scale=3.0, size=(6, 16, 16, 3)), tf.float32)
    for eps in (0.05, 0.2):
        d = project_perturbation(y, eps).numpy()
        np.testing.assert_allclose(np.abs(d).mean(axis=(1, 2, 3)), eps, rtol=1e-6)
    m = np.abs(np.tanh(y.numpy())).mean(axis=(1, 2, 3))
    d = project_perturbation(y, 0.05, norm_epsilon=1e-4).numpy()  # the released code's stabiliser
    np.testing.assert_allclose(np.abs(d).mean(axis=(1, 2, 3)), 0.05 * m / (m + 1e-4), rtol=1e-6)
    mod = ViewmakerModule(ViewmakerConfig(epsilon=0.05, **TINY_VIEWMAKER).resolved(1))
    x = tf.constant(rng.random((4, 32, 32, 3)), tf.float32)
    views, delta = mod.perturb(x, SEED)
    np.testing.assert_allclose(np.abs(delta.numpy()).mean(axis=(1, 2, 3)), 0.05, rtol=1e-5)
    np.testing.assert_allclose(views.numpy() - x.numpy(), delta.numpy(), atol=1e-6)  # no clamp by default
    clamped = ViewmakerModule(ViewmakerConfig(clamp=True, **TINY_VIEWMAKER).resolved(1), name="vm2")
    v2, _ = clamped.perturb(x, SEED)
    assert float(tf.reduce_min(v2)) >= 0.0 and float(tf.reduce_max(v2)) <= 1.0


def test_batch_transform_records_the_norm_and_isolates_gradients():
    spec = small_spec("simclr", level_depths=(1, 4), embed_fields=(), viewmaker=dict(TINY_VIEWMAKER, levels=(2,)))
    model = build(spec)
    batch = random_batch(np.random.default_rng(1), 2)
    out = model.viewmaker.apply_to_batch(batch, spec.level_names, step=0)
    assert out["level_1"] is batch["level_1"]  # other levels untouched
    np.testing.assert_allclose(out["level_2"]["params_a"]["viewmaker"].numpy(), 0.05, rtol=1e-5)
    assert not np.allclose(out["level_2"]["view_a"].numpy(), batch["level_2"]["view_a"].numpy())
    generator = model.viewmaker.trainable_weights  # its own objective: not the encoder's variables
    assert model.viewmaker.own_objective and model.viewmaker.objective_name == "adversarial"
    adv_ids = {id(v) for v in generator}
    assert adv_ids and not adv_ids & {id(v) for v in model.trainable_variables}
    with tf.GradientTape() as tape:
        loss, _ = model.compute_loss(batch, step=tf.constant(0, tf.int64))
    assert all(g is None for g in tape.gradient(loss, generator))  # G's views are constants
    with tf.GradientTape() as tape:
        adv, metrics = model.viewmaker.objective(model, batch, step=tf.constant(0, tf.int64))
    grads = tape.gradient(adv, generator)
    assert all(g is not None for g in grads) and sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0
    np.testing.assert_allclose(float(adv), -float(metrics["viewmaker/contrastive_loss"]))


def test_step_signs_viewmaker_ascends_encoder_descends():
    """One Adam step on G (minimising -L) raises the contrastive loss L; one SGD step on the
    encoder lowers it. Both measured on the same batch and noise (BN in training mode)."""
    spec = small_spec("simclr", level_depths=(4,), embed_fields=(), viewmaker=dict(TINY_VIEWMAKER))
    model = build(spec)
    batch = random_batch(np.random.default_rng(2), 1, batch=8)
    step = tf.constant(5, tf.int64)

    def contrastive():  # L on the adversarial pass's views (fixed noise for a fixed step)
        return -float(model.viewmaker.objective(model, batch, step=step)[0])

    l0 = contrastive()
    adam = model.viewmaker.build_optimizer()  # Adam at the config's learning rate (1e-3)
    generator = model.viewmaker.trainable_weights
    with tf.GradientTape() as tape:
        adv, _ = model.viewmaker.objective(model, batch, step=step)
    adam.apply_gradients(zip(tape.gradient(adv, generator), generator))
    l1 = contrastive()
    enc_vars = model.trainable_variables
    before = float(model.compute_loss(batch, step=step)[0])
    with tf.GradientTape() as tape:
        loss, _ = model.compute_loss(batch, step=step)
    sgd = keras.optimizers.SGD(0.05)
    sgd.apply_gradients([(g, v) for g, v in zip(tape.gradient(loss, enc_vars), enc_vars) if g is not None])
    after = float(model.compute_loss(batch, step=step)[0])
    print(f"\nviewmaker step: L {l0:.5f} -> {l1:.5f} (+{l1 - l0:.5f}); "
          f"encoder step: L {before:.5f} -> {after:.5f} ({after - before:.5f})")
    assert l1 > l0
    assert after < before


def test_add_one_hook_and_config_rules():
    from hac_tf.training import builders
    from hac_tf.training.config import ConfigError, load_config

    policy = AddOneViews(("crop_jitter", "grayscale", "viewmaker"), AugmentationSettings(image_size=8))
    assert policy.levels_with_group("viewmaker") == (2,)
    views = policy(tf.zeros([2, 8, 8, 3], tf.uint8), seed=SEED)
    assert sorted(views) == ["level_1", "level_2", "level_3"]  # data side: level 3 == level 2's groups
    with pytest.raises(ValueError, match="last add-one group"):
        AddOneViews(("crop_jitter", "viewmaker", "grayscale"))
    c = load_config(None, ["model.method=simclr", "augment.order=[crop_jitter,grayscale,blur,flip,viewmaker]",
                           "augment.num_levels=5", "model.level_depths=[1,2,3,4,4]", "plugins.viewmaker.enabled=true"])
    vm = builders.model_spec_kwargs(c)["viewmaker"]
    assert vm.levels == (5,) and vm.epsilon == 0.05 and vm.num_res_blocks == 3 and not vm.clamp
    alone = load_config(None, ["model.method=byol", "augment.policy=two_view", "augment.groups=[viewmaker]",
                               "model.level_depths=[4]", "model.embed_fields=[]", "plugins.viewmaker.enabled=true"])
    assert builders.model_spec_kwargs(alone)["viewmaker"].levels == (1,)
    with pytest.raises(ConfigError, match="applies to"):
        load_config(None, ["model.method=moco", "augment.policy=two_view", "augment.groups=[crop_jitter,viewmaker]",
                           "model.level_depths=[4]", "plugins.viewmaker.enabled=true"])
    with pytest.raises(ConfigError, match="no view level uses"):
        load_config(None, ["model.method=simclr", "plugins.viewmaker.enabled=true"])
    with pytest.raises(ValueError, match="ModelSpec.viewmaker"):
        ModelSpec(method="moco", viewmaker={})
