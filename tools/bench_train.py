"""Training-step benchmark: the same as the console script ``hac-bench-train``
(hac_tf/cli/bench_train.py; the measurement: hac_tf/benchmarks/train_step.py).
See ``python tools/bench_train.py --help`` and docs/PERFORMANCE.md."""

from hac_tf.cli.bench_train import run

if __name__ == "__main__":
    run()
