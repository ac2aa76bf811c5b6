"""Where the training step's time goes: TF profiler over a few steps of a bench_train row.

Runs the row's compiled train step on one cached batch (no input cost) under
``tf.profiler.experimental`` and prints the self time per op type, per model scope (stem,
stage1..4, branches, embeddings, projectors, predictors, optimizer) and the slowest ops.

  python tools/profile_train.py --row=paper_r18_imagenet_stem_64 --batch_size=64
  python tools/profile_train.py --row=paper_r18_imagenet_stem_32 --precision=mixed_bfloat16 --top=30
  python tools/profile_train.py --row=paper_r18_cifar_stem_32 --scope=branch   # one scope's ops

Figures are per step (total self time of the profiled steps / steps). The profiler adds some
overhead; use tools/bench_train.py for throughput.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import sys
import tempfile
from typing import Dict, List, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import bench_train  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("row", "paper_r18_imagenet_stem_32", "A tools/bench_train.py row preset.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
# --precision (float32 | mixed_bfloat16) comes from bench_train
flags.DEFINE_integer("profile_steps", 3, "Profiled steps (after 2 warm-up steps).")
flags.DEFINE_integer("top", 20, "How many of the slowest ops to list.")
flags.DEFINE_multi_string("override", [], "Extra config override key=value (repeatable).")
flags.DEFINE_string("scope", "", "Also list the op types and slowest ops of this model scope only "
                    "(one of the scopes in the table, e.g. branch, other).")

SCOPES = ("stem", "stage1", "stage2", "stage3", "stage4", "branch", "embedding", "projector",
          "predictor", "SGD", "loss")


def _scope_of(op_name: str) -> str:
    for scope in SCOPES:
        if re.search(rf"(^|/|_){scope}", op_name):
            return "optimizer" if scope == "SGD" else scope
    return "other"


def _op_rows(logdir: str) -> List[Tuple[str, str, float]]:
    """``(op type, op name, self time in us)`` of every profiled op (host, TF ops)."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    paths = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    if not paths:
        raise RuntimeError(f"the profiler wrote no xplane file under {logdir}")
    raw, ok = plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError("could not convert the profile")
    tables = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    table = tables[0] if isinstance(tables, list) else tables
    cols = [c["id"] for c in table["cols"]]
    i_type, i_name, i_self = cols.index("type"), cols.index("operation"), cols.index("total_self_time")
    rows = []
    for r in table["rows"]:
        cells = [c["v"] if isinstance(c, dict) else c for c in r["c"]]
        if cells[i_type] in ("IDLE",):
            continue
        rows.append((str(cells[i_type]), str(cells[i_name]), float(cells[i_self])))
    return rows


def _print_table(title: str, totals: Dict[str, float], steps: int, limit: int = 0) -> None:
    total = sum(totals.values())
    print(f"\n{title} (ms/step, share)")
    items = sorted(totals.items(), key=lambda kv: -kv[1])
    for key, us in items[:limit or None]:
        print(f"  {key:<90} {us / 1000 / steps:9.1f}  {100 * us / total:5.1f}%")


def main(argv: List[str]) -> int:
    del argv
    from hac_tf.training import builders
    from hac_tf.training.config import ConfigError, load_config
    from hac_tf.training.threads import configure_cpu_threads_for
    from hac_tf.training.trainer import Trainer

    if FLAGS.row not in bench_train.ROWS:
        print(f"unknown row {FLAGS.row!r}; choose one of: {', '.join(bench_train.ROWS)}", file=sys.stderr)
        return 2
    scopes = sorted({"optimizer" if s == "SGD" else s for s in SCOPES} | {"other"})
    if FLAGS.scope and FLAGS.scope not in scopes:
        print(f"unknown scope {FLAGS.scope!r}; choose one of: {', '.join(scopes)}", file=sys.stderr)
        return 2
    if FLAGS.batch_size < 1 or FLAGS.profile_steps < 1:
        print("--batch_size and --profile_steps must be at least 1", file=sys.stderr)
        return 2
    cfg_file, overrides, _, px = bench_train.ROWS[FLAGS.row]
    overrides = overrides + [f"data.batch_size={FLAGS.batch_size}", f"data.image_size={px}",
                             f"train.mixed_precision={FLAGS.precision}", "train.max_steps=1000",
                             "export.enabled=false"] + list(FLAGS.override)
    try:
        config = load_config(cfg_file, overrides)
        configure_cpu_threads_for(config)
        trainer = Trainer(config, tempfile.mkdtemp(prefix="profile_train_"))
    except (ConfigError, ValueError) as e:  # unknown keys, out of range, inconsistent model sizes
        print(f"bad config: {e}", file=sys.stderr)
        return 2
    views, _ = builders.train_views(config, trainer.policy, 0)
    batch = next(iter(views))
    it = iter(tf.data.Dataset.from_tensors(batch).repeat())
    step = trainer._make_train_step()
    for _ in range(2):
        step(it)["loss"].numpy()
    logdir = tempfile.mkdtemp(prefix="profile_logs_")
    tf.profiler.experimental.start(logdir)
    for _ in range(FLAGS.profile_steps):
        step(it)["loss"].numpy()
    tf.profiler.experimental.stop()
    rows = _op_rows(logdir)
    steps = FLAGS.profile_steps
    by_type: Dict[str, float] = collections.defaultdict(float)
    by_scope: Dict[str, float] = collections.defaultdict(float)
    by_op: Dict[str, float] = collections.defaultdict(float)
    in_scope_type: Dict[str, float] = collections.defaultdict(float)
    in_scope_op: Dict[str, float] = collections.defaultdict(float)
    for op_type, name, us in rows:
        scope = _scope_of(name)
        by_type[op_type] += us
        by_scope[scope] += us
        by_op[f"{op_type} {name}"[:90]] += us
        if scope == FLAGS.scope:
            in_scope_type[op_type] += us
            in_scope_op[f"{op_type} {name}"[:90]] += us
    total_ms = sum(by_type.values()) / 1000 / steps
    print(f"{FLAGS.row} batch {FLAGS.batch_size} {FLAGS.precision}: {total_ms:.0f} ms/step of op self time "
          f"(2 cores: up to 2x the wall time)")
    _print_table("by op type", by_type, steps, 25)
    _print_table("by model scope (backward ops carry their forward op's scope)", by_scope, steps)
    _print_table(f"slowest {FLAGS.top} ops", by_op, steps, FLAGS.top)
    if FLAGS.scope:
        _print_table(f"scope {FLAGS.scope}: by op type (share of the scope)", in_scope_type, steps, 25)
        _print_table(f"scope {FLAGS.scope}: slowest {FLAGS.top} ops", in_scope_op, steps, FLAGS.top)
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
