"""Stop-gradients, EMA / momentum target updates, the cosine ramp and MoCo's FIFO queue."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hacmethods_helpers import random_batch, small_spec

from hac_tf.losses import symmetric_negative_cosine
from hac_tf.methods import HierarchicalContrastiveModel, KeyQueue, cosine_momentum
from hac_tf.models.layers import per_view_batch_norm


def _neg_cos(p, z):
    return -tf.reduce_mean(tf.reduce_sum(tf.math.l2_normalize(p, -1) * tf.math.l2_normalize(z, -1), -1))


def test_simsiam_gradient_ignores_the_target_side():
    keras.utils.set_random_seed(0)
    model = HierarchicalContrastiveModel(small_spec("simsiam", level_depths=(2,)))
    batch = random_batch(np.random.default_rng(0), 1, batch=8)
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        online, _ = model.level_outputs(batch, 0, training=True)
        loss, _ = model.method.level_loss(0, online, None)
        z_a, z_b = tf.constant(online.z_a.numpy()), tf.constant(online.z_b.numpy())
        manual = 0.5 * _neg_cos(online.p_a, z_b) + 0.5 * _neg_cos(online.p_b, z_a)
        no_stop = 0.5 * _neg_cos(online.p_a, online.z_b) + 0.5 * _neg_cos(online.p_b, online.z_a)
    assert float(loss) == pytest.approx(float(manual), abs=1e-6)
    g_model = tape.gradient(loss, variables)
    g_manual = tape.gradient(manual, variables)
    g_no_stop = tape.gradient(no_stop, variables)
    worst = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(g_model, g_manual) if a is not None)
    assert worst < 1e-6
    gap = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(g_model, g_no_stop) if a is not None)
    assert gap > 1e-4  # the comparison is sensitive to a missing stop-gradient
    # the loss, as a function of independent p and z, has no gradient w.r.t. z at all
    p1, z1, p2, z2 = (tf.random.normal((4, 8)) for _ in range(4))
    with tf.GradientTape() as t2:
        t2.watch([p1, z1, p2, z2])
        value = symmetric_negative_cosine(p1, z1, p2, z2)
    grads = t2.gradient(value, [p1, z1, p2, z2])
    assert grads[0] is not None and grads[2] is not None
    assert grads[1] is None and grads[3] is None
    del tape


@pytest.mark.parametrize("method", ["byol", "moco"])
def test_target_network_gets_no_gradient(method):
    keras.utils.set_random_seed(0)
    model = HierarchicalContrastiveModel(small_spec(method, level_depths=(1, 4)))
    batch = random_batch(np.random.default_rng(1), 2)
    with tf.GradientTape() as tape:
        loss, _ = model.compute_loss(batch)
    grads = tape.gradient(loss, model.target_variables + model.trainable_variables)
    n_target = len(model.target_variables)
    assert n_target > 0 and all(g is None for g in grads[:n_target])
    assert sum(g is not None for g in grads[n_target:]) > 0.9 * len(model.trainable_variables)


def _perturb_online(model, rng):
    for v in model.online.trainable_weights:
        v.assign(v + tf.constant(rng.normal(0, 0.1, v.shape), v.dtype))


@pytest.mark.parametrize("method", ["byol", "moco"])
def test_update_targets_is_an_exact_ema(method):
    keras.utils.set_random_seed(0)
    model = HierarchicalContrastiveModel(small_spec(method, level_depths=(2, 4)))
    rng = np.random.default_rng(2)
    _perturb_online(model, rng)
    t_vars, o_vars = model.ema_variable_pairs()
    t_before = [v.numpy() for v in t_vars]
    online = [v.numpy() for v in o_vars]
    stats = [v for v in model.target_variables if not any(v is t for t in t_vars)]
    stats_before = [v.numpy() for v in stats]
    assert stats and all("moving" in v.path for v in stats)

    step, total = 30, 100
    expected_m = 0.99 if method == "moco" else 1 - 0.01 * (math.cos(math.pi * 0.3) + 1) / 2
    m = model.update_targets(tf.constant(step), tf.constant(total))
    assert float(m) == pytest.approx(expected_m, abs=1e-7)
    m32 = np.float32(float(m))
    for t, t0, o in zip(t_vars, t_before, online):
        np.testing.assert_allclose(t.numpy(), m32 * t0 + (np.float32(1) - m32) * o, rtol=0, atol=1e-7)
    for o, o0 in zip(o_vars, online):
        np.testing.assert_array_equal(o.numpy(), o0)  # online untouched
    for s, s0 in zip(stats, stats_before):
        np.testing.assert_array_equal(s.numpy(), s0)  # BN statistics are not averaged

    # also inside a tf.function with tensor steps
    t_before = [v.numpy() for v in t_vars]
    m2 = tf.function(model.update_targets)(tf.constant(step + 1), tf.constant(total))
    m2 = np.float32(float(m2))
    for t, t0, o in zip(t_vars, t_before, online):
        np.testing.assert_allclose(t.numpy(), m2 * t0 + (np.float32(1) - m2) * o, rtol=0, atol=1e-7)


def test_ema_reads_the_target_only_after_the_online_update():
    """In a step, the EMA's read of a target weight waits for the online weight's update: read at
    the step's start, m * t would be held through the whole backward pass (an extra copy)."""
    from hac_tf.methods.ema import ema_update

    onlines = [tf.Variable(tf.ones((32, 16))), tf.Variable(tf.ones((16,)))]
    targets = [tf.Variable(tf.zeros((32, 16))), tf.Variable(tf.zeros((16,)))]

    def step(g0, g1):  # the optimizer's update, then the EMA, as in the trainer's step
        onlines[0].assign_sub(g0)
        onlines[1].assign_sub(g1)
        return ema_update(targets, onlines, 0.9)

    graph = tf.function(step).get_concrete_function(tf.TensorSpec((32, 16)), tf.TensorSpec((16,))).graph
    after = {t.op for t in graph.inputs[:2]}
    for op in graph.get_operations():  # topological order: ops reachable from a gradient
        if any(t.op in after for t in op.inputs) or any(c in after for c in op.control_inputs):
            after.add(op)
    handles = {t.op.name for t in graph.inputs[2:]}  # the variables' resource placeholders
    target_handles = {h for h in handles if any(c.type == "AssignVariableOp" for c in
                                               graph.get_operation_by_name(h).outputs[0].consumers())}
    reads = [op for op in graph.get_operations() if op.type == "ReadVariableOp" and op.inputs[0].op.name in target_handles]
    assert reads and all(op in after for op in reads), [op.name for op in reads if op not in after]
    np.testing.assert_allclose(targets[0].numpy(), 0.0)  # traced, not run


