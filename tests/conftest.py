"""Shared test setup: quiet TensorFlow, deterministic ops, small thread pools."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")
# scripts/test.sh runs two pytest-xdist workers on the two cores, and most tests also start
# TensorFlow processes: one compute thread per TensorFlow process keeps them from oversubscribing
# the cores (set HAC_TEST_TF_THREADS=0 for TensorFlow's default, one thread per core)
if os.environ.get("HAC_TEST_TF_THREADS", "1") != "0":
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", os.environ.get("HAC_TEST_TF_THREADS", "1"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def run_json_script(script, timeout: float = 180) -> dict:
    """Runs a check script in a fresh Python (so it can configure logical devices before TF
    initialises) and returns the JSON object on its last stdout line."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def json_script():
    """The ``run_json_script`` function, as a fixture."""
    return run_json_script


def pytest_collection_modifyitems(config, items):
    """Long tests first, longest first (``@pytest.mark.long(seconds)``, seconds measured on 2 cores).

    pytest-xdist hands tests to its workers in collection order: a long test collected last
    would run alone on one core while the other idles. The order is deterministic, as xdist
    requires of every worker's collection."""

    def expected_seconds(item) -> float:
        mark = item.get_closest_marker("long")
        return float(mark.args[0]) if mark and mark.args else 0.0

    items.sort(key=expected_seconds, reverse=True)  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _restore_op_determinism():
    """A Trainer built with ``train.deterministic_ops=true`` turns on TensorFlow's op determinism
    for the rest of the process, where stateful random ops (plain KerasCV layers) then raise:
    each test starts without it, whichever tests its worker ran before."""
    yield
    import sys

    if "tensorflow" in sys.modules:
        from tensorflow.python.framework import config as tf_config

        if tf_config.is_op_determinism_enabled():
            tf_config.disable_op_determinism()
