#!/usr/bin/env bash
# Sets up the environment (if needed) and runs the whole test suite, in HAC_TEST_WORKERS (default 2)
# pytest-xdist worker processes: most tests are bound by single-threaded tf.function tracing, so
# two workers use both cores (pass -n 0 to run in one process). --dist loadscope runs each test
# module on one worker, so a module-scoped fixture (a training run several tests read) is built
# once, not once per worker; --no-loadscope-reorder keeps tests/conftest.py's order, long tests
# first, so the two workers finish together.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
exec python -m pytest -q -n "${HAC_TEST_WORKERS:-2}" --dist loadscope --no-loadscope-reorder "$@"
