"""The preemption watcher on its own: the grace-period watchdog, the default action (grace 0) and
the handler it restores. A preempted training run that resumes to the uninterrupted run's state
is in test_resume.py."""

import os
import signal
import subprocess
import sys

from hac_tf.training.preemption import PREEMPTED_EXIT_CODE, PreemptionWatcher

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
