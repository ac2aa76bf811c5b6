"""hac_tf/benchmarks/op_profile.py through hac-profile-train (tools/profile_train.py, a
subprocess): a real profile of a tiny train step, and its bad-flag errors; scope_of on op names."""

import os
import subprocess
import sys

from hac_tf.benchmarks.op_profile import SCOPE_NAMES, scope_of
from tests.training.tiny import REPO, TINY


def _run(*flags):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, f"{REPO}/tools/profile_train.py", *flags], capture_output=True,
                          text=True, env=env, timeout=600)


def test_profile_prints_op_types_scopes_and_slowest_ops():
    proc = _run("--row=cpu_default", "--batch_size=8", "--profile_steps=1", "--top=5", "--scope=stage1",
                *[f"--override={o}" for o in TINY], "--override=model.loss_weights=[1.0,1.0]",
                "--override=model.predictor_hidden_dim=16", "--override=model.predictor_out_dim=16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "by op type" in out and "by model scope" in out and "slowest 5 ops" in out
    assert "Conv2D" in out  # the backbone's convolutions were profiled
    assert "stage1" in out and "projector" in out
    scoped = out[out.index("scope stage1: by op type"):]
    assert "scope stage1: slowest 5 ops" in scoped and "Conv2D" in scoped
    ops = scoped[scoped.index("scope stage1: slowest 5 ops"):].splitlines()[1:]
    assert ops and all("stage1" in line for line in ops if line.strip())


def test_profile_rejects_unknown_rows_and_bad_sizes():
    proc = _run("--row=no_such_row")
    assert proc.returncode == 2 and "unknown row 'no_such_row'" in proc.stderr
    proc = _run("--row=cpu_default", "--scope=no_such_scope")
    assert proc.returncode == 2 and "unknown scope 'no_such_scope'" in proc.stderr and "branch" in proc.stderr
    proc = _run("--row=cpu_default", "--batch_size=0")
    assert proc.returncode == 2 and "at least 1" in proc.stderr
    proc = _run("--row=cpu_default", "--override=model.no_such_key=1")
    assert proc.returncode == 2 and "bad config" in proc.stderr and "no_such_key" in proc.stderr


def test_scope_of_op_names():
    assert scope_of("resnet18/stem_conv1/Conv2D") == "stem"
    assert scope_of("gradient_tape/model/stage3_block1_conv2/Conv2DBackpropFilter") == "stage3"
    assert scope_of("branch_2/dense/MatMul") == "branch"
    assert scope_of("branch_2_stage4_block0/Relu") == "stage4"  # the stages are matched before "branch"
    assert scope_of("SGD/update_3/ResourceApplyKerasMomentum") == "optimizer"
    assert scope_of("projector_dense_1/MatMul") == "projector"
    assert scope_of("MatMul_7") == "other"
    assert scope_of("rstage1x") == "other"  # a scope name must start a path element or follow "_"
    assert set(SCOPE_NAMES) == {"stem", "stage1", "stage2", "stage3", "stage4", "branch", "embedding",
                                "projector", "predictor", "optimizer", "loss", "other"}
