"""Training-step benchmark: throughput, step time, memory, achieved FLOP/s vs the matmul peak.

For each row (a config + overrides) it prints steady-state source images/s (one source image =
all of its views), seconds per step, peak resident memory, the step's FLOPs (3 x the forward
conv/matmul FLOPs counted by TF's profiler on the traced forward graph: forward + backward),
the achieved GFLOP/s as a fraction of this machine's dense matmul peak (fp32 and bf16, measured
in the same run), and the input pipeline's delivered images/s (is the step input-bound?).

  python tools/bench_train.py                                   # the default CPU config, fp32
  python tools/bench_train.py --rows=paper_r18_imagenet_stem_32 --batch_sizes=64,128
  python tools/bench_train.py --list_rows

The compute measurement feeds one cached batch repeatedly, so it excludes input time; the input
pipeline is measured separately in the same process.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Dict, List, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("rows", ["cpu_default"], "Row presets (see --list_rows).")
flags.DEFINE_list("batch_sizes", [], "Override the batch sizes of every row.")
flags.DEFINE_integer("steps", 5, "Measured steps per row (after 2 warm-up steps).")
flags.DEFINE_float("input_seconds", 5.0, "Seconds to measure the input pipeline.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Compute precision.")
flags.DEFINE_bool("list_rows", False, "List the presets and exit.")

PAPER_HEADS = ["model.projector_hidden_dim=2048", "model.projector_out_dim=2048",
               "model.predictor_hidden_dim=512", "model.predictor_out_dim=2048", "model.embed_dim=512",
               "model.width_multiplier=1.0", "model.method=simsiam"]
BASELINE = ["augment.policy=two_view", "model.level_depths=[4]", "model.embed_fields=[]"]

# name -> (config file, overrides, default batch sizes, image size)
ROWS: Dict[str, Tuple[str, List[str], List[int], int]] = {
    "cpu_default": ("configs/cfmnist_simsiam_hierarchical.yaml", [], [128], 32),
    "cpu_default_baseline": ("configs/cfmnist_simsiam_baseline.yaml", [], [128], 32),
}
for px in (32, 64, 96):
    for stem in ("imagenet", "cifar"):
        ROWS[f"paper_r18_{stem}_stem_{px}"] = ("configs/cfmnist_simsiam_hierarchical.yaml",
                                               PAPER_HEADS + [f"model.stem={stem}"], [64, 128], px)
        ROWS[f"paper_r18_{stem}_stem_{px}_baseline"] = ("configs/cfmnist_simsiam_baseline.yaml",
                                                        PAPER_HEADS + BASELINE + [f"model.stem={stem}"], [64, 128], px)
ROWS["paper_r50_imagenet_stem_96"] = ("configs/cfmnist_simsiam_hierarchical.yaml",
                                      PAPER_HEADS + ["model.depth=50", "model.stem=imagenet"], [32], 96)


def matmul_peak(dtype: tf.DType, n: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of a dense n x n matmul on this machine (all cores)."""
    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    f = tf.function(lambda x: tf.matmul(x, x))
    f(a).numpy()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        f(a).numpy()
        count += 1
    return 2.0 * n ** 3 * count / (time.perf_counter() - t0) / 1e9


def forward_flops(model, batch) -> float:
    """Conv/matmul FLOPs of one forward pass of the loss, from TF's profiler on the traced graph."""
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), batch)
    concrete = tf.function(lambda b: model.compute_loss(b, training=True)[0]).get_concrete_function(spec)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=concrete.graph, options=opts)
    return float(prof.total_float_ops)


def bench_row(name: str, batch_size: int) -> Dict[str, float]:
    from hac_tf.training import builders
    from hac_tf.training.config import load_config
    from hac_tf.training.trainer import Trainer

    cfg_file, overrides, _, px = ROWS[name]
    overrides = overrides + [f"data.batch_size={batch_size}", f"data.image_size={px}",
                             f"train.mixed_precision={FLAGS.precision}", "train.max_steps=1000",
                             "export.enabled=false"]
    config = load_config(cfg_file, overrides)
    trainer = Trainer(config, f"/tmp/bench_train/{name}_{batch_size}")
    views, _ = builders.train_views(config, trainer.policy, 0)
    batch = next(iter(views))
    # compute: the same cached batch every step (no input cost)
    cached = tf.data.Dataset.from_tensors(batch).repeat()
    it = iter(cached)
    step = trainer._make_train_step()
    for _ in range(2):
        step(it)["loss"].numpy()
    t0 = time.perf_counter()
    for _ in range(FLAGS.steps):
        step(it)["loss"].numpy()
    step_s = (time.perf_counter() - t0) / FLAGS.steps
    flops = 3.0 * forward_flops(trainer.model, batch)
    # input pipeline: a fresh iterator over the real view pipeline
    views2, _ = builders.train_views(config, trainer.policy, 0)
    it2 = iter(views2)
    next(it2)
    n, t1 = 0, time.perf_counter()
    while time.perf_counter() - t1 < FLAGS.input_seconds:
        next(it2)
        n += batch_size
    input_rate = n / (time.perf_counter() - t1)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    return {"img_s": batch_size / step_s, "step_s": step_s, "gflop_step": flops / 1e9,
            "gflop_s": flops / step_s / 1e9, "input_img_s": input_rate, "rss_gb": rss_gb,
            "params_m": sum(int(np.prod(v.shape)) for v in trainer.model.online_variables) / 1e6}


def main(argv: List[str]) -> int:
    del argv
    if FLAGS.list_rows:
        for k, v in ROWS.items():
            print(f"{k:40s} {v[0]} batch={v[2]} px={v[3]}")
        return 0
    peak32 = matmul_peak(tf.float32)
    peak16 = matmul_peak(tf.bfloat16)
    print(f"cores={os.cpu_count()} tf={tf.__version__} precision={FLAGS.precision} "
          f"matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s", flush=True)
    peak = peak32 if FLAGS.precision == "float32" else peak16
    header = (f"{'row':<38} {'batch':>5} {'px':>4} {'params M':>8} {'img/s':>7} {'s/step':>7} {'GFLOP/step':>10} "
              f"{'GFLOP/s':>8} {'% peak':>6} {'input img/s':>11} {'input-bound':>11} {'peak RSS GB':>11}")
    print(header)
    print("-" * len(header), flush=True)
    for name in FLAGS.rows:
        if name not in ROWS:
            print(f"unknown row {name!r}; see --list_rows", file=sys.stderr)
            return 2
        sizes = [int(b) for b in FLAGS.batch_sizes] or ROWS[name][2]
        for b in sizes:
            r = bench_row(name, b)
            bound = "yes" if r["input_img_s"] < r["img_s"] else "no"
            print(f"{name:<38} {b:>5} {ROWS[name][3]:>4} {r['params_m']:>8.1f} {r['img_s']:>7.1f} {r['step_s']:>7.2f} "
                  f"{r['gflop_step']:>10.1f} {r['gflop_s']:>8.1f} {100 * r['gflop_s'] / peak:>5.0f}% "
                  f"{r['input_img_s']:>11.0f} {bound:>11} {r['rss_gb']:>11.2f}", flush=True)
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
