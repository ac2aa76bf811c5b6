"""CPU thread plan of a training process: threads per op (intra-op) x ops at once (inter-op).

A hierarchical step has one independent forward/backward chain per view level (pair k through
stages 1..k), so on a CPU two levels' ops can run at once, each on its own core (and in its own
core's L2), instead of every op being split over all cores. Measured on 2 cores with repeated
``tools/bench_train.py`` runs (figures: docs/PERFORMANCE.md, "Choices and their evidence",
threads): the hierarchical step gains nothing beyond noise, so the plan is not the default; a
one-level step has a single chain and loses, so the plan keeps TF's defaults for it.

``train.intra_op_threads`` / ``train.inter_op_threads``: 0 = TF's default (the default), n > 0 =
n threads, -1 = this plan. TF reads these settings once, when it initialises its runtime: call
:func:`configure_cpu_threads` before any TF op runs (``tools/train.py`` does).
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import tensorflow as tf
from absl import logging

AUTO = -1


def plan_cpu_threads(num_levels: int, cores: int, accelerators: int = 0) -> Tuple[int, int]:
    """``(intra_op, inter_op)`` for a step with ``num_levels`` independent level chains.

    ``(0, 0)`` (TF's defaults) with accelerators or a single level. Otherwise the levels run
    ``min(num_levels, cores)`` at a time with ``cores // that`` threads each (2 cores, 4 levels:
    1 thread per op, 2 ops at once). Only measured on 2 cores.
    """
    if accelerators > 0 or num_levels < 2 or cores < 2:
        return 0, 0
    parallel = min(int(num_levels), int(cores))
    intra = max(1, cores // parallel)
    return intra, max(parallel, cores // intra)


def resolve_cpu_threads(intra_op: int, inter_op: int, num_levels: int,
                        cores: Optional[int] = None, accelerators: Optional[int] = None) -> Tuple[int, int]:
    """Config values (-1 auto, 0 default, n) -> the ``(intra_op, inter_op)`` to set (0 = leave)."""
    for name, value in (("train.intra_op_threads", intra_op), ("train.inter_op_threads", inter_op)):
        if value < AUTO:
            raise ValueError(f"{name} must be -1 (auto), 0 (TF default) or a thread count, got {value}")
    if AUTO in (intra_op, inter_op):
        if cores is None:
            cores = os.cpu_count() or 1
        if accelerators is None:
            accelerators = len(tf.config.list_physical_devices("GPU")) + len(tf.config.list_physical_devices("TPU"))
        auto_intra, auto_inter = plan_cpu_threads(num_levels, cores, accelerators)
        intra_op = auto_intra if intra_op == AUTO else intra_op
        inter_op = auto_inter if inter_op == AUTO else inter_op
    return intra_op, inter_op


def configure_cpu_threads(intra_op: int, inter_op: int, num_levels: int) -> Tuple[int, int]:
    """Applies the thread plan; returns TF's resulting ``(intra_op, inter_op)`` (0 = TF default).

    Values given in the environment (``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS``) win
    over auto. If TF's runtime is already initialised (an op ran in this process), nothing
    changes and a warning says so.
    """
    intra, inter = resolve_cpu_threads(intra_op, inter_op, num_levels)
    if intra_op == AUTO and os.environ.get("TF_NUM_INTRAOP_THREADS"):
        intra = 0
    if inter_op == AUTO and os.environ.get("TF_NUM_INTEROP_THREADS"):
        inter = 0
    try:
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError as e:  # TF already initialised
        logging.warning("CPU threads not changed (%s): TF's runtime was initialised before "
                        "configure_cpu_threads; call it before any TF op runs", e)
    result = (tf.config.threading.get_intra_op_parallelism_threads(),
              tf.config.threading.get_inter_op_parallelism_threads())
    logging.info("CPU threads: intra-op %s, inter-op %s (0 = TF default)", *result)
    return result


def configure_cpu_threads_for(config) -> Tuple[int, int]:
    """:func:`configure_cpu_threads` with an ExperimentConfig's ``train.*_op_threads`` and levels."""
    return configure_cpu_threads(config.train.intra_op_threads, config.train.inter_op_threads,
                                 len(config.model.level_depths))
