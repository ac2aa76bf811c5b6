"""Where the training step's time goes: TF profiler over a few steps of a hac-bench-train row.

Runs the row's compiled train step on one cached batch (no input cost) under
``tf.profiler.experimental`` (hac_tf/benchmarks/op_profile.py) and prints the self time per op
type, per model scope (stem, stage1..4, branches, embeddings, projectors, predictors, optimizer)
and the slowest ops.

  hac-profile-train --row=paper_r18_imagenet_stem_64 --batch_size=64
  hac-profile-train --row=paper_r18_imagenet_stem_32 --precision=mixed_bfloat16 --top=30
  hac-profile-train --row=paper_r18_cifar_stem_32 --scope=branch   # one scope's ops

Figures are per step (total self time of the profiled steps / steps). The profiler adds some
overhead; use hac-bench-train for throughput.
Exit codes: 0 done; 2 an unknown row or scope, a size below 1, or a bad config override.
"""

from __future__ import annotations

import collections
import sys
from typing import Dict, List

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-profile-train (same as tools/profile_train.py)."""
    fv = flag_values
    flags.DEFINE_string("row", "paper_r18_imagenet_stem_32", "A hac-bench-train row preset.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 64, "Batch size.", flag_values=fv)
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Compute precision.",
                      flag_values=fv)
    flags.DEFINE_integer("profile_steps", 3, "Profiled steps (after 2 warm-up steps).", flag_values=fv)
    flags.DEFINE_integer("top", 20, "How many of the slowest ops to list.", flag_values=fv)
    flags.DEFINE_multi_string("override", [], "Extra config override key=value (repeatable).", flag_values=fv)
    flags.DEFINE_string("scope", "", "Also list the op types and slowest ops of this model scope only "
                        "(one of the scopes in the table, e.g. branch, other).", flag_values=fv)
    define_verbose_flag(fv)


def _print_table(title: str, totals: Dict[str, float], steps: int, limit: int = 0) -> None:
    total = sum(totals.values())
    print(f"\n{title} (ms/step, share)")
    items = sorted(totals.items(), key=lambda kv: -kv[1])
    for key, us in items[:limit or None]:
        print(f"  {key:<90} {us / 1000 / steps:9.1f}  {100 * us / total:5.1f}%")


def main(argv: List[str]) -> int:
    """Profiles the row of the parsed flags; returns the exit code."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.benchmarks.op_profile import SCOPE_NAMES, profile_row, scope_of
    from hac_tf.benchmarks.train_step import ROWS

    if f.row not in ROWS:
        print(f"unknown row {f.row!r}; choose one of: {', '.join(ROWS)}", file=sys.stderr)
        return 2
    if f.scope and f.scope not in SCOPE_NAMES:
        print(f"unknown scope {f.scope!r}; choose one of: {', '.join(SCOPE_NAMES)}", file=sys.stderr)
        return 2
    if f.batch_size < 1 or f.profile_steps < 1:
        print("--batch_size and --profile_steps must be at least 1", file=sys.stderr)
        return 2
    from hac_tf.training.config import ConfigError

    try:
        rows = profile_row(f.row, f.batch_size, f.precision, f.profile_steps, f.override)
    except (ConfigError, ValueError) as e:  # unknown keys, out of range, inconsistent model sizes
        print(f"bad config: {e}", file=sys.stderr)
        return 2
    steps = f.profile_steps
    by_type: Dict[str, float] = collections.defaultdict(float)
    by_scope: Dict[str, float] = collections.defaultdict(float)
    by_op: Dict[str, float] = collections.defaultdict(float)
    in_scope_type: Dict[str, float] = collections.defaultdict(float)
    in_scope_op: Dict[str, float] = collections.defaultdict(float)
    for op_type, name, us in rows:
        scope = scope_of(name)
        by_type[op_type] += us
        by_scope[scope] += us
        by_op[f"{op_type} {name}"[:90]] += us
        if scope == f.scope:
            in_scope_type[op_type] += us
            in_scope_op[f"{op_type} {name}"[:90]] += us
    total_ms = sum(by_type.values()) / 1000 / steps
    print(f"{f.row} batch {f.batch_size} {f.precision}: {total_ms:.0f} ms/step of op self time "
          f"(summed over threads: up to the number of cores x the wall time)")
    _print_table("by op type", by_type, steps, 25)
    _print_table("by model scope (backward ops carry their forward op's scope)", by_scope, steps)
    _print_table(f"slowest {f.top} ops", by_op, steps, f.top)
    if f.scope:
        _print_table(f"scope {f.scope}: by op type (share of the scope)", in_scope_type, steps, 25)
        _print_table(f"scope {f.scope}: slowest {f.top} ops", in_scope_op, steps, f.top)
    return 0


def run() -> None:
    """Console script ``hac-profile-train``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
