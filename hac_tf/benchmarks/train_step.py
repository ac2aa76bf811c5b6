"""One training-step measurement of a benchmark row: throughput, step time, memory, FLOPs.

A row is a config plus overrides (:data:`ROWS`); :func:`measure_row` builds its ``Trainer``,
runs the compiled train step on one cached batch (no input cost), then measures the real view
pipeline separately in the same process. The step's FLOPs are counted by TF's profiler on the
traced forward graph (:func:`hac_tf.science.budget.step_flops`: 3 x the ops the loss is
differentiated through, forward + backward, plus 1 x forward-only ops such as a target tower).
:func:`measure_in_fresh_process` runs one measurement in a new Python process, so its peak
resident memory is that row's alone.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Sequence

import numpy as np

from hac_tf.benchmarks import process_memory
from hac_tf.science.budget import step_flops

__all__ = ["PEER_MODEL_ROW_PREFIX", "PRECISIONS", "ROWS", "BenchRow", "matmul_peak",
           "measure_in_fresh_process", "measure_row", "row_overrides"]

PRECISIONS = ("float32", "mixed_bfloat16")


class BenchRow(NamedTuple):
    """A benchmark row: a config (file path or shipped config name), its overrides, the default
    batch sizes and the image side in pixels."""

    config: str
    overrides: List[str]
    batch_sizes: List[int]
    image_size: int


PAPER_HEADS = ["model.projector_hidden_dim=2048", "model.projector_out_dim=2048",
               "model.predictor_hidden_dim=512", "model.predictor_out_dim=2048", "model.embed_dim=512",
               "model.width_multiplier=1.0", "model.method=simsiam"]
BASELINE = ["augment.policy=two_view", "model.level_depths=[4]", "model.embed_fields=[]"]

ROWS: Dict[str, BenchRow] = {
    "cpu_default": BenchRow("cfmnist_simsiam_hierarchical", [], [128], 32),
    "cpu_default_baseline": BenchRow("cfmnist_simsiam_baseline", [], [128], 32),
}
for _px in (32, 64, 96):
    for _stem in ("imagenet", "cifar"):
        ROWS[f"paper_r18_{_stem}_stem_{_px}"] = BenchRow(
            "cfmnist_simsiam_hierarchical", PAPER_HEADS + [f"model.stem={_stem}"], [64, 128], _px)
        ROWS[f"paper_r18_{_stem}_stem_{_px}_baseline"] = BenchRow(
            "cfmnist_simsiam_baseline", PAPER_HEADS + BASELINE + [f"model.stem={_stem}"], [64, 128], _px)
ROWS["paper_r50_imagenet_stem_96"] = BenchRow(
    "cfmnist_simsiam_hierarchical", PAPER_HEADS + ["model.depth=50", "model.stem=imagenet"], [32], 96)

#: rows of the peer's model (ResNet-18, ImageNet stem): the only ones compared with a peer's figures
PEER_MODEL_ROW_PREFIX = "paper_r18_imagenet_stem_"


def row_overrides(name: str, batch_size: int, precision: str, extra: Sequence[str] = ()) -> List[str]:
    """The config overrides of row ``name`` at ``batch_size`` and ``precision`` (export off, enough
    steps for the measurement), then ``extra``.

    Raises:
      KeyError: ``name`` is not a row of :data:`ROWS`.
    """
    row = ROWS[name]
    return row.overrides + [f"data.batch_size={batch_size}", f"data.image_size={row.image_size}",
                            f"train.mixed_precision={precision}", "train.max_steps=1000",
                            "export.enabled=false"] + list(extra)


def matmul_peak(dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of a dense ``n x n`` matmul in ``dtype`` (a ``tf.DType``) on this machine (all cores)."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal([n, n], dtype=tf.float32), dtype)
    f = tf.function(lambda x: tf.matmul(x, x))
    f(a).numpy()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        f(a).numpy()
        count += 1
    return 2.0 * n ** 3 * count / (time.perf_counter() - t0) / 1e9


def measure_row(name: str, batch_size: int, precision: str = "float32", steps: int = 5,
                input_seconds: float = 5.0) -> Dict[str, float]:
    """Measures row ``name`` at ``batch_size``: ``steps`` compiled train steps (after 2 warm-up
    steps) on one cached batch, then the view pipeline for ``input_seconds``.

    Returns ``img_s`` (source images/s of the step), ``step_s``, ``gflop_step``, ``gflop_s``,
    ``input_img_s`` (images/s the view pipeline delivers), ``params_m`` (online parameters,
    millions) and memory in GiB (:mod:`hac_tf.benchmarks.process_memory`):

    - ``rss_gb``: peak resident set of the whole process (input measurement included);
    - ``rss_step_gb``: peak resident set before the input measurement;
    - ``model_gb``: resident growth from building the trainer (model, optimizer, policy);
    - ``data_gb``: resident growth from building the view pipeline and drawing one batch (the
      dataset held in memory, the pipeline's buffers);
    - ``before_step_gb``: resident set just before the first step;
    - ``step_peak_gb``: the steps' own memory, the high-water mark over the warm-up and timed
      steps minus ``before_step_gb`` (tracing and compilation included, as in a real run);
    - ``steady_step_gb``: the same over the timed steps alone (the high-water mark reset after the
      warm-up), minus ``before_step_gb`` (back-to-back steps: what they leave in the C heap counts);
    - ``call_peak_gb``: the larger of two more single calls' peaks, each over the resident set just
      before it with the heap trimmed first: one step's own need, without the memory that back-to-back
      steps leave in the C heap.
    """
    import tensorflow as tf

    from hac_tf.training import builders
    from hac_tf.training.config import load_config
    from hac_tf.training.threads import configure_cpu_threads_for
    from hac_tf.training.trainer import Trainer

    config = load_config(ROWS[name].config, row_overrides(name, batch_size, precision))
    configure_cpu_threads_for(config)  # before any TF op, as hac-train does
    rss_start = process_memory.resident_gb()
    trainer = Trainer(config, f"/tmp/bench_train/{name}_{batch_size}")
    rss_model = process_memory.resident_gb()
    views, _ = builders.train_views(config, trainer.policy, 0)
    batch = next(iter(views))
    rss_data = process_memory.resident_gb()
    # compute: the same cached batch every step (no input cost)
    it = iter(tf.data.Dataset.from_tensors(batch).repeat())
    step = trainer._make_train_step()
    gc.collect()
    process_memory.release_free_heap()  # freed but resident memory would hide the step's own growth
    before_step = process_memory.resident_gb()
    peak_so_far = process_memory.peak_resident_gb()  # the reset below forgets it
    process_memory.reset_peak()
    for _ in range(2):
        step(it)["loss"].numpy()
    warmup_peak = process_memory.peak_resident_gb()
    # the timed steps alone: back-to-back steps after the first calls
    gc.collect()
    process_memory.release_free_heap()
    process_memory.reset_peak()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(it)["loss"].numpy()
    step_s = (time.perf_counter() - t0) / steps
    # peak RSS of training alone (model, optimizer state, one cached batch, the step's
    # activations) — before the second input pipeline below adds its own buffers
    steady_peak = process_memory.peak_resident_gb()
    step_peak_gb = max(warmup_peak, steady_peak) - before_step
    steady_step_gb = steady_peak - before_step
    rss_step_gb = max(peak_so_far, warmup_peak, steady_peak)
    # one call at a time: the heap trimmed and the high-water mark reset before each of two more
    # calls, so memory freed by earlier calls and left in the C heap's per-thread arenas (which a
    # run of back-to-back steps accumulates) is not counted: what a single step needs on top of
    # the resident state (weights, optimizer slots)
    call_peaks = [process_memory.call_peak_gb(lambda: step(it)["loss"].numpy()) for _ in range(2)]
    rss_step_gb = max(rss_step_gb, process_memory.peak_resident_gb())
    flops = step_flops(trainer.model, batch)
    # input pipeline: a fresh iterator over the real view pipeline
    views2, _ = builders.train_views(config, trainer.policy, 0)
    it2 = iter(views2)
    next(it2)
    n, t1 = 0, time.perf_counter()
    while time.perf_counter() - t1 < input_seconds:
        next(it2)
        n += batch_size
    input_rate = n / (time.perf_counter() - t1)
    rss_gb = max(rss_step_gb, process_memory.peak_resident_gb())
    return {"img_s": batch_size / step_s, "step_s": step_s, "gflop_step": flops / 1e9,
            "gflop_s": flops / step_s / 1e9, "input_img_s": input_rate, "rss_gb": rss_gb,
            "rss_step_gb": rss_step_gb, "model_gb": rss_model - rss_start, "data_gb": rss_data - rss_model,
            "before_step_gb": before_step, "step_peak_gb": step_peak_gb, "steady_step_gb": steady_step_gb,
            "call_peak_gb": max(call_peaks),
            "params_m": sum(int(np.prod(v.shape)) for v in trainer.model.online_variables) / 1e6}


#: the line a measuring child process prints its result on
RESULT_PREFIX = "RESULT "


#: memory allocators a measuring process can use: ``onednn`` = TensorFlow's default with oneDNN on,
#: which pools large blocks and keeps memory freed before the step (e.g. the transient second copy
#: of an in-memory dataset) for the step to reuse unseen, so the step's resident growth is a lower
#: bound of its peak; ``system`` = the C library's allocator (``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1``),
#: which hands freed memory back (with ``malloc_trim``), so the growth is the step's own peak
ALLOCATORS = ("onednn", "system")
SYSTEM_ALLOCATOR_ENV = "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"


def child_environment(allocator: str = "onednn") -> Dict[str, str]:
    """This process's environment for a measuring child using ``allocator`` (one of :data:`ALLOCATORS`).

    Raises:
      ValueError: an unknown allocator.
    """
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {list(ALLOCATORS)}, got {allocator!r}")
    env = {k: v for k, v in os.environ.items() if k != SYSTEM_ALLOCATOR_ENV}
    if allocator == "system":
        env[SYSTEM_ALLOCATOR_ENV] = "1"
    return env


def measure_in_fresh_process(name: str, batch_size: int, precision: str, steps: int,
                             input_seconds: float, allocator: str = "onednn") -> Dict[str, float]:
    """:func:`measure_row` in a new ``python -m hac_tf.cli.bench_train --_child=...`` process (peak
    RSS is this row's, rows share no caches) using ``allocator`` (see :data:`ALLOCATORS`); the
    result also names the allocator.

    Raises:
      RuntimeError: the child failed (its stderr tail is in the message).
      ValueError: an unknown allocator.
    """
    env = child_environment(allocator)
    args = [sys.executable, "-m", "hac_tf.cli.bench_train", f"--_child={name}:{batch_size}:{precision}",
            f"--steps={steps}", f"--input_seconds={input_seconds}"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX):]), allocator=allocator)
    raise RuntimeError(f"benchmark of {name} batch {batch_size} {precision} failed:\n{proc.stderr[-3000:]}")
