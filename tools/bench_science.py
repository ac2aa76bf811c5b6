"""The colour benchmark of issue 17: the same as the console script ``hac-bench-science``
(hac_tf/cli/bench_science.py). See ``python tools/bench_science.py --help`` and docs/RESULTS.md."""

from hac_tf.cli.bench_science import run

if __name__ == "__main__":
    run()
