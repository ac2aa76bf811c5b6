"""HierarchicalContrastiveModel: structure, depth-limited encoding, variables, encode, mixed
precision and checkpoint round trips."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from hacmethods_helpers import assert_vars_equal, random_batch, small_spec

from hac_tf.methods import METHOD_NAMES, HierarchicalContrastiveModel, ModelSpec
from hac_tf.models import EmbeddingMLP, GlobalPoolBranch, StageBranch


@pytest.fixture(scope="module")
def simsiam12():
    keras.utils.set_random_seed(0)
    return HierarchicalContrastiveModel(small_spec("simsiam", level_depths=(1, 2)))


def test_level_k_never_runs_deeper_stages(simsiam12):
    model = simsiam12
    batch = random_batch(np.random.default_rng(0), 2, batch=4)
    for stage in model.backbone.stages:
        stage.call_count = 0
    fn = tf.function(lambda b: model.compute_loss(b)[0]).get_concrete_function(batch)
    # level 1 -> stage1 only; level 2 -> stages 1, 2; each level one call (both views at once)
    assert [s.call_count for s in model.backbone.stages] == [2, 1, 0, 0]
    names = [op.name for op in fn.graph.get_operations()]
    assert any("/stage2" in n for n in names)
    assert not any("stage3" in n or "stage4" in n for n in names)
    # both views of a pair form one [2B, ...] batch: every convolution sees 8 = 2 x 4 rows
    convs = [op for op in fn.graph.get_operations()
             if op.type in ("Conv2D", "DepthwiseConv2dNative")]
    assert convs and {int(op.outputs[0].shape[0]) for op in convs} == {8}


def test_components_follow_the_spec(simsiam12):
    model = simsiam12
    online = model.online
    assert [type(b) for b in online.branches] == [StageBranch, StageBranch]
    assert online.embedding(0) is None  # depth 1: no embedding
    assert isinstance(online.embedding(1), EmbeddingMLP)
    fd = model.backbone.feature_dim
    assert online.projectors[0].mlp_layers[0].kernel.shape[0] == fd
    assert online.projectors[1].mlp_layers[0].kernel.shape[0] == fd + 16
    assert len(model.predictors) == 2 and model.target is None
    assert model.backbone is online.backbone


def test_baseline_has_one_global_pool_level():
    keras.utils.set_random_seed(0)
    model = HierarchicalContrastiveModel(ModelSpec.baseline("simclr", width_multiplier=0.125,
                                                            projector_hidden_dim=64, projector_out_dim=32))
    assert len(model.online.branches) == 1
    assert isinstance(model.online.branches[0], GlobalPoolBranch)
    assert not model.online.embeddings and not model.predictors
    loss, metrics = model.compute_loss(random_batch(np.random.default_rng(1), 1))
    assert set(metrics) == {"loss", "level_1/loss", "level_1/pos_sim", "level_1/neg_sim",
                            "level_1/embedding_std"}
    assert np.isfinite(float(loss))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_loss_metrics_and_variable_groups(method):
    keras.utils.set_random_seed(0)
    spec = small_spec(method, level_depths=(1, 3), loss_weights=(0.5, 2.0))
    model = HierarchicalContrastiveModel(spec)
    batch = random_batch(np.random.default_rng(2), 2)
    loss, metrics = model.compute_loss(batch, training=True, step=tf.constant(0, tf.int64))
    assert loss.dtype == tf.float32 and loss.shape == ()
    expected = 0.5 * float(metrics["level_1/loss"]) + 2.0 * float(metrics["level_2/loss"])
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(metrics["loss"]) == float(loss)
    for k in ("loss", "pos_sim", "neg_sim", "embedding_std"):
        for level in ("level_1", "level_2"):
            assert np.isfinite(float(metrics[f"{level}/{k}"]))
    assert ("level_1/queue_fill" in metrics) == (method == "moco")

    trainable = {id(v) for v in model.trainable_variables}
    target = {id(v) for v in model.target_variables}
    assert {id(v) for v in model.online_variables} == trainable
    assert not trainable & target
    assert {id(v) for v in model.backbone.trainable_variables} <= trainable
    assert {id(v) for v in model.predictor_variables} <= trainable
    assert bool(model.predictor_variables) == (method in ("byol", "simsiam"))
    assert bool(target) == (method in ("byol", "moco"))
    if target:  # the target tower mirrors the online one, initialised as a copy
        t_vars, o_vars = model.ema_variable_pairs()
        assert len(t_vars) == len(model.online.trainable_weights)
        assert_vars_equal(t_vars, o_vars)


def test_encode_returns_pooled_stages(simsiam12):
    images = tf.random.uniform((3, 32, 32, 3))
    out = simsiam12.encode(images)
    assert sorted(out) == ["embedding", "stage1", "stage2", "stage3", "stage4"]
    for k, c in enumerate(simsiam12.backbone.stage_channels):
        assert tuple(out[f"stage{k + 1}"].shape) == (3, c)
        assert out[f"stage{k + 1}"].dtype == tf.float32
    np.testing.assert_array_equal(out["embedding"].numpy(), out["stage4"].numpy())
    maps = simsiam12.backbone(images, training=False)
    np.testing.assert_allclose(out["stage2"].numpy(), tf.reduce_mean(maps["stage2"], [1, 2]).numpy(),
                               rtol=1e-6)
    np.testing.assert_array_equal(simsiam12(images)["stage1"].numpy(), out["stage1"].numpy())


def test_missing_level_is_a_clear_error(simsiam12):
    batch = random_batch(np.random.default_rng(0), 1)
    with pytest.raises(KeyError, match="batch has no 'level_2'"):
        simsiam12.compute_loss(batch)


@pytest.mark.parametrize("method", ["moco", "simsiam"])
def test_loss_is_float32_under_mixed_bfloat16(method):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        model = HierarchicalContrastiveModel(small_spec(method, level_depths=(1, 4)))
        batch = random_batch(np.random.default_rng(3), 2)
        online, _ = model.level_outputs(batch, 1)
        assert online.z_a.dtype == tf.bfloat16
        loss, metrics = model.compute_loss(batch)
        assert loss.dtype == tf.float32 and np.isfinite(float(loss))
        assert all(v.dtype == tf.float32 for v in metrics.values())
        if method == "moco":
            assert model.method.queues[0].queue.dtype == "float32"
            assert float(metrics["level_1/queue_fill"]) > 0
    finally:
        keras.config.set_dtype_policy(previous)


def _train_steps(model, batches, steps=2, total=10):
    opt = keras.optimizers.SGD(0.05, momentum=0.9)
    for s in range(steps):
        with tf.GradientTape() as tape:
            loss, _ = model.compute_loss(batches[s], step=s)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients([(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None])
        model.update_targets(s, total)


@pytest.mark.parametrize("method", ["moco", "byol"])
def test_checkpoint_round_trip(method, tmp_path):
    rng = np.random.default_rng(4)
    spec = small_spec(method, level_depths=(2, 4), **({"moco_queue_size": 12} if method == "moco" else {}))
    batches = [random_batch(rng, 2) for _ in range(3)]
    keras.utils.set_random_seed(0)
    model = HierarchicalContrastiveModel(spec)
    _train_steps(model, batches)
    path = tf.train.Checkpoint(model=model).save(os.path.join(str(tmp_path), "ckpt"))

    keras.utils.set_random_seed(123)  # different initial weights and queue
    fresh = HierarchicalContrastiveModel(spec)
    assert sorted(fresh.checkpoint_variables()) == sorted(model.checkpoint_variables())
    status = tf.train.Checkpoint(model=fresh).restore(path)
    status.assert_consumed()
    assert_vars_equal(fresh.weights, model.weights)  # online, predictors, target, BN stats, queues
    if method == "moco":
        for q_old, q_new in zip(model.method.queues, fresh.method.queues):
            np.testing.assert_array_equal(q_new.queue.numpy(), q_old.queue.numpy())
            assert int(q_new.pointer.numpy()) == int(q_old.pointer.numpy()) == (2 * 2 * 4) % 12
            assert int(q_new.fill.numpy()) == 12
    # the restored model continues identically
    loss_a, metrics_a = model.compute_loss(batches[2], step=2)
    loss_b, metrics_b = fresh.compute_loss(batches[2], step=2)
    assert float(loss_a) == float(loss_b)
    assert_vars_equal(fresh.weights, model.weights)


def test_checkpoint_names_are_deterministic_and_complete():
    spec = small_spec("byol", level_depths=(1, 2, 3, 4))
    a, b = HierarchicalContrastiveModel(spec), HierarchicalContrastiveModel(spec)
    names = a.checkpoint_variables()
    assert list(names) == list(b.checkpoint_variables())
    assert len(names) == len(a.weights)


@pytest.mark.parametrize("method", ["byol", "simclr"])
def test_per_view_bn_makes_each_view_independent_of_the_other(method):
    """With ``per_view_bn`` a view's training-mode outputs (online projection, prediction and the
    target's) do not depend on the other view of the pair; with shared statistics they do."""
    from hac_tf.methods.model import HierarchicalContrastiveModel as Model

    rng = np.random.default_rng(5)
    batch = random_batch(rng, 2, batch=4)
    changed = {k: dict(v) for k, v in batch.items()}
    for name in ("level_1", "level_2"):
        changed[name]["view_b"] = tf.constant(rng.uniform(0, 1, batch[name]["view_b"].shape), tf.float32)
    for per_view in (True, False):
        keras.utils.set_random_seed(0)
        model = Model(small_spec(method, level_depths=(1, 2), per_view_bn=per_view))
        for level in (0, 1):
            before = model.level_outputs(batch, level, training=True)
            after = model.level_outputs(changed, level, training=True)
            pairs = [(before[0].z_a, after[0].z_a)]
            if before[0].p_a is not None:
                pairs.append((before[0].p_a, after[0].p_a))
            if before[1] is not None:
                pairs.append((before[1].z_a, after[1].z_a))
            gap = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in pairs)
            if per_view:
                assert gap < 1e-5, (method, level, gap)
            else:
                assert gap > 1e-3, (method, level, gap)
