"""Benchmark: source images/s of the view pipelines through tf.data.

Prints, for each image size, the throughput of
  * the recording add-one pipeline (all 2L views + recorded parameters), and
  * the same classical augmentations built from plain KerasCV layers, two views, no recording,
and the views/s of each, so the cost per view produced can be compared
(hac_tf/benchmarks/view_pipeline.py).

  hac-bench-augment                       # sizes 32, 96, 224 (224 from 256x256 sources)
  hac-bench-augment --sizes=32 --seconds=20 --batch_size=512
  hac-bench-augment --source_size=256     # every view size cut from 256 px sources
Exit codes: 0 done; 2 a bad size or source size.
"""

from __future__ import annotations

import os
import sys
from typing import List

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-bench-augment (same as tools/bench_augment.py)."""
    fv = flag_values
    flags.DEFINE_list("sizes", ["32", "96", "224"], "View sizes to benchmark.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 256, "Source images per batch.", flag_values=fv)
    flags.DEFINE_float("seconds", 8.0, "Measured seconds per row (after warm-up).", flag_values=fv)
    flags.DEFINE_integer("num_levels", 4, "Add-one levels (2 views each).", flag_values=fv)
    flags.DEFINE_string("source_size", "match", "Side of the source images: 'match' (sources of the view size, "
                        "256 px for 224 px views) or a number of pixels for every view size (e.g. 256).",
                        flag_values=fv)
    flags.DEFINE_bool("plain_kerascv", True, "Also measure the plain KerasCV two-view pipeline.", flag_values=fv)
    define_verbose_flag(fv)


def main(argv: List[str]) -> int:
    """Measures the pipelines of the parsed flags; returns the exit code."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    try:
        sizes = [int(s) for s in f.sizes]
    except ValueError:
        print(f"error: --sizes={','.join(f.sizes)} must be integers", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 1:
        print(f"error: --sizes={','.join(f.sizes)}: give at least one size, every size positive", file=sys.stderr)
        return 2
    source_size = 0 if f.source_size == "match" else (int(f.source_size) if f.source_size.isdigit() else -1)
    if source_size < 0 or f.source_size == "0":
        print(f"error: --source_size={f.source_size} must be 'match' or a positive number of pixels", file=sys.stderr)
        return 2
    import tensorflow as tf

    from hac_tf.benchmarks.view_pipeline import (add_one_view_dataset, images_per_second, plain_kerascv_dataset,
                                                 source_side)

    print(f"cores={os.cpu_count()} tf={tf.__version__} batch={f.batch_size} "
          f"levels={f.num_levels} ({2 * f.num_levels} views/source image)")
    header = f"{'px':>5} {'source':>7} | {'recording add-one src/s':>24} {'views/s':>9} | " \
             f"{'plain KerasCV 2-view src/s':>27} {'views/s':>9} | {'per-view speed-up':>17}"
    print(header)
    print("-" * len(header))
    views = 2 * f.num_levels
    for size in sizes:
        ours = images_per_second(add_one_view_dataset(size, f.batch_size, f.num_levels, source_size), f.batch_size,
                                 f.seconds)
        row = f"{size:>5} {source_side(size, source_size):>7} | {ours:>24.0f} {ours * views:>9.0f} | "
        if f.plain_kerascv:
            plain = images_per_second(plain_kerascv_dataset(size, f.batch_size, source_size), f.batch_size,
                                      f.seconds)
            row += f"{plain:>27.0f} {plain * 2:>9.0f} | {ours * views / (plain * 2):>16.2f}x"
        print(row, flush=True)
    return 0


def run() -> None:
    """Console script ``hac-bench-augment``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
