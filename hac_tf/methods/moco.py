"""MoCo v2: InfoNCE against a momentum encoder's keys and a FIFO queue per level (docs/METHODS.md#moco).

For each level the loss is symmetrised (as in the symmetric MoCo v2 CIFAR recipe)::

    L = 1/2 InfoNCE(q = online(view_a), k = momentum(view_b), queue)
      + 1/2 InfoNCE(q = online(view_b), k = momentum(view_a), queue)

then the 2B keys ``[k(view_a); k(view_b)]`` are enqueued (training only). Under a distribution
strategy the keys are all-gathered first (``[k_a of all replicas; k_b of all replicas]``, the
single-device order of the global batch) and the queue variables use ``ON_WRITE`` synchronisation
with ``ONLY_FIRST_REPLICA`` aggregation, so every replica holds the identical queue.

:class:`KeyQueue` is a ring buffer: ``queue`` float32 ``[K, d]`` (rows l2-normalised, initialised
to random unit vectors), ``pointer`` (next row to overwrite) and ``fill`` (number of real keys
written, capped at K). Enqueuing n keys writes rows ``pointer .. pointer+n-1 (mod K)``; when
n > K only the last K keys are kept. The queue therefore always holds the last K keys enqueued.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import keras
import tensorflow as tf

from hac_tf.losses import infonce_queue
from hac_tf.methods.base import Method, MethodSettings, PairOutputs
from hac_tf.methods.registry import register
from hac_tf.schema import ranged


def _unit_rows(shape, dtype=None) -> tf.Tensor:
    x = keras.random.normal(shape, dtype="float32")
    return tf.math.l2_normalize(tf.convert_to_tensor(x), axis=-1)


class KeyQueue(keras.layers.Layer):
    """FIFO queue of ``size`` l2-normalised keys of width ``dim`` (see the module docstring)."""

    def __init__(self, size: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if size < 1 or dim < 1:
            raise ValueError(f"KeyQueue needs size >= 1 and dim >= 1, got {size}, {dim}")
        self.size = int(size)
        self.dim = int(dim)

    def build(self, input_shape=None) -> None:
        common = dict(trainable=False, autocast=False, aggregation="only_first_replica",
                      synchronization="on_write")
        with keras.name_scope(self.name, caller=self):
            self.queue = keras.Variable(_unit_rows, shape=(self.size, self.dim), dtype="float32",
                                        name="queue", **common)
            self.pointer = keras.Variable("zeros", shape=(), dtype="int64", name="pointer", **common)
            self.fill = keras.Variable("zeros", shape=(), dtype="int64", name="fill", **common)
        self.built = True

    def read(self) -> tf.Tensor:
        """The current queue as a float32 ``[K, d]`` tensor."""
        return tf.convert_to_tensor(self.queue.value)

    def fill_fraction(self) -> tf.Tensor:
        """Fraction of the K rows holding real keys (float32 scalar in [0, 1])."""
        return tf.cast(tf.convert_to_tensor(self.fill.value), tf.float32) / float(self.size)

    def enqueue(self, keys: tf.Tensor) -> None:
        """Writes ``keys`` [n, d] (already global across replicas) in FIFO order."""
        keys = tf.cast(keys, tf.float32)
        n = tf.shape(keys, out_type=tf.int64)[0]
        k = tf.constant(self.size, tf.int64)
        m = tf.minimum(n, k)
        tail = keys[n - m:]
        ptr = tf.convert_to_tensor(self.pointer.value)
        start = (ptr + n - m) % k
        rows = (start + tf.range(m, dtype=tf.int64)) % k
        # scatter_update (unlike scatter_nd_update) is implemented by MirroredVariable in both
        # replica and cross-replica contexts
        self.queue.value.scatter_update(tf.IndexedSlices(tail, rows))
        self.pointer.assign((ptr + n) % k)
        self.fill.assign(tf.minimum(tf.convert_to_tensor(self.fill.value) + n, k))

    def call(self, *args, **kwargs):  # pragma: no cover
        raise NotImplementedError("use read() / enqueue()")

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(size=self.size, dim=self.dim)
        return config


def gather_keys(k_a: tf.Tensor, k_b: tf.Tensor) -> tf.Tensor:
    """``[k_a; k_b]`` over the global batch: all-gathered in a replica context with >1 replicas."""
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        k_a, k_b = ctx.all_gather([k_a, k_b], axis=0)
    return tf.concat([k_a, k_b], axis=0)


@dataclasses.dataclass(frozen=True)
class MoCoSettings(MethodSettings):
    """temperature (0.2); moco_queue_size: queue length K per level (4096; ImageNet configs use
    65536); moco_momentum: fixed momentum m of the key encoder (0.99; 0.999 in the reference)."""

    temperature: float = ranged(0.2, 0.0, 100.0, lo_inclusive=False)
    moco_queue_size: int = ranged(4096, 1, 1 << 22)
    moco_momentum: float = ranged(0.99, 0.0, 1.0, hi_inclusive=False)


@register
class MoCo(Method):
    name_ = "moco"
    target_kind = "momentum"
    has_queue = True
    softmax_temperature = True
    projector_defaults = dict(hidden_dim=2048, out_dim=128, num_layers=2, hidden_bn=False, last_bn=False,
                              hidden_bias=True, last_bias=True)  # the MoCo v2 head
    settings_class = MoCoSettings

    def build_state(self) -> None:
        size = self.settings.moco_queue_size
        dim = self.spec.projector["out_dim"]
        self.queues: List[KeyQueue] = [
            KeyQueue(size, dim, name=f"queue_{name}") for name in self.spec.level_names
        ]
        for q in self.queues:
            q.build()
        self.built = True

    def level_loss(
        self,
        level: int,
        online: PairOutputs,
        target: Optional[PairOutputs],
        training: bool = True,
        step: Optional[tf.Tensor] = None,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        if target is None:
            raise ValueError("MoCo needs the momentum encoder's keys")
        queue = self.queues[level]
        negatives = queue.read()
        k_a = tf.stop_gradient(tf.math.l2_normalize(tf.cast(target.z_a, tf.float32), axis=-1))
        k_b = tf.stop_gradient(tf.math.l2_normalize(tf.cast(target.z_b, tf.float32), axis=-1))
        tau = self.settings.temperature
        mochi = self.spec.mochi
        loss = 0.5 * (
            infonce_queue(online.z_a, k_b, negatives, tau, mochi=mochi, step=step)
            + infonce_queue(online.z_b, k_a, negatives, tau, mochi=mochi, step=step)
        )
        if training:
            queue.enqueue(gather_keys(k_a, k_b))
        return loss, {"queue_fill": queue.fill_fraction()}

    def target_momentum(self, step, total_steps) -> tf.Tensor:
        return tf.constant(self.settings.moco_momentum, tf.float32)
