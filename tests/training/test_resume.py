"""A run SIGKILLed after a checkpoint and restarted ends with the weights of an uninterrupted run."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tiny import tiny_overrides

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RUNNER = r"""
import sys, numpy as np, tensorflow as tf
from hac_tf.training.config import load_config
from hac_tf.training.trainer import Trainer
config = load_config(None, sys.argv[2:])
trainer = Trainer(config, sys.argv[1])
trainer.train()
np.savez(sys.argv[1] + "/final.npz", *[v.numpy() for v in trainer.model.variables])
"""


def run(model_dir, overrides, kill_after=0):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    if kill_after:  # kill -9 before step kill_after + 1, i.e. after step kill_after and its checkpoint
        env["HAC_FAULT_AT"] = f"step:{kill_after + 1}"
    return subprocess.run([sys.executable, "-c", RUNNER, str(model_dir), *overrides], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("method", ["moco"])  # queue + momentum encoder: the most state to resume
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, method):
    overrides = tiny_overrides(f"model.method={method}", "train.max_steps=6", "train.deterministic_ops=true",
                               "model.moco_queue_size=32")
    full = run(tmp_path / "full", overrides)
    assert full.returncode == 0, full.stderr[-3000:]

    killed = run(tmp_path / "resumed", overrides, kill_after=4)
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])  # a real SIGKILL
    assert not (tmp_path / "resumed" / "final.npz").exists()
    ckpts = sorted(os.listdir(tmp_path / "resumed" / "checkpoints"))
    assert any(c.startswith("ckpt-4") for c in ckpts), ckpts
    resumed = run(tmp_path / "resumed", overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 5/6" in resumed.stderr and "step 1/6" not in resumed.stderr  # continued, not restarted

    a = np.load(tmp_path / "full" / "final.npz")
    b = np.load(tmp_path / "resumed" / "final.npz")
    assert len(a.files) == len(b.files)
    for key in a.files:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
