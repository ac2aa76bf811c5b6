"""tf.distribute strategy construction: default | mirrored | multi_worker | tpu."""

from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf
from absl import logging

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def build_strategy(name: str = "default", tpu: Optional[str] = None,
                   num_logical_cpus: int = 0) -> tf.distribute.Strategy:
    """Builds a strategy.

    Args:
      name: default (one device) | mirrored (all local GPUs, or ``num_logical_cpus`` CPU replicas)
        | multi_worker (MultiWorkerMirroredStrategy; cluster from the TF_CONFIG environment
        variable) | tpu (TPUStrategy; ``tpu`` is the TPU name/address, '' or 'local' for a TPU VM).
      num_logical_cpus: with ``mirrored``/``multi_worker`` on a CPU-only machine, split the CPU
        into this many logical devices (one replica each). Must run before TF initialises devices.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; allowed: {list(STRATEGIES)}")
    if num_logical_cpus > 1:
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_logical_cpus)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        logging.info("MirroredStrategy over %s", devices)
        return strategy
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                             "(cluster spec and this worker's task), see README 'Distributed training'")
        json.loads(os.environ["TF_CONFIG"])  # fail early on malformed JSON
        comm = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=comm)
    # TPU: not testable on these machines; standard Model Garden sequence.
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)
