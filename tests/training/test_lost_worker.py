"""A lost worker of a 2-process MultiWorkerMirroredStrategy job (127.0.0.1): the other worker stops
with LostWorkerError in bounded time (no hang), and restarting both resumes from the chief's last
checkpoint and ends with the uninterrupted run's weights.

Two ways to lose worker 1 before its 4th step (after checkpoint 2): killed (``kill -9``: its
port refuses connections) and frozen (SIGSTOP: it keeps its sockets but stops sending coordination
service heartbeats, like a vanished machine; TensorFlow's heartbeat timeout, 10 s by default,
finds it). Float64, as in test_distributed.py, so the 2-worker weights equal one device's.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from tiny import tiny_overrides

#: two TF processes started twice per case (minutes on 2 cores): run by .ci/run after the suite
pytestmark = pytest.mark.multiprocess_faults

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOST_WORKER_EXIT = 6
RUNNER = r"""
import sys, numpy as np, keras
keras.config.set_floatx("float64")
keras.config.set_dtype_policy("float64")
from hac_tf.training.config import load_config
from hac_tf.training.strategy import build_strategy
from hac_tf.training.trainer import LostWorkerError, Trainer

out, kind, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
strategy = build_strategy(kind)
trainer = Trainer(load_config(None, overrides), out, strategy)
try:
    trainer.train()
except LostWorkerError as e:
    print(f"LostWorkerError: {e}", file=sys.stderr, flush=True)
    sys.exit(6)
name = "final" if kind == "default" else f"final_{strategy.cluster_resolver.task_id}"
np.savez(f"{out}/{name}.npz", *[v.numpy() for v in trainer.model.online_variables])
"""
OVERRIDES = tiny_overrides("model.method=simclr", "model.sync_bn=true", "train.max_steps=6",
                           "train.checkpoint_every_steps=2", "train.deterministic_ops=true")
BOUND_SECONDS = 180  # generous for a loaded 2-core machine; the failure is seen in ~1-15 s


def _start(out, kind, env_extra=None):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    env.pop("HAC_FAULT_AT", None)
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(out), kind, *OVERRIDES], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=420):
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"no exit within {timeout} s (hang): {err[-3000:]}")
    return proc.returncode, err


def _workers(out, fault=None):
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]}
    for s in socks:
        s.close()
    procs = []
    for i in range(2):
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        if i == 1 and fault:
            env["HAC_FAULT_AT"] = fault
        procs.append(_start(out, "multi_worker", env))
    return procs


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("lost_worker_reference")
    code, err = _finish(_start(out, "default"))
    assert code == 0, err[-3000:]
    w = np.load(out / "final.npz")
    return [w[k] for k in w.files]


@pytest.mark.parametrize("how", ["KILL", "STOP"])
def test_lost_worker_stops_the_other_and_both_resume(tmp_path, reference, how):
    out = tmp_path / "run"
    chief, worker = _workers(out, fault=f"step:4:{how}")
    try:
        code, err = _finish(chief, timeout=BOUND_SECONDS)
    finally:
        if worker.poll() is None:  # frozen: SIGKILL works on a stopped process
            worker.send_signal(signal.SIGKILL)
        worker.communicate()
    assert code == LOST_WORKER_EXIT, err[-3000:]
    assert "stopped responding after step 3" in err and "ckpt-2" in err, err[-3000:]
    assert worker.returncode == -signal.SIGKILL
    state = (out / "checkpoints" / "checkpoint").read_text()
    assert 'model_checkpoint_path: "ckpt-2"' in state  # nothing written after the loss

    chief, worker = _workers(out)
    (code0, err0), (code1, err1) = _finish(chief), _finish(worker)
    assert code0 == 0 and code1 == 0, (err0[-2000:], err1[-2000:])
    assert "step 3/6" in err0 and "step 1/6" not in err0  # resumed from checkpoint 2
    finals = []
    for i in range(2):
        w = np.load(out / f"final_{i}.npz")
        finals.append([w[k] for k in w.files])
    assert len(finals[0]) == len(reference)
    for a, b, ref in zip(finals[0], finals[1], reference):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, ref, rtol=1e-6, atol=1e-8)


def test_workers_that_restore_different_checkpoints_are_refused(tmp_path):
    """A worker that cannot see the chief's checkpoints (model_dir not shared) would train from
    another state: every worker stops with a one-line error instead."""
    steps = ["train.max_steps=2" if o.startswith("train.max_steps=") else o for o in OVERRIDES]

    def pair(dirs, overrides):
        socks = [socket.socket() for _ in range(2)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]}
        for s in socks:
            s.close()
        procs = []
        for i, out in enumerate(dirs):
            env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2",
                       TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
            env.pop("HAC_FAULT_AT", None)
            procs.append(subprocess.Popen([sys.executable, "-c", RUNNER, str(out), "multi_worker", *overrides],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return [_finish(p) for p in procs]

    dirs = [tmp_path / "chief", tmp_path / "worker"]  # not shared: the worker does not see ckpt-2
    assert [code for code, _ in pair(dirs, steps)] == [0, 0]
    results = pair(dirs, OVERRIDES)
    for code, err in results:
        assert code != 0 and "workers restored different checkpoints (steps [0, 2])" in err, err[-2000:]
