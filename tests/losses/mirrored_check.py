"""Helper run in a subprocess by test_loss_distributed.py (not collected by pytest).

Splits the CPU into 2 logical devices (must precede TF device initialisation, hence the
subprocess), runs the losses under MirroredStrategy and prints one JSON line comparing the
MEAN-reduced per-replica values (and summed per-replica gradients of value / R) with the
single-device value / gradient on the global batch.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from hac_tf.losses import barlow_twins, nt_xent  # noqa: E402
from hac_tf.losses.vicreg import vicreg_loss  # noqa: E402

REPLICAS = 2


def _value_and_grads(fn, a: tf.Tensor, b: tf.Tensor, scale: float):
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        loss = fn(a, b)
        scaled = loss * scale
    return loss, tape.gradient(scaled, [a, b])


def compare(fn, a_np: np.ndarray, b_np: np.ndarray, strategy: tf.distribute.Strategy) -> dict:
    single_loss, single_grads = _value_and_grads(fn, tf.constant(a_np), tf.constant(b_np), 1.0)
    half = a_np.shape[0] // REPLICAS

    def split(x):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(x[ctx.replica_id_in_sync_group * half:][:half])
        )

    @tf.function(autograph=False)
    def step(a, b):
        return strategy.run(lambda x, y: _value_and_grads(fn, x, y, 1.0 / REPLICAS), args=(a, b))

    loss, grads = step(split(a_np), split(b_np))
    mean_loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
    dist_grads = [
        np.concatenate([t.numpy() for t in strategy.experimental_local_results(g)], axis=0)
        for g in grads
    ]
    grad_err = max(float(np.max(np.abs(d - s.numpy()))) for d, s in zip(dist_grads, single_grads))
    return {
        "single": float(single_loss),
        "mirrored": float(mean_loss),
        "per_replica": [float(v) for v in strategy.experimental_local_results(loss)],
        "grad_err": grad_err,
    }


def main() -> None:
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices[:REPLICAS])
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 16)).astype(np.float32)
    b = (a + rng.normal(size=(8, 16))).astype(np.float32)
    out = {
        "num_replicas": strategy.num_replicas_in_sync,
        "nt_xent": compare(lambda x, y: nt_xent(x, y, 0.2), a, b, strategy),
        "nt_xent_local": compare(
            lambda x, y: nt_xent(x, y, 0.2, gather_across_replicas=False), a, b, strategy
        ),
        "barlow_gather": compare(
            lambda x, y: barlow_twins(x, y, gather_across_replicas=True), a, b, strategy
        ),
        "vicreg_gather": compare(
            lambda x, y: vicreg_loss(x, y, gather_across_replicas=True), a, b, strategy
        ),
        "vicreg_local": compare(
            lambda x, y: vicreg_loss(x, y, gather_across_replicas=False), a, b, strategy
        ),
    }
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
