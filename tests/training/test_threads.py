"""CPU thread plan (hac_tf/training/threads.py)."""

import json
import subprocess
import sys

import pytest

from hac_tf.training.config import ConfigError, load_config
from hac_tf.training.threads import plan_cpu_threads, resolve_cpu_threads


@pytest.mark.parametrize(
    "levels, cores, accelerators, expected",
    [
        (4, 2, 0, (1, 2)),  # the measured case: one thread per op, two levels at once
        (4, 8, 0, (2, 4)),
        (2, 16, 0, (8, 2)),
        (6, 4, 0, (1, 4)),
        (1, 2, 0, (0, 0)),  # one-level step: a single chain, TF's defaults
        (4, 1, 0, (0, 0)),
        (4, 2, 1, (0, 0)),  # GPU/TPU: host threads are not the bottleneck
    ],
)
def test_plan(levels, cores, accelerators, expected):
    assert plan_cpu_threads(levels, cores, accelerators) == expected


def test_explicit_values_override_auto_per_setting():
    assert resolve_cpu_threads(-1, -1, 4, cores=2, accelerators=0) == (1, 2)
    assert resolve_cpu_threads(0, 0, 4, cores=2, accelerators=0) == (0, 0)
    assert resolve_cpu_threads(2, -1, 4, cores=2, accelerators=0) == (2, 2)
    assert resolve_cpu_threads(-1, 3, 1, cores=2, accelerators=0) == (0, 3)
    with pytest.raises(ValueError, match="intra_op_threads"):
        resolve_cpu_threads(-2, 0, 4)


def test_config_rejects_bad_thread_counts():
    with pytest.raises(ConfigError, match="inter_op_threads"):
        load_config("configs/cfmnist_simsiam_hierarchical.yaml", ["train.inter_op_threads=-3"])


_PROBE = """
import sys
import tensorflow as tf
from hac_tf.training.threads import configure_cpu_threads
first = configure_cpu_threads({intra}, {inter}, {levels})
tf.constant(1.0) + 1.0  # TF's runtime is now initialised
second = configure_cpu_threads(0, 3, 4)  # too late: warns, changes nothing
import json
print("RESULT", json.dumps([list(first), list(second)]))
"""


@pytest.mark.parametrize("intra, inter, levels, env", [
    (-1, -1, 4, {}),  # auto: (1, 2) on a 2-core machine
    (0, 0, 4, {}),  # TF's defaults
    (-1, -1, 4, {"TF_NUM_INTRAOP_THREADS": "2"}),  # the environment wins over auto (intra only)
])
def test_configure_in_a_fresh_process(intra, inter, levels, env):
    import os

    cores = os.cpu_count() or 1
    code = _PROBE.format(intra=intra, inter=inter, levels=levels)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**{k: v for k, v in os.environ.items() if k != "TF_NUM_INTRAOP_THREADS"},
                               "TF_CPP_MIN_LOG_LEVEL": "2", **env})  # without the suite's own setting
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][0]
    first, second = (tuple(v) for v in json.loads(line[len("RESULT "):]))
    plan = plan_cpu_threads(levels, cores)
    if intra == -1:
        want = (0 if env else plan[0], plan[1])  # TF's getter reports 0 for "not set here"
    else:
        want = (0, 0)
    assert first == want
    assert second == first  # unchanged after initialisation
    assert "CPU threads not changed" in proc.stderr
