"""Training-step benchmark: throughput, step time, memory, achieved FLOP/s vs the matmul peak.

For each row (a config + overrides) it prints steady-state source images/s (one source image =
all of its views), seconds per step, peak resident memory, the step's FLOPs (3 x the forward
conv/matmul FLOPs counted by TF's profiler on the traced forward graph: forward + backward),
the achieved GFLOP/s as a fraction of this machine's dense matmul peak (fp32 and bf16, measured
in the same run), and the input pipeline's delivered images/s (is the step input-bound?).

  python tools/bench_train.py                                   # the default CPU config, fp32
  python tools/bench_train.py --rows=paper_r18_imagenet_stem_32 --batch_sizes=64,128
  python tools/bench_train.py --rows=paper_r18_cifar_stem_32,paper_r18_cifar_stem_32_baseline \
      --precisions=float32,mixed_bfloat16 --repeats=3
  python tools/bench_train.py --rows=paper_r18_imagenet_stem_32 --peer_json=peer_now.json   # + "x peer"
  python tools/bench_train.py --list_rows

Each (row, batch, precision) runs in a fresh process (peak RSS is that row's), repeats are
interleaved over rows and the median is reported with the spread (noise on these machines is up
to 20%).

Comparison with a peer implementation (e.g. the paper's official PyTorch code) only with
--peer_json=<file>: a JSON list written by the peer's harness on this machine in the same window,
one object per point, ``{"batch": 64, "px": 32, "precision": "float32", "variant":
"hierarchical"|"baseline", "img_per_s": 50.5}`` (format and checks: hac_tf/peer_figures.py).
The table then gets 'peer img/s', 'peer prec' and 'x peer' (our img/s / the peer's) for the
paper_r18_imagenet_stem_* rows (the peer's model), matched on batch, px and variant, and on
precision when the peer measured it (else against its float32 point; 'peer prec' says which).
The file's path, age and point count are printed above the table. Without --peer_json there is
no peer column: no figure from another run or machine is shown as if measured here.

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

from hac_tf.peer_figures import load_peer_figures, peer_columns  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("rows", ["cpu_default"], "Row presets (see --list_rows).")
flags.DEFINE_list("batch_sizes", [], "Override the batch sizes of every row.")
flags.DEFINE_integer("steps", 5, "Measured steps per row (after 2 warm-up steps).")
flags.DEFINE_float("input_seconds", 5.0, "Seconds to measure the input pipeline.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Compute precision.")
flags.DEFINE_list("precisions", [], "Several precisions measured in the same run (overrides --precision).")
flags.DEFINE_integer("repeats", 1, "Interleaved repeats of every row (median reported).")
flags.DEFINE_bool("list_rows", False, "List the presets and exit.")
flags.DEFINE_string("_child", "", "Internal: measure one 'row:batch:precision' and print JSON.")
flags.DEFINE_string("peer_json", "", "Peer figures measured in the same window (JSON list of {batch, px, "
                    "precision, variant, img_per_s}); adds the 'x peer' column. Default: no peer column.")

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
    """Conv/matmul FLOPs of one forward pass of the loss, from TF's profiler on the traced graph
    (hac_tf/science/budget.py counts them; a training step is 3 x this)."""
    from hac_tf.science.budget import step_flops

    return step_flops(model, batch) / 3.0


def bench_row(name: str, batch_size: int) -> Dict[str, float]:
    from hac_tf.training import builders
    from hac_tf.training.config import load_config
    from hac_tf.training.trainer import Trainer

    cfg_file, overrides, _, px = ROWS[name]
    overrides = overrides + [f"data.batch_size={batch_size}", f"data.image_size={px}",
                             f"train.mixed_precision={FLAGS.precision}", "train.max_steps=1000",
                             "export.enabled=false"]
    config = load_config(cfg_file, overrides)
    from hac_tf.training.threads import configure_cpu_threads_for  # as tools/train.py, before any TF op

    configure_cpu_threads_for(config)
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
    # peak RSS of training alone (model, optimizer state, one cached batch, the step's
    # activations) — before the second input pipeline below adds its own buffers
    rss_step_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
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
            "rss_step_gb": rss_step_gb,
            "params_m": sum(int(np.prod(v.shape)) for v in trainer.model.online_variables) / 1e6}


#: rows of the peer's model (ResNet-18, ImageNet stem): the only ones compared with --peer_json
PEER_MODEL_ROW_PREFIX = "paper_r18_imagenet_stem_"


def _child(spec: str) -> int:
    """Runs one (row, batch, precision) measurement and prints it as one JSON line."""
    import json

    name, batch, precision = spec.split(":")
    FLAGS.precision = precision
    r = bench_row(name, int(batch))
    print("RESULT " + json.dumps(r), flush=True)
    return 0


def _run_child(name: str, batch: int, precision: str) -> Dict[str, float]:
    """One measurement in a fresh process (peak RSS is per row, rows do not share caches)."""
    import json
    import subprocess

    args = [sys.executable, os.path.abspath(__file__), f"--_child={name}:{batch}:{precision}",
            f"--steps={FLAGS.steps}", f"--input_seconds={FLAGS.input_seconds}"]
    proc = subprocess.run(args, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"benchmark of {name} batch {batch} {precision} failed:\n{proc.stderr[-3000:]}")


def main(argv: List[str]) -> int:
    del argv
    if FLAGS._child:
        return _child(FLAGS._child)
    if FLAGS.list_rows:
        for k, v in ROWS.items():
            print(f"{k:40s} {v[0]} batch={v[2]} px={v[3]}")
        return 0
    for name in FLAGS.rows:
        if name not in ROWS:
            print(f"unknown row {name!r}; see --list_rows", file=sys.stderr)
            return 2
    precisions = FLAGS.precisions or [FLAGS.precision]
    peer = None
    if FLAGS.peer_json:
        try:
            peer = load_peer_figures(FLAGS.peer_json)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(peer.describe(), flush=True)
    peaks = {"float32": matmul_peak(tf.float32), "mixed_bfloat16": matmul_peak(tf.bfloat16)}
    print(f"cores={os.cpu_count()} tf={tf.__version__} onednn={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')} "
          f"matmul peak: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['mixed_bfloat16']:.0f} GFLOP/s; "
          f"median of {FLAGS.repeats} interleaved repeat(s), {FLAGS.steps} steps each", flush=True)
    peer_header = f"{'peer img/s':>10} {'peer prec':>9} {'x peer':>6} " if peer else ""
    header = (f"{'row':<38} {'prec':>4} {'batch':>5} {'px':>3} {'params M':>8} {'img/s':>6} {'spread':>6} "
              f"{peer_header}{'s/step':>6} {'GFLOP/step':>10} {'GFLOP/s':>7} {'%peak':>5} {'input img/s':>11} "
              f"{'bound':>5} {'RSS GB':>6} {'train RSS':>9}")
    print(header)
    print("-" * len(header), flush=True)
    jobs = [(name, b, p) for name in FLAGS.rows for b in ([int(x) for x in FLAGS.batch_sizes] or ROWS[name][2])
            for p in precisions]
    results: Dict[Tuple[str, int, str], List[Dict[str, float]]] = {j: [] for j in jobs}
    for rep in range(FLAGS.repeats):  # interleaved: machine noise spreads over all rows alike
        for job in jobs:
            r = _run_child(*job)
            results[job].append(r)
            print(f"  [{rep + 1}/{FLAGS.repeats}] {job[0]} batch {job[1]} {job[2]}: {r['img_s']:.1f} img/s, "
                  f"{r['step_s']:.2f} s/step, input {r['input_img_s']:.0f} img/s, RSS {r['rss_gb']:.2f} GB",
                  file=sys.stderr, flush=True)
    summary = {}
    for (name, b, p), runs in results.items():
        rates = sorted(r["img_s"] for r in runs)
        med = rates[len(rates) // 2]
        r = min(runs, key=lambda x: abs(x["img_s"] - med))
        summary[(name, b, p)] = r
        px = ROWS[name][3]
        cells = peer_columns(peer, name.startswith(PEER_MODEL_ROW_PREFIX), b, px,
                             "baseline" if name.endswith("_baseline") else "hierarchical", p, med)
        peer_cells = f"{cells[0]:>10} {cells[1]:>9} {cells[2]:>6} " if cells else ""
        spread = f"{100 * (rates[-1] - rates[0]) / med:.0f}%" if len(rates) > 1 else "-"
        bound = "yes" if r["input_img_s"] < 3 * med else "no"
        print(f"{name:<38} {'bf16' if p != 'float32' else 'fp32':>4} {b:>5} {px:>3} {r['params_m']:>8.1f} {med:>6.1f} "
              f"{spread:>6} {peer_cells}{r['step_s']:>6.2f} {r['gflop_step']:>10.1f} {r['gflop_s']:>7.1f} "
              f"{100 * r['gflop_s'] / peaks[p]:>4.0f}% {r['input_img_s']:>11.0f} {bound:>5} {r['rss_gb']:>6.2f} {r.get('rss_step_gb', float('nan')):>9.2f}",
              flush=True)
    for (name, b, p), r in summary.items():
        base = summary.get((name + "_baseline", b, p))
        if base:
            print(f"hierarchy overhead {name} batch {b} {p}: step time x{r['step_s'] / base['step_s']:.2f} "
                  f"of the one-level step")
    for name in FLAGS.rows:
        for p in precisions:
            pts = sorted((b, r.get("rss_step_gb", r["rss_gb"])) for (n, b, q), r in summary.items()
                         if n == name and q == p)
            if len(pts) >= 2:
                bs = np.array([b for b, _ in pts], float)
                gb = np.array([g for _, g in pts], float)
                slope, intercept = np.polyfit(bs, gb, 1)
                worst = float(np.max(np.abs(gb - (slope * bs + intercept))))
                print(f"memory {name} {p}: training peak RSS " + ", ".join(f"{g:.2f} GB at batch {b}" for b, g in pts)
                      + f": {1024 * slope:.1f} MB per source image, intercept {intercept:.2f} GB"
                      + (f", largest deviation from the line {1024 * worst:.0f} MB" if len(pts) > 2 else ""))
    print("input 'bound' = the view pipeline delivers < 3x the images/s the step consumes; 'RSS GB' = peak of the "
          "whole row (incl. the input measurement), 'train RSS' = peak before the input measurement")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
