"""The one training loop under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy
(2 worker processes on 127.0.0.1): same loss and weights as one device on the same global batch.

The comparison runs the model in float64: in float32 a few ReLU inputs sit within rounding
distance of 0, so splitting the batch (which changes the rounding) flips them and moves some
gradients by a few percent -- on one device, perturbing the images by 1e-6 does the same. In
float64 the distributed and single-device runs agree to ~1e-8 (losses are computed in float32).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tiny import tiny_overrides

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RUNNER = r"""
import json, sys, numpy as np, tensorflow as tf, keras
keras.config.set_floatx("float64")
keras.config.set_dtype_policy("float64")
from hac_tf.training.config import load_config
from hac_tf.training.strategy import build_strategy
from hac_tf.training.trainer import Trainer
out, kind, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
strategy = build_strategy(kind, num_logical_cpus=2 if kind == "mirrored" else 0)
config = load_config(None, overrides)
trainer = Trainer(config, out, strategy)
result = trainer.train()
np.savez(out + "/final.npz", *[v.numpy() for v in trainer.model.online_variables])
json.dump({"loss": result["loss"], "replicas": strategy.num_replicas_in_sync}, open(out + "/result.json", "w"))
"""

OVERRIDES = tiny_overrides("model.method=simclr", "model.sync_bn=true", "train.max_steps=3",
                           "train.checkpoint_every_steps=3", "train.deterministic_ops=true")


def _run(out, kind, env_extra=None):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(out), kind, *OVERRIDES], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc, timeout=420):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"timed out: {err[-3000:]}")
    assert proc.returncode == 0, err[-4000:]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _load(d):
    w = np.load(d / "final.npz")
    return [w[k] for k in w.files], json.load(open(d / "result.json"))


@pytest.mark.long(130)
def test_mirrored_and_multi_worker_match_single_device(tmp_path):
    single = _run(tmp_path / "single", "default")
    _wait(single)
    mirrored = _run(tmp_path / "mirrored", "mirrored")
    _wait(mirrored)

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        workers.append(_run(tmp_path / f"mw{i}", "multi_worker", {"TF_CONFIG": tf_config}))
    for w in workers:
        _wait(w)

    w_single, r_single = _load(tmp_path / "single")
    w_mirrored, r_mirrored = _load(tmp_path / "mirrored")
    w_mw, r_mw = _load(tmp_path / "mw0")
    w_mw1, _ = _load(tmp_path / "mw1")
    for a, b in zip(w_mw, w_mw1):  # both workers end with identical weights
        np.testing.assert_array_equal(a, b)
    assert r_mirrored["replicas"] == 2 and r_mw["replicas"] == 2
    np.testing.assert_allclose(r_mirrored["loss"], r_single["loss"], rtol=1e-6)
    np.testing.assert_allclose(r_mw["loss"], r_single["loss"], rtol=1e-6)
    for a, b, c in zip(w_single, w_mirrored, w_mw):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(c, a, rtol=1e-6, atol=1e-8)
