"""View-pipeline benchmark: the same as the console script ``hac-bench-augment``
(hac_tf/cli/bench_augment.py; the measurement: hac_tf/benchmarks/view_pipeline.py).
See ``python tools/bench_augment.py --help``."""

from hac_tf.cli.bench_augment import run

if __name__ == "__main__":
    run()
