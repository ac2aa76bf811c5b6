"""Quality benchmark (baseline vs hierarchical): the same as the console script
``hac-bench-quality`` (hac_tf/cli/bench_quality.py; the runs and the table:
hac_tf/benchmarks/quality.py). See ``python tools/bench_quality.py --help``."""

from hac_tf.cli.bench_quality import run

if __name__ == "__main__":
    run()
