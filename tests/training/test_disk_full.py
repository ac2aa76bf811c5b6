"""A checkpoint that cannot be written for lack of space stops training with exit code 4, a
clear message, the partial files removed and the previous checkpoint intact; after space is
freed, re-running the same command resumes from it. Real ENOSPC (small tmpfs, when this process
may mount one) and real EFBIG (RLIMIT_FSIZE, always)."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from disk_space import can_mount_tmpfs, file_size_limit, fill, small_tmpfs, tree_sizes
from tiny import run_train, tiny_overrides

OVERRIDES = tiny_overrides("model.method=simclr", "train.checkpoint_every_steps=2",
                           "train.image_summary_every_steps=0")
pytestmark = pytest.mark.long(45)


def _train(model_dir, steps, preexec_fn=None):
    return run_train(model_dir, OVERRIDES + [f"train.max_steps={steps}"], preexec_fn=preexec_fn)


def _checkpoint_values(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def _check_failed_save_kept_previous(run, r, before_files, before_values):
    assert r.returncode == 4, (r.returncode, r.stderr[-3000:])
    assert "checkpoint at step 4 could not be written" in r.stderr, r.stderr[-3000:]
    assert "ckpt-2" in r.stderr and "is intact" in r.stderr and "Traceback" not in r.stderr
    ckpt_dir = os.path.join(run, "checkpoints")
    assert tf.train.latest_checkpoint(ckpt_dir).endswith("ckpt-2")
    leftovers = [f for f in os.listdir(ckpt_dir) if f.startswith("ckpt-4")]
    assert leftovers == [], leftovers
    assert tree_sizes(ckpt_dir) == before_files
    after = _checkpoint_values(os.path.join(ckpt_dir, "ckpt-2"))
    assert after.keys() == before_values.keys()
    for k, v in before_values.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    """A run trained for 2 steps (``checkpoints/ckpt-2``); each test copies it where it needs it
    (scripts/test.sh runs a module's tests on one pytest-xdist worker, so it is trained once)."""
    run = str(tmp_path_factory.mktemp("two_steps") / "run")
    r = _train(run, 2)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


def _resume_and_finish(run):
    r = _train(run, 4)
    assert r.returncode == 0, r.stderr[-3000:]
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith("ckpt-4")


def test_checkpoint_on_a_full_disk_keeps_the_previous_one(tmp_path, two_step_run):
    if not can_mount_tmpfs(str(tmp_path / "probe")):
        pytest.skip("cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN); the RLIMIT_FSIZE test covers it")
    with small_tmpfs(str(tmp_path / "disk"), size_mb=64) as disk:
        run = shutil.copytree(two_step_run, os.path.join(disk, "run"))
        ckpt_dir = os.path.join(run, "checkpoints")
        before_files = tree_sizes(ckpt_dir)
        before_values = _checkpoint_values(os.path.join(ckpt_dir, "ckpt-2"))
        filler = fill(disk, slack=64 * 1024)
        r = _train(run, 4)
        assert "No space left on device" in r.stderr, r.stderr[-3000:]
        _check_failed_save_kept_previous(run, r, before_files, before_values)
        os.remove(filler)
        _resume_and_finish(run)


def test_checkpoint_past_the_file_size_limit_keeps_the_previous_one(tmp_path, two_step_run):
    run = shutil.copytree(two_step_run, str(tmp_path / "run"))
    ckpt_dir = os.path.join(run, "checkpoints")
    before_files = tree_sizes(ckpt_dir)
    before_values = _checkpoint_values(os.path.join(ckpt_dir, "ckpt-2"))
    data_size = max(os.path.getsize(os.path.join(ckpt_dir, f)) for f in os.listdir(ckpt_dir))
    # logs and the small index still fit, the checkpoint's data file does not
    r = _train(run, 4, preexec_fn=file_size_limit(min(data_size // 2, 256 * 1024)))
    _check_failed_save_kept_previous(run, r, before_files, before_values)
    _resume_and_finish(run)
