"""Training-step benchmark: throughput, step time, memory, achieved FLOP/s vs the matmul peak.

For each row (a config + overrides) it prints steady-state source images/s (one source image =
all of its views), seconds per step, peak resident memory, the step's FLOPs (counted by TF's
profiler on the traced forward graph: 3 x the ops the loss is differentiated through, forward +
backward, plus 1 x forward-only ops such as a BYOL/MoCo target tower; hac_tf/science/budget.py),
the achieved GFLOP/s as a fraction of this machine's dense matmul peak (fp32 and bf16, measured
in the same run), and the input pipeline's delivered images/s (is the step input-bound?).

  hac-bench-train                                   # the default CPU config, fp32
  hac-bench-train --rows=paper_r18_imagenet_stem_32 --batch_sizes=64,128
  hac-bench-train --rows=paper_r18_cifar_stem_32,paper_r18_cifar_stem_32_baseline \
      --precisions=float32,mixed_bfloat16 --repeats=3
  hac-bench-train --rows=paper_r18_imagenet_stem_32 --peer_json=peer_now.json   # + "x peer"
  hac-bench-train --rows=paper_r18_imagenet_stem_32 --jsonl=m.jsonl   # + every measurement logged
  hac-bench-train --from_jsonl=m.jsonl --peer_json=peer_now.json       # the table of logged runs
  hac-bench-train --rows=paper_r18_imagenet_stem_96 --steps=1 --allocator=system   # the step's own memory
  hac-bench-train --list_rows

Each (row, batch, precision) runs in a fresh process (peak RSS is that row's), repeats are
interleaved over rows and the median is reported with the spread (repeat to see this machine's
noise; with an even count the mean of the two middle values; the other columns are from the run
closest to it). To interleave with another
program (a peer's harness), run single rounds with ``--jsonl`` between the peer's rounds and print
the table of all of them with ``--from_jsonl``. The measurement is hac_tf/benchmarks/train_step.py.

Comparison with a peer implementation (e.g. the paper's official PyTorch code) only with
--peer_json=<file>: a JSON list written by the peer's harness on this machine in the same window,
one object per point, ``{"batch": 64, "px": 32, "precision": "float32", "variant":
"hierarchical"|"baseline", "img_per_s": 50.5}`` (format and checks: hac_tf/benchmarks/peer_figures.py).
The table then gets 'peer img/s', 'peer prec' and 'x peer' (our img/s / the peer's) for the
paper_r18_imagenet_stem_* rows (the peer's model), matched on batch, px and variant, and on
precision when the peer measured it (else against its float32 point; 'peer prec' says which).
When the peer's points carry ``"step_peak_gb"`` (its training steps' own memory, measured as this
benchmark measures 'step GB') or ``"call_peak_gb"`` (one step's, as 'call GB'), the table also gets
'peer step GB' and 'x peer step', or 'peer call GB' and 'x peer call' (ours / the peer's). The
file's path, age and point count are printed above the table. Without --peer_json there is no peer
column: no figure from another run or machine is shown as if measured here.

The compute measurement feeds one cached batch repeatedly, so it excludes input time; the input
pipeline is measured separately in the same process. 'step GB' is the step's own peak only with
``--allocator=system``: TensorFlow's default allocator with oneDNN keeps memory freed earlier in a
pool (building an in-memory dataset frees a transient copy of it) and the step reuses it without
growing the process, so with the default the figure is a lower bound (docs/PERFORMANCE.md).
Exit codes: 0 done; 2 an unknown row or a bad --peer_json file (nothing measured).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from typing import Dict, List, Tuple

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-bench-train (same as tools/bench_train.py)."""
    fv = flag_values
    flags.DEFINE_list("rows", ["cpu_default"], "Row presets (see --list_rows).", flag_values=fv)
    flags.DEFINE_list("batch_sizes", [], "Override the batch sizes of every row.", flag_values=fv)
    flags.DEFINE_integer("steps", 5, "Measured steps per row (after 2 warm-up steps).", flag_values=fv)
    flags.DEFINE_float("input_seconds", 5.0, "Seconds to measure the input pipeline.", flag_values=fv)
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Compute precision.",
                      flag_values=fv)
    flags.DEFINE_list("precisions", [], "Several precisions measured in the same run (overrides --precision).",
                      flag_values=fv)
    flags.DEFINE_integer("repeats", 1, "Interleaved repeats of every row (median reported).", flag_values=fv)
    flags.DEFINE_enum("allocator", "onednn", ["onednn", "system"],
                      "Memory allocator of the measuring processes: 'onednn' (TensorFlow's default: it pools "
                      "freed memory, so 'step GB' is a lower bound of the step's peak) or 'system' (the C "
                      "library's, TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1: 'step GB' is the steps' own peak).",
                      flag_values=fv)
    flags.DEFINE_bool("list_rows", False, "List the presets and exit.", flag_values=fv)
    flags.DEFINE_string("_child", "", "Internal: measure one 'row:batch:precision' and print JSON.",
                        flag_values=fv)
    flags.DEFINE_string("peer_json", "", "Peer figures measured in the same window (JSON list of {batch, px, "
                        "precision, variant, img_per_s[, step_peak_gb]}); adds the 'x peer' column (and the memory "
                        "ratio). Default: no peer column.",
                        flag_values=fv)
    flags.DEFINE_string("jsonl", "", "Also append every measurement (row, batch, precision, repeat and all its "
                        "figures) to this file as one JSON object per line.", flag_values=fv)
    flags.DEFINE_string("from_jsonl", "", "Measure nothing: print the table of the measurements logged in this "
                        "--jsonl file (e.g. several interleaved invocations; median over all their repeats).",
                        flag_values=fv)
    define_verbose_flag(fv)


