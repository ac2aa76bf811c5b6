"""The plug-ins in the one training loop: short end-to-end runs through ``Trainer`` (real config,
coloured Fashion-MNIST fixture); the Viewmaker run is restored by a fresh Trainer (generator and
the adversarial Adam's moments)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from hacplugins_helpers import FIXTURE_FMNIST

from hac_tf.training.config import load_config
from hac_tf.training.trainer import Trainer

TINY = [
    f"data.data_dir={FIXTURE_FMNIST}", "data.batch_size=8", "data.shuffle_buffer=64", "augment.num_levels=2",
    "model.level_depths=[1,2]", "model.width_multiplier=0.125", "model.embed_dim=8", "model.projector_hidden_dim=16",
    "model.projector_out_dim=8", "train.log_every_steps=1", "train.checkpoint_every_steps=2", "train.max_steps=2",
    "export.enabled=false",
]


def snapshot(variables):
    return [np.array(v.numpy()) for v in variables]


def assert_restores(model_dir, config, trainer):
    fresh = Trainer(config, str(model_dir))
    assert fresh.restore() == 2
    want, got = trainer.model.checkpoint_variables(), fresh.model.checkpoint_variables()
    assert sorted(want) == sorted(got)
    for path in want:
        np.testing.assert_array_equal(got[path].numpy(), want[path].numpy(), err_msg=path)
    return fresh


def test_viewmaker_after_expert_augmentations_trains_end_to_end(tmp_path):
    """(The add-one placement -- learned views as the last level -- is the same code path with
    more levels; its wiring is tested in test_plugins_viewmaker.py. One level keeps this fast.)"""
    c = load_config(None, TINY + ["model.method=simclr", "augment.policy=two_view",
                                  "augment.groups=[crop_jitter,flip,viewmaker]", "model.level_depths=[4]",
                                  "model.embed_fields=[]", "plugins.viewmaker.enabled=true",
                                  "plugins.viewmaker.base_channels=4", "plugins.viewmaker.num_res_blocks=1"])
    trainer = Trainer(c, str(tmp_path))
    model = trainer.model
    assert model.spec.viewmaker.levels == (1,)
    (own,) = trainer.own_objectives  # the generator, trained through the plug-in's own_objective hook
    assert own.plugin is model.viewmaker
    assert [id(v) for v in own.variables] == [id(v) for v in model.viewmaker.trainable_weights]
    gen0, enc0 = snapshot(own.variables), snapshot(trainer.main_vars)
    out = trainer.train()
    assert out["step"] == 2 and np.isfinite(out["loss"])
    assert out["viewmaker/adversarial_loss"] == -out["viewmaker/contrastive_loss"] < 0
    assert int(own.optimizer.iterations.numpy()) == 2
    saved = [name for name, _ in tf.train.list_variables(trainer.manager.latest_checkpoint)]
    assert any(name.startswith("adversarial_optimizer/") for name in saved)  # the key runs before had
    assert any(not np.array_equal(a, b) for a, b in zip(gen0, snapshot(own.variables)))
    assert any(not np.array_equal(a, b) for a, b in zip(enc0, snapshot(trainer.main_vars)))
    fresh = assert_restores(tmp_path, c, trainer)
    for a, b in zip(fresh.own_objectives[0].optimizer.variables, own.optimizer.variables):  # Adam moments too
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_viewmaker_under_float16_has_its_own_loss_scale(tmp_path):
    """mixed_float16: the generator's backward pass has a dynamic loss scale of its own, reported
    and checkpointed under the objective's name (hac_tf/training/loss_scaling.py)."""
    c = load_config(None, TINY + ["model.method=simclr", "augment.policy=two_view",
                                  "augment.groups=[crop_jitter,viewmaker]", "model.level_depths=[4]",
                                  "model.embed_fields=[]", "plugins.viewmaker.enabled=true",
                                  "plugins.viewmaker.base_channels=4", "plugins.viewmaker.num_res_blocks=1",
                                  "train.mixed_precision=mixed_float16"])
    try:
        trainer = Trainer(c, str(tmp_path))
        (own,) = trainer.own_objectives
        assert own.loss_scale is not None and own.loss_scale is not trainer.loss_scale
        out = trainer.train()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(out["loss"]) and out["adversarial_loss_scale"] > 0 and out["loss_scale"] > 0
    saved = [name for name, _ in tf.train.list_variables(trainer.manager.latest_checkpoint)]
    assert any(name.startswith("adversarial_loss_scale/") for name in saved)
    assert any(name.startswith("adversarial_optimizer/") for name in saved)


def test_mochi_equimod_augself_compose_in_one_hierarchical_run(tmp_path):
    c = load_config(None, TINY + [
        "model.method=simclr", "augment.blur_probability=0.5",
        "plugins.mochi.enabled=true", "plugins.mochi.num_hardest=8", "plugins.mochi.num_mixed=4",
        "plugins.mochi.num_query_mixed=2", "plugins.mochi.start_epoch=0",
        "plugins.equimod.enabled=true", "plugins.equimod.hidden_dim=16", "plugins.equimod.out_dim=8",
        "plugins.equimod.param_dim=8", "plugins.equimod.std_samples=256",
        "plugins.augself.enabled=true", "plugins.augself.hidden_dim=8", "plugins.augself.levels=[1,2]"])
    trainer = Trainer(c, str(tmp_path))
    assert trainer.model.spec.plugin_names == ("mochi", "equimod", "augself")
    assert trainer.own_objectives == []
    heads0 = snapshot(trainer.model.equimod.trainable_weights + trainer.model.augself.trainable_weights)
    out = trainer.train()
    for key in ("level_2/equimod_loss", "level_1/augself_crop_loss", "level_2/augself_colour_loss", "loss"):
        assert np.isfinite(out[key]) and out[key] > 0, key
    heads1 = snapshot(trainer.model.equimod.trainable_weights + trainer.model.augself.trainable_weights)
    assert any(not np.array_equal(a, b) for a, b in zip(heads0, heads1))  # the heads are optimised
    assert trainer.manager.latest_checkpoint  # (restoring plug-in heads: test_plugins_checkpoint.py)
