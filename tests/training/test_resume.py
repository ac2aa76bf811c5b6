"""An interrupted run, re-run with the same command, ends in the state of an uninterrupted run:
SIGKILLed after a checkpoint (resumes from it), or preempted with SIGTERM (finishes the step,
checkpoints it, exits 5; hac_tf/training/preemption.py). Both compare every variable of the final
checkpoint (weights, optimizer slots, MoCo's queue) with one uninterrupted run."""

import os

import numpy as np
import pytest
import tensorflow as tf

from hac_tf.training.preemption import PREEMPTED_EXIT_CODE
from tiny import run_train, tiny_overrides

# MoCo (queue + momentum encoder: the most state to resume), 6 deterministic steps, regular
# checkpoints every 4 steps (the preemption checkpoint at step 3 is not a regular one)
OVERRIDES = tiny_overrides("model.method=moco", "model.moco_queue_size=32", "train.max_steps=6",
                           "train.checkpoint_every_steps=4", "train.deterministic_ops=true")


def _tensors(prefix) -> dict:
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if not k.startswith("save_counter")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The final checkpoint's tensors of one uninterrupted run (scripts/test.sh runs a module's
    tests on one pytest-xdist worker, so it is trained once)."""
    run = tmp_path_factory.mktemp("uninterrupted")
    r = run_train(run, OVERRIDES)
    assert r.returncode == 0, r.stderr[-3000:]
    return _tensors(run / "checkpoints" / "ckpt-6")


def _assert_same_state(uninterrupted: dict, resumed: dict) -> None:
    assert uninterrupted.keys() == resumed.keys() and any("queue" in k for k in resumed)
    for key in uninterrupted:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)


@pytest.mark.long(40)
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, uninterrupted):
    run = tmp_path / "killed"
    killed = run_train(run, OVERRIDES, env_extra={"HAC_FAULT_AT": "step:5"})  # kill -9 before step 5
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])  # a real SIGKILL
    assert "step 4/6" in killed.stderr and "step 5/6" not in killed.stderr
    ckpts = sorted(os.listdir(run / "checkpoints"))
    assert any(c.startswith("ckpt-4") for c in ckpts) and not any(c.startswith("ckpt-6") for c in ckpts), ckpts

    resumed = run_train(run, OVERRIDES)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 5/6" in resumed.stderr and "step 1/6" not in resumed.stderr  # continued, not restarted
    _assert_same_state(uninterrupted, _tensors(run / "checkpoints" / "ckpt-6"))


@pytest.mark.long(40)
def test_sigterm_finishes_the_step_checkpoints_and_resume_equals_uninterrupted(tmp_path, uninterrupted):
    # SIGTERM arrives before step 3 runs (a real signal, sent by the process to itself)
    run = tmp_path / "preempted"
    pre = run_train(run, OVERRIDES, env_extra={"HAC_FAULT_AT": "step:3:TERM"})
    assert pre.returncode == PREEMPTED_EXIT_CODE, pre.stderr[-3000:]
    assert "preempted (SIGTERM): finished step 3" in pre.stderr and "ckpt-3" in pre.stderr
    ckpt_dir = run / "checkpoints"
    assert tf.train.latest_checkpoint(str(ckpt_dir)).endswith("ckpt-3")  # the step in progress was kept

    resumed = run_train(run, OVERRIDES)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 4/6" in resumed.stderr and "step 1/6" not in resumed.stderr
    _assert_same_state(uninterrupted, _tensors(ckpt_dir / "ckpt-6"))