def test_cosine_momentum_ramp():
    base = 0.99
    for step, total, want in [(0, 100, 0.99), (50, 100, 0.995), (100, 100, 1.0), (150, 100, 1.0),
                              (25, 100, 1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)]:
        assert float(cosine_momentum(base, step, total)) == pytest.approx(want, abs=1e-7)
        assert float(cosine_momentum(base, tf.constant(step), tf.constant(total))) == pytest.approx(
            want, abs=1e-6)
    assert float(cosine_momentum(base, 5, 0)) == pytest.approx(base)
    with pytest.raises(ValueError):
        cosine_momentum(1.5, 0, 10)


def test_methods_without_target_have_no_update():
    model = HierarchicalContrastiveModel(small_spec("simclr", level_depths=(4,), embed_fields=()))
    assert model.update_targets(3, 10) is None and model.target_variables == []


def test_key_queue_ring_buffer():
    q = KeyQueue(size=3, dim=2, name="q")
    q.build()
    initial = q.queue.numpy()
    np.testing.assert_allclose(np.linalg.norm(initial, axis=1), 1.0, rtol=1e-6)
    q.enqueue(tf.constant([[1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_array_equal(q.queue.numpy()[:2], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(q.queue.numpy()[2], initial[2])
    assert int(q.pointer.numpy()) == 2 and float(q.fill_fraction()) == pytest.approx(2 / 3)
    keys = np.arange(10, dtype=np.float32).reshape(5, 2)
    q.enqueue(tf.constant(keys))  # more keys than rows: only the last 3 survive, in ring order
    # 7 keys written in total, overall key j at row j % 3: keys[i] is overall key i + 2, so the
    # survivors are keys[2] (row 1), keys[3] (row 2) and keys[4] (row 0)
    np.testing.assert_array_equal(q.queue.numpy(), keys[[4, 2, 3]])
    assert int(q.pointer.numpy()) == 7 % 3 and float(q.fill_fraction()) == 1.0


def test_moco_queue_holds_exactly_the_last_k_keys():
    b, k = 4, 12  # K = 3B; 2B keys per step, so the ring wraps mid-batch
    keras.utils.set_random_seed(0)
    model = HierarchicalContrastiveModel(small_spec("moco", level_depths=(1, 2), moco_queue_size=k))
    rng = np.random.default_rng(3)
    keys = {0: [], 1: []}
    fills = []
    for step in range(5):
        batch = random_batch(rng, 2, batch=b)
        for level in (0, 1):  # the keys the momentum encoder produces for this batch
            images, params = model._level_inputs(batch, level)
            with per_view_batch_norm(2 if model.spec.per_view_bn else 1):  # as compute_loss encodes the pair
                kz = model.target.project(level, images, params, training=True)
            keys[level].append(tf.math.l2_normalize(kz, -1).numpy())
        _, metrics = model.compute_loss(batch, training=True)
        fills.append(float(metrics["level_1/queue_fill"]))
    assert fills == pytest.approx([8 / 12, 1.0, 1.0, 1.0, 1.0])
    for level in (0, 1):
        all_keys = np.concatenate(keys[level])  # 40 keys, [k_a; k_b] per step
        expected = np.zeros((k, all_keys.shape[1]), np.float32)
        for j, key in enumerate(all_keys):
            expected[j % k] = key
        queue = model.method.queues[level]
        np.testing.assert_allclose(queue.queue.numpy(), expected, rtol=0, atol=1e-5)
        assert int(queue.pointer.numpy()) == len(all_keys) % k
    # evaluation does not enqueue
    before = model.method.queues[0].queue.numpy()
    model.compute_loss(random_batch(rng, 2, batch=b), training=False)
    np.testing.assert_array_equal(model.method.queues[0].queue.numpy(), before)
