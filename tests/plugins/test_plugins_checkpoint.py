"""Checkpoint round trip of a model with every plug-in's state (EquiMod / AugSelf heads with their
BN statistics, the Viewmaker generator): saved and restored by Keras path, names unique."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from hacplugins_helpers import TINY_AUGSELF, TINY_EQUIMOD, TINY_VIEWMAKER, build, random_batch, small_spec

from hac_tf.methods import HierarchicalContrastiveModel, ModelSpec


def test_checkpoint_round_trip_with_every_plugin(tmp_path):
    spec = small_spec("simclr", level_depths=(1, 2), equimod=TINY_EQUIMOD, augself=TINY_AUGSELF,
                      viewmaker=dict(TINY_VIEWMAKER, levels=(2,)), mochi=dict(num_hardest=4, num_mixed=2,
                                                                               num_query_mixed=1, seed=3))
    model = build(spec)
    paths = model.checkpoint_variables()  # raises on a duplicate path
    for prefix in ("equimod_head_level_2/", "equimod_param_projector_level_2/", "equimod_predictor_level_2/",
                   "augself_crop_level_2/", "augself_colour_level_2/", "viewmaker_generator/"):
        assert any(p.startswith(prefix) for p in paths), prefix
    base = build(small_spec("simclr", level_depths=(1, 2)))
    assert list(paths)[: len(base.checkpoint_variables())] == list(base.checkpoint_variables())  # base unchanged
    batch = random_batch(np.random.default_rng(0), 2)
    model.compute_loss(batch, step=tf.constant(1, tf.int64))  # moves BN statistics of the heads
    for v in model.viewmaker.trainable_weights:
        v.assign(v + 0.01)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    fresh = build(ModelSpec.from_dict(spec.to_dict()), seed=5)
    assert fresh.spec == spec
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    got = fresh.checkpoint_variables()
    for p, v in paths.items():
        np.testing.assert_array_equal(got[p].numpy(), v.numpy(), err_msg=p)
    loss_a, _ = model.compute_loss(batch, training=False, step=tf.constant(1, tf.int64))
    loss_b, _ = fresh.compute_loss(batch, training=False, step=tf.constant(1, tf.int64))
    assert float(loss_a) == float(loss_b)
    config = model.get_config()
    assert HierarchicalContrastiveModel.from_config(config).spec == spec