def _child(spec: str, steps: int, input_seconds: float) -> int:
    """Runs one (row, batch, precision) measurement and prints it as one JSON line."""
    from hac_tf.benchmarks.train_step import RESULT_PREFIX, measure_row

    name, batch, precision = spec.split(":")
    r = measure_row(name, int(batch), precision, steps, input_seconds)
    print(RESULT_PREFIX + json.dumps(r), flush=True)
    return 0


_LOGGED_KEYS = ("row", "batch", "precision", "img_s", "step_s", "gflop_step", "gflop_s", "input_img_s", "rss_gb",
                "params_m", "matmul_peak_gflop_s")


def _read_logged(path: str) -> List[Dict]:
    """The measurements a ``--jsonl`` run logged in ``path``, one dict per line.

    Raises:
      ValueError: unreadable file, a line that is not a JSON object with the logged keys, or no line.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line for line in fh.read().splitlines() if line.strip()]
    except OSError as e:
        raise ValueError(f"cannot read --from_jsonl {path}: {e.strerror or e}") from e
    logged = []
    for i, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {i} is not JSON: {e}") from e
        missing = [k for k in _LOGGED_KEYS if not isinstance(record, dict) or k not in record]
        if missing:
            raise ValueError(f"{path} line {i} is not a logged measurement (missing {', '.join(missing)})")
        logged.append(record)
    if not logged:
        raise ValueError(f"{path} holds no measurement")
    return logged


def main(argv: List[str]) -> int:
    """Runs the benchmark of the parsed flags; returns the exit code."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.benchmarks import train_step
    from hac_tf.benchmarks.train_step import PEER_MODEL_ROW_PREFIX, ROWS

    if f._child:
        return _child(f._child, f.steps, f.input_seconds)
    if f.list_rows:
        for k, v in ROWS.items():
            print(f"{k:40s} {v.config} batch={v.batch_sizes} px={v.image_size}")
        return 0
    from hac_tf.benchmarks.peer_figures import load_peer_figures, peer_columns, peer_memory_columns

    try:  # the input files are checked before anything is measured
        logged: List[Dict] = _read_logged(f.from_jsonl) if f.from_jsonl else []
        peer = load_peer_figures(f.peer_json) if f.peer_json else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = list(dict.fromkeys(r["row"] for r in logged)) if logged else f.rows
    for name in rows:
        if name not in ROWS:
            print(f"unknown row {name!r}; see --list_rows", file=sys.stderr)
            return 2
    precisions = f.precisions or [f.precision]
    if peer:
        print(peer.describe(), flush=True)
    import numpy as np

    if logged:
        peaks = {p: float(np.median([r["matmul_peak_gflop_s"] for r in logged if r["precision"] == p] or [np.nan]))
                 for p in ("float32", "mixed_bfloat16")}
        print(f"measurements of {f.from_jsonl} ({len(logged)} logged); matmul peak (median of the runs): fp32 "
              f"{peaks['float32']:.0f} GFLOP/s, bf16 {peaks['mixed_bfloat16']:.0f} GFLOP/s; median over every "
              f"logged repeat", flush=True)
    else:
        import tensorflow as tf

        peaks = {"float32": train_step.matmul_peak(tf.float32),
                 "mixed_bfloat16": train_step.matmul_peak(tf.bfloat16)}
        print(f"cores={os.cpu_count()} tf={tf.__version__} "
              f"onednn={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')} "
              f"matmul peak: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['mixed_bfloat16']:.0f} GFLOP/s; "
              f"median of {f.repeats} interleaved repeat(s), {f.steps} steps each; allocator={f.allocator}",
              flush=True)
    peer_header = f"{'peer img/s':>10} {'peer prec':>9} {'x peer':>6} " if peer else ""
    peer_memory_header = "".join(
        f" {'peer ' + label:>12} {'x peer ' + short:>11}"
        for field, label, short in (("step_peak_gb", "step GB", "step"), ("call_peak_gb", "call GB", "call"))
        if peer_memory_columns(peer, False, 0, 0, "", "", 0.0, field))
    header = (f"{'row':<38} {'prec':>4} {'batch':>5} {'px':>3} {'params M':>8} {'img/s':>6} {'spread':>6} "
              f"{peer_header}{'s/step':>6} {'GFLOP/step':>10} {'GFLOP/s':>7} {'%peak':>5} {'input img/s':>11} "
              f"{'bound':>5} {'RSS GB':>6} {'data GB':>7} {'step GB':>7} {'call GB':>7}{peer_memory_header}")
    print(header)
    print("-" * len(header), flush=True)
    if logged:
        jobs = list(dict.fromkeys((r["row"], r["batch"], r["precision"]) for r in logged))
    else:
        jobs = [(name, b, p) for name in rows for b in ([int(x) for x in f.batch_sizes] or ROWS[name].batch_sizes)
                for p in precisions]
    results: Dict[Tuple[str, int, str], List[Dict[str, float]]] = {j: [] for j in jobs}
    for r in logged:
        results[(r["row"], r["batch"], r["precision"])].append(r)
    for rep in range(0 if logged else f.repeats):  # interleaved: machine noise spreads over all rows alike
        for job in jobs:
            r = train_step.measure_in_fresh_process(*job, f.steps, f.input_seconds, allocator=f.allocator)
            results[job].append(r)
            if f.jsonl:
                with open(f.jsonl, "a", encoding="utf-8") as out:
                    out.write(json.dumps(dict(r, row=job[0], batch=job[1], precision=job[2], repeat=rep,
                                              px=ROWS[job[0]].image_size,
                                              matmul_peak_gflop_s=peaks[job[2]])) + "\n")
            print(f"  [{rep + 1}/{f.repeats}] {job[0]} batch {job[1]} {job[2]}: {r['img_s']:.1f} img/s, "
                  f"{r['step_s']:.2f} s/step, input {r['input_img_s']:.0f} img/s, RSS {r['rss_gb']:.2f} GB, "
                  f"step {r.get('step_peak_gb', float('nan')):.2f} GB "
                  f"(steady state {r.get('steady_step_gb', float('nan')):.2f} GB, one call "
                  f"{r.get('call_peak_gb', float('nan')):.2f} GB)",
                  file=sys.stderr, flush=True)
    summary = {}
    for (name, b, p), runs in results.items():
        rates = sorted(r["img_s"] for r in runs)
        med = statistics.median(rates)
        r = min(runs, key=lambda x: abs(x["img_s"] - med))
        summary[(name, b, p)] = r
        px = ROWS[name].image_size
        cells = peer_columns(peer, name.startswith(PEER_MODEL_ROW_PREFIX), b, px,
                             "baseline" if name.endswith("_baseline") else "hierarchical", p, med)
        peer_cells = f"{cells[0]:>10} {cells[1]:>9} {cells[2]:>6} " if cells else ""
        step_gb, call_gb = r.get("step_peak_gb", float("nan")), r.get("call_peak_gb", float("nan"))
        variant = "baseline" if name.endswith("_baseline") else "hierarchical"
        mem_cells = ""
        for field, ours in (("step_peak_gb", step_gb), ("call_peak_gb", call_gb)):
            mem = peer_memory_columns(peer, name.startswith(PEER_MODEL_ROW_PREFIX), b, px, variant, p, ours, field)
            mem_cells += f" {mem[0]:>12} {mem[1]:>11}" if mem else ""
        spread = f"{100 * (rates[-1] - rates[0]) / med:.0f}%" if len(rates) > 1 else "-"
        bound = "yes" if r["input_img_s"] < 3 * med else "no"
        print(f"{name:<38} {'bf16' if p != 'float32' else 'fp32':>4} {b:>5} {px:>3} {r['params_m']:>8.1f} {med:>6.1f} "
              f"{spread:>6} {peer_cells}{r['step_s']:>6.2f} {r['gflop_step']:>10.1f} {r['gflop_s']:>7.1f} "
              f"{100 * r['gflop_s'] / peaks[p]:>4.0f}% {r['input_img_s']:>11.0f} {bound:>5} {r['rss_gb']:>6.2f} "
              f"{r.get('data_gb', float('nan')):>7.2f} {step_gb:>7.2f} {call_gb:>7.2f}{mem_cells}", flush=True)
    for (name, b, p), r in summary.items():
        base = summary.get((name + "_baseline", b, p))
        if base:
            print(f"hierarchy overhead {name} batch {b} {p}: step time x{r['step_s'] / base['step_s']:.2f} "
                  f"of the one-level step")
    for name in rows:
        for p in sorted({job[2] for job in jobs}):
            pts = sorted((b, r.get("step_peak_gb", r["rss_gb"])) for (n, b, q), r in summary.items()
                         if n == name and q == p)
            if len(pts) >= 2:
                bs = np.array([b for b, _ in pts], float)
                gb = np.array([g for _, g in pts], float)
                slope, intercept = np.polyfit(bs, gb, 1)
                worst = float(np.max(np.abs(gb - (slope * bs + intercept))))
                print(f"memory {name} {p}: training step's own peak " + ", ".join(f"{g:.2f} GB at batch {b}" for b, g in pts)
                      + f": {1024 * slope:.1f} MB per source image, intercept {intercept:.2f} GB"
                      + (f", largest deviation from the line {1024 * worst:.0f} MB" if len(pts) > 2 else ""))
    print("input 'bound' = the view pipeline delivers < 3x the images/s the step consumes; 'RSS GB' = peak resident "
          "memory of the whole row's process; 'data GB' = resident growth from building the view pipeline and "
          "drawing one batch (the dataset held in memory, the pipeline's buffers); 'step GB' = the training steps' "
          "own peak (high-water mark over warm-up + timed steps minus the resident set just before the first step); "
          "'call GB' = one step's peak over the resident set just before it, the C heap trimmed first (the larger "
          "of two calls after the timed steps)")
    allocators = sorted({r.get("allocator", "onednn") for runs in results.values() for r in runs})
    print(f"allocator: {', '.join(allocators)}" + (
        "; with 'onednn' (TensorFlow's default) 'step GB' is a lower bound: the pool keeps memory freed before the "
        "step and the step reuses it unseen (--allocator=system measures the step's own peak)"
        if "onednn" in allocators else ": 'step GB' is the steps' own peak, memory back-to-back steps leave in the "
        "C heap included ('call GB' excludes it)"))
    return 0


def run() -> None:
    """Console script ``hac-bench-train``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
