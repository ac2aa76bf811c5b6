"""Quality benchmark: baseline vs hierarchical pretraining at the same budget and seed.

For each method, trains the baseline (one depth, classical two views, no embedding) and the
hierarchical variant (add-one views, 4 depths, colour embeddings) from the shipped configs
cfmnist_<method>_<variant>, then prints garment and colour linear-probe accuracy per stage and kNN
accuracy, next to a random-init backbone of the same architecture (hac_tf/benchmarks/quality.py).
This is an experiment, not a test: the configs, data and probe are the shipped ones, untuned for
this comparison; docs/PERFORMANCE.md has the figures and their run time.

  hac-bench-quality                                                  # simclr + simsiam
  hac-bench-quality --methods=simclr --params_override=train.max_steps=100   # quick look
Exit codes: 0 done; 2 a bad config (unknown method or variant, bad override; nothing trained).
"""

from __future__ import annotations

import sys
from typing import List

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-bench-quality (same as tools/bench_quality.py)."""
    fv = flag_values
    flags.DEFINE_list("methods", ["simclr", "simsiam"], "Base methods to compare.", flag_values=fv)
    flags.DEFINE_list("variants", ["baseline", "hierarchical"], "Config variants.", flag_values=fv)
    flags.DEFINE_string("out_dir", "runs/bench_quality", "Where runs and the summary go (runs resume).",
                        flag_values=fv)
    flags.DEFINE_multi_string("params_override", [], "Overrides applied to every run (same budget for all).",
                              flag_values=fv)
    define_verbose_flag(fv)


def main(argv: List[str]) -> int:
    """Runs the benchmark of the parsed flags; returns the exit code."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.benchmarks.quality import quality_table, run_quality_benchmark
    from hac_tf.training.config import ConfigError

    try:
        summary = run_quality_benchmark(f.methods, f.variants, f.out_dir, f.params_override)
    except ConfigError as e:
        print(f"ConfigError: {e}", file=sys.stderr)
        return 2
    print(quality_table(summary))
    return 0


def run() -> None:
    """Console script ``hac-bench-quality``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
