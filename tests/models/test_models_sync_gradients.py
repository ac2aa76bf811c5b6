"""Synchronized BatchNorm under MirroredStrategy (2 logical CPUs): the gradients of a StageBranch
(conv -> SyncBN -> ReLU, attention SepConv -> resize -> SyncBN -> sigmoid, a * x, the scala
stack) on a global batch split over 2 replicas equal the single-device gradients of that batch.

Float64 is the correctness check: there the two agree to ~1e-11, so any error in the gradient of
the all-reduced statistics would show at O(1). Float32 is compared on the scale of the whole
gradient, not per variable: a per-variable relative error is meaningless for parameters whose
exact gradient is ~0. ``attention_sepconv/bn2/gamma`` is one: relu2 and the bilinear resize are
channel-wise and positively homogeneous and ``attention_bn`` renormalises each channel, so at
beta = 0 its gradient is only the epsilon term (~1e-5 of the others), and one device and two
replicas give two float32 roundings of it that differ by ~5% of that tiny value.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RUNNER = r"""
import json, sys
import numpy as np, tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
dtype = sys.argv[1]
keras.config.set_floatx(dtype)
keras.config.set_dtype_policy(dtype)
from hac_tf.models import StageBranch
from hac_tf.models.layers import SyncBatchNormalization, batch_norm, per_view_batch_norm
groups = int(sys.argv[2])  # 2: per-view statistics (model.per_view_bn); each replica holds [view_a; view_b]

rng = np.random.default_rng(0)
x = tf.constant(np.abs(rng.normal(size=(16, 16, 16, 8))).astype(dtype))
t = tf.constant(rng.normal(size=(16, 32)).astype(dtype))


def build():
    keras.utils.set_random_seed(0)
    branch = StageBranch(2, 8, [4, 8, 16, 32], 32, sync_bn=True, name="branch")
    branch.build((None, 16, 16, 8))
    return branch


def loss_fn(y, target, scale):
    return tf.reduce_mean(tf.reduce_sum(y * target, -1) ** 2) * scale


single = build()
assert isinstance(single.attention_bn, SyncBatchNormalization)
# one device sees [a_0; a_1; b_0; b_1] (views of replica r: rows 8r..8r+3 and 8r+4..8r+7 of x)
order = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15] if groups == 2 else list(range(16))
with tf.GradientTape() as tape, per_view_batch_norm(groups):
    loss1 = loss_fn(single(tf.gather(x, order), training=True), tf.gather(t, order), 1.0)
g1 = tape.gradient(loss1, single.trainable_variables)

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = build()
for a, b in zip(single.weights, mirrored.weights):
    assert a.path == b.path


def half(c, *ts):
    i = c.replica_id_in_sync_group
    return tuple(v[i * 8:(i + 1) * 8] for v in ts)


dist = strategy.experimental_distribute_values_from_function(lambda c: half(c, x, t))


@tf.function(autograph=False)
def step(xt):
    def replica_step(xt):
        xx, tt = xt
        ctx = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape, per_view_batch_norm(groups):
            loss = loss_fn(mirrored(xx, training=True), tt, 1.0 / ctx.num_replicas_in_sync)
        g = tape.gradient(loss, mirrored.trainable_variables)
        return ctx.all_reduce("sum", loss), ctx.all_reduce("sum", g)
    return strategy.run(replica_step, args=(xt,))


loss2, g2 = step(dist)
loss2 = strategy.experimental_local_results(loss2)[0]
g2 = strategy.experimental_local_results(g2)[0]
assert len(g1) == len(g2) == len(single.trainable_variables)
assert all(a is not None for a in g1) and all(b is not None for b in g2)

gmax = max(float(np.abs(a.numpy()).max()) for a in g1)
per_var = {v.path: float(np.abs(a.numpy() - b.numpy()).max() / np.abs(a.numpy()).max())
           for v, a, b in zip(single.trainable_variables, g1, g2)}
