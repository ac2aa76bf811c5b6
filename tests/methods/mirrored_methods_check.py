"""Helper run in a subprocess by test_methods_distributed.py (not collected by pytest).

Splits the CPU into 2 logical devices (before TF initialises its devices), builds models under a
MirroredStrategy with synchronized BatchNorm and prints one JSON line comparing:
  * SimCLR: MEAN-reduced per-replica loss vs the single-device loss of the same global batch, and
    the SUM of per-replica gradients of loss / R vs the single-device gradient, with statistics
    shared by the two views of a pair and per view (``per_view_bn``, the default);
  * MoCo: the same loss comparison, plus the queue after one distributed training step (identical
    on both replicas and equal to the single-device keys of the global batch);
  * BYOL: update_targets called inside strategy.run (each replica's target equals the EMA).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hacmethods_helpers import random_batch, small_spec  # noqa: E402

from hac_tf.methods import HierarchicalContrastiveModel  # noqa: E402
from hac_tf.models.layers import per_view_batch_norm  # noqa: E402

R = 2
B = 8  # global pairs per level


def distribute(strategy, batch):
    half = B // R

    def local(ctx):
        i = ctx.replica_id_in_sync_group
        return tf.nest.map_structure(lambda x: x[i * half:(i + 1) * half], batch)

    return strategy.experimental_distribute_values_from_function(local)


def max_err(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def check_loss(strategy, method, with_grads, **spec_kwargs):
    keras.utils.set_random_seed(0)
    if method == "moco":
        spec = small_spec(method, level_depths=(4,), sync_bn=True, moco_queue_size=32, **spec_kwargs)
    else:
        spec = small_spec(method, level_depths=(2, 4), sync_bn=True, **spec_kwargs)
    with strategy.scope():
        model = HierarchicalContrastiveModel(spec)
    batch = random_batch(np.random.default_rng(7), spec.num_levels, batch=B)
    variables = model.trainable_variables

    # single device (cross-replica context): the same mirrored weights, the global batch
    state = [v.numpy() for v in model.method.weights]  # MoCo queues: undo the enqueue below
    with tf.GradientTape() as tape:
        single, single_metrics = model.compute_loss(batch, training=True)
    single_grads = tape.gradient(single, variables) if with_grads else []
    single_fill = [v.numpy() for v in model.method.weights]
    for v, value in zip(model.method.weights, state):
        v.assign(value)

    @tf.function(autograph=False)
    def step(dist_batch):
        def fn(b):
            with tf.GradientTape() as t:
                loss, metrics = model.compute_loss(b, training=True)
                scaled = loss / R
            grads = t.gradient(scaled, variables) if with_grads else []
            return loss, grads

        return strategy.run(fn, args=(dist_batch,))

    loss, grads = step(distribute(strategy, batch))
    mirrored = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
    out = {
        "single": float(single),
        "mirrored": float(mirrored),
        "per_replica": [float(v) for v in strategy.experimental_local_results(loss)],
    }
    if with_grads:
        pairs = [(g, s) for g, s in zip(grads, single_grads) if s is not None]
        summed = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g, _ in pairs]
        scale = max(float(np.max(np.abs(s.numpy()))) for _, s in pairs)
        out["grad_err"] = max_err([g.numpy() for g in summed], [s.numpy() for _, s in pairs]) / scale
        out["num_grads"] = len(pairs)
    if method == "moco":
        # keys of the global batch from the momentum encoder (single device), [k_a; k_b]
        expected = []
        for level in range(spec.num_levels):
            images, params = model._level_inputs(batch, level)
            with per_view_batch_norm(2 if spec.per_view_bn else 1):  # as compute_loss encodes the pair
                kz = model.target.project(level, images, params, training=True)
            expected.append(tf.math.l2_normalize(kz, -1).numpy())
        queue_err, replica_diff, pointers = [], [], []
        single_queue = single_fill[0][:2 * B]
        for level, q in enumerate(model.method.queues):
            comps = [v.numpy() for v in strategy.experimental_local_results(q.queue.value)]
            replica_diff.append(float(np.max(np.abs(comps[0] - comps[1]))))
            queue_err.append(float(np.max(np.abs(comps[0][:2 * B] - expected[level]))))
            pointers.append([int(v.numpy()) for v in strategy.experimental_local_results(q.pointer.value)])
        out.update(queue_err=max(queue_err), queue_replica_diff=max(replica_diff), pointers=pointers,
                   fill=float(single_metrics["level_1/queue_fill"]),
                   single_queue_err=float(np.max(np.abs(single_queue - expected[0]))))
    return out


def check_byol_update(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = HierarchicalContrastiveModel(small_spec("byol", level_depths=(4,), sync_bn=True))
        rng = np.random.default_rng(1)
        for v in model.online.trainable_weights:
            v.assign(v + tf.constant(rng.normal(0, 0.1, v.shape), v.dtype))
    t_vars, o_vars = model.ema_variable_pairs()
    t0 = [v.numpy() for v in t_vars]
    online = [v.numpy() for v in o_vars]

    @tf.function(autograph=False)
    def update(step, total):
        return strategy.run(model.update_targets, args=(step, total))

    m = update(tf.constant(10), tf.constant(40))
    m = float(strategy.experimental_local_results(m)[0])
    m32 = np.float32(m)
    errs, diffs = [], []
    for t, a, o in zip(t_vars, t0, online):
        comps = [c.numpy() for c in strategy.experimental_local_results(t.value)]
        want = m32 * a + (np.float32(1) - m32) * o
        errs.append(max(float(np.max(np.abs(c - want))) for c in comps))
        diffs.append(float(np.max(np.abs(comps[0] - comps[1]))))
    return {"m": m, "ema_err": max(errs), "replica_diff": max(diffs)}


def main():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"num_replicas": strategy.num_replicas_in_sync}
    result["simclr"] = check_loss(strategy, "simclr", with_grads=True, per_view_bn=False)
    result["simclr_per_view"] = check_loss(strategy, "simclr", with_grads=True, per_view_bn=True)
    result["moco"] = check_loss(strategy, "moco", with_grads=False)
    result["byol"] = check_byol_update(strategy)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
