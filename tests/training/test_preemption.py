"""Preemption: SIGTERM during training finishes the step, checkpoints it, exits 5; re-running the
same command ends with the uninterrupted run's weights. The grace-period watchdog and the default
action (grace 0) are checked on a bare watcher."""

import os
import signal
import subprocess
import sys

import numpy as np
import tensorflow as tf

from hac_tf.training.preemption import PREEMPTED_EXIT_CODE, PreemptionWatcher
from tiny import run_train, tiny_overrides

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# checkpoints every 4 steps: the preemption checkpoint (step 3) is not a regular one
OVERRIDES = tiny_overrides("model.method=moco", "model.moco_queue_size=32", "train.max_steps=6",
                           "train.checkpoint_every_steps=4", "train.deterministic_ops=true")


def _tensors(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if not k.startswith("save_counter")}


def test_sigterm_finishes_the_step_checkpoints_and_resume_equals_uninterrupted(tmp_path):
    full = run_train(tmp_path / "full", OVERRIDES)
    assert full.returncode == 0, full.stderr[-3000:]

    # SIGTERM arrives before step 3 runs (a real signal, sent by the process to itself)
    pre = run_train(tmp_path / "pre", OVERRIDES, env_extra={"HAC_FAULT_AT": "step:3:TERM"})
    assert pre.returncode == PREEMPTED_EXIT_CODE, pre.stderr[-3000:]
    assert "preempted (SIGTERM): finished step 3" in pre.stderr and "ckpt-3" in pre.stderr
    ckpt_dir = tmp_path / "pre" / "checkpoints"
    assert tf.train.latest_checkpoint(str(ckpt_dir)).endswith("ckpt-3")  # the step in progress was kept

    resumed = run_train(tmp_path / "pre", OVERRIDES)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 4/6" in resumed.stderr and "step 1/6" not in resumed.stderr
    a, b = _tensors(tmp_path / "full" / "checkpoints" / "ckpt-6"), _tensors(ckpt_dir / "ckpt-6")
    assert a.keys() == b.keys() and any("queue" in k for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


WATCHER = r"""
import os, signal, sys, time
from hac_tf.training.preemption import PreemptionWatcher
watcher = PreemptionWatcher(float(sys.argv[1]), lambda: "ckpt-7").start()
os.kill(os.getpid(), signal.SIGTERM)
print("requested", watcher.requested, flush=True)
time.sleep(300)  # a step or checkpoint write that never ends
"""


def _watcher(grace):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-c", WATCHER, str(grace)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_grace_period_watchdog_exits_with_the_preemption_code():
    r = _watcher(1)
    assert r.returncode == PREEMPTED_EXIT_CODE
    assert r.stdout.strip() == "requested True"
    assert "grace period (train.preemption_grace_seconds=1) ran out" in r.stderr and "ckpt-7" in r.stderr


def test_grace_zero_keeps_the_default_action():
    r = _watcher(0)
    assert r.returncode == -signal.SIGTERM and r.stdout == ""


def test_stop_restores_the_previous_handler():
    before = signal.getsignal(signal.SIGTERM)
    watcher = PreemptionWatcher(30).start()
    assert signal.getsignal(signal.SIGTERM) != before and not watcher.requested
    watcher.stop()
    assert signal.getsignal(signal.SIGTERM) == before