global_rel = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(g1, g2)) / gmax
stats = max(float(np.abs(a.numpy() - b.numpy()).max())
            for a, b in zip(single.non_trainable_weights, mirrored.non_trainable_weights))

# A masked SyncBN (statistics over the unmasked positions of all replicas) against one device.
mx = tf.constant(rng.normal(size=(8, 5, 3)).astype(dtype) * 3 + 2)
mask = tf.constant(rng.random((8, 5)) > 0.4)
bn1 = batch_norm(True)
bn1.build((None, 5, 3))
with tf.GradientTape() as tape:
    tape.watch(mx)
    my1 = bn1(mx, training=True, mask=mask)
    ml1 = tf.reduce_sum(tf.sin(my1) * tf.cast(mask, my1.dtype)[..., None])
mg1 = tape.gradient(ml1, mx)
with strategy.scope():
    bn2 = batch_norm(True)
    bn2.build((None, 5, 3))
mdist = strategy.experimental_distribute_values_from_function(
    lambda c: tuple(v[c.replica_id_in_sync_group * 4:(c.replica_id_in_sync_group + 1) * 4]
                    for v in (mx, mask)))


@tf.function(autograph=False)
def masked_step(xm):
    def replica_step(xm):
        xx, mm = xm
        with tf.GradientTape() as tape:
            tape.watch(xx)
            y = bn2(xx, training=True, mask=mm)
            loss = tf.reduce_sum(tf.sin(y) * tf.cast(mm, y.dtype)[..., None])
        return y, tape.gradient(loss, xx)
    return strategy.run(replica_step, args=(xm,))


my2, mg2 = masked_step(mdist)
my2 = tf.concat(strategy.experimental_local_results(my2), 0)
mg2 = tf.concat(strategy.experimental_local_results(mg2), 0)
masked = max(float(tf.reduce_max(tf.abs(my2 - my1))), float(tf.reduce_max(tf.abs(mg2 - mg1))))

print(json.dumps({"loss": [float(loss1), float(loss2)], "per_var": per_var, "global_rel": global_rel,
                  "gmax": gmax, "stats": stats, "masked": masked,
                  "replicas": strategy.num_replicas_in_sync}))
"""


def _run(dtype: str, groups: int = 1) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", RUNNER, dtype, str(groups)], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_stage_branch_sync_bn_gradients_match_single_device():
    r64 = _run("float64")
    assert r64["replicas"] == 2
    assert abs(r64["loss"][0] - r64["loss"][1]) <= 1e-12 * abs(r64["loss"][0])
    # Every variable, including the near-zero attention_sepconv/bn2/gamma, to ~1e-11 in float64.
    worst = max(r64["per_var"].items(), key=lambda kv: kv[1])
    assert worst[1] < 1e-7, worst
    assert r64["stats"] < 1e-10  # moving mean / variance updated with the global statistics
    assert r64["masked"] < 1e-6  # (Keras' masked moments add 1e-7 to the count)

    r32 = _run("float32")
    assert abs(r32["loss"][0] - r32["loss"][1]) <= 1e-5 * abs(r32["loss"][0])
    assert r32["global_rel"] < 1e-4, r32
    assert r32["stats"] < 1e-5
    # Per variable, float32 rounding only matters where the gradient is ~0.
    noisy = {k: v for k, v in r32["per_var"].items() if v > 1e-4}
    assert set(noisy) <= {"branch/attention_sepconv/bn2/gamma"}, noisy


def test_per_view_sync_bn_gradients_match_single_device():
    """Per-view statistics (``model.per_view_bn``, the default) under 2 replicas: view a is
    normalised over the view-a rows of every replica, as one device normalises all of view a."""
    r64 = _run("float64", groups=2)
    assert abs(r64["loss"][0] - r64["loss"][1]) <= 1e-12 * abs(r64["loss"][0])
    worst = max(r64["per_var"].items(), key=lambda kv: kv[1])
    assert worst[1] < 1e-7, worst
    assert r64["stats"] < 1e-10
