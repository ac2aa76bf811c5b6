"""tools/profile_train.py: a real profile of a tiny train step, and its bad-flag errors."""

import os
import subprocess
import sys

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
