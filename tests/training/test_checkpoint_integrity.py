"""Damaged checkpoints (truncated shard, flipped bytes, missing index, state file naming a missing
prefix): restore names each, moves it aside, restores the newest intact one and never continues
from garbage; a run resumed past the damage ends with the uninterrupted run's weights."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from hac_tf.training.checkpoint_integrity import (DAMAGED_DIR, DamagedCheckpointError, restore_newest_intact,
                                                  sidecar_path, verify_checkpoint)
from hac_tf.training.config import load_config
from hac_tf.training.trainer import Trainer
from tiny import tiny_overrides

OVERRIDES = tiny_overrides("model.method=simclr", "train.max_steps=6", "train.deterministic_ops=true",
                           "train.preemption_grace_seconds=0")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 6-step run (checkpoints 2, 4, 6) and its final weights; its Trainer restores the copies."""
    run_dir = tmp_path_factory.mktemp("integrity") / "run"
    trainer = Trainer(load_config(None, OVERRIDES), str(run_dir))
    trainer.train()
    return run_dir, trainer, [v.numpy() for v in trainer.model.variables]


def _copy(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    return run_dir / "checkpoints"


def _data_file(ckpt_dir, step):
    (path,) = [p for p in os.listdir(ckpt_dir) if p.startswith(f"ckpt-{step}.data-")]
    return ckpt_dir / path


def _restore_and_check(trained, ckpt_dir, expected_step, damaged_step, reason, capsys):
    trainer = trained[1]
    trainer.global_step.assign(-1)
    restored, damaged = restore_newest_intact(trainer.checkpoint, str(ckpt_dir))
    assert restored == str(ckpt_dir / f"ckpt-{expected_step}")
    assert int(trainer.global_step.numpy()) == expected_step
    assert [os.path.basename(d.prefix) for d in damaged] == [f"ckpt-{damaged_step}"]
    assert reason in damaged[0].reason, damaged[0].reason
    err = capsys.readouterr().err
    assert f"ckpt-{damaged_step} is damaged" in err and reason in err and f"resuming from {restored}" in err
    # the restored values are those of the intact checkpoint, variable for variable
    reader = tf.train.load_checkpoint(restored)
    kernels = [n for n in reader.get_variable_to_shape_map() if n.startswith("model/") and "kernel" in n]
    assert kernels
    restored_values = [v.numpy() for v in trainer.model.variables]
    trainer.checkpoint.restore(restored).assert_existing_objects_matched()
    for a, b in zip(restored_values, [v.numpy() for v in trainer.model.variables]):
        np.testing.assert_array_equal(a, b)
    # moved aside, and the state file now names the intact checkpoint
    assert tf.train.latest_checkpoint(str(ckpt_dir)) == restored
    assert not any(p.startswith(f"ckpt-{damaged_step}.") for p in os.listdir(ckpt_dir))
    return os.listdir(ckpt_dir / DAMAGED_DIR)


def test_truncated_data_shard(trained, tmp_path, capsys):
    ckpt_dir = _copy(trained, tmp_path)
    data = _data_file(ckpt_dir, 6)
    os.truncate(data, os.path.getsize(data) // 2)
    moved = _restore_and_check(trained, ckpt_dir, 4, 6, "were written (truncated or extended)", capsys)
    assert data.name in moved and "ckpt-6.index" in moved


def test_flipped_bytes_in_a_shard(trained, tmp_path, capsys):
    ckpt_dir = _copy(trained, tmp_path)
    data = _data_file(ckpt_dir, 6)
    with open(data, "r+b") as f:
        f.seek(os.path.getsize(data) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    _restore_and_check(trained, ckpt_dir, 4, 6, "does not match its sha256", capsys)


def test_missing_index_file(trained, tmp_path, capsys):
    ckpt_dir = _copy(trained, tmp_path)
    os.remove(ckpt_dir / "ckpt-6.index")
    _restore_and_check(trained, ckpt_dir, 4, 6, "index file ckpt-6.index is missing", capsys)


def test_state_file_names_a_missing_prefix(trained, tmp_path, capsys):
    ckpt_dir = _copy(trained, tmp_path)
    state = [f"ckpt-{s}" for s in (4, 6, 8)]
    tf.compat.v1.train.update_checkpoint_state(str(ckpt_dir), state[-1], all_model_checkpoint_paths=state)
    assert tf.train.get_checkpoint_state(str(ckpt_dir)).model_checkpoint_path.endswith("ckpt-8")
    _restore_and_check(trained, ckpt_dir, 6, 8, "index file ckpt-8.index is missing", capsys)


def test_flipped_bytes_without_a_checksum_file(trained, tmp_path):
    """Checkpoints written before the sidecars existed: TensorFlow's per-tensor crc32c catches it."""
    ckpt_dir = _copy(trained, tmp_path)
    prefix = str(ckpt_dir / "ckpt-6")
    os.remove(sidecar_path(prefix))
    assert verify_checkpoint(prefix) is None
    data = _data_file(ckpt_dir, 6)
    with open(data, "r+b") as f:
        f.seek(os.path.getsize(data) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert "Checksum does not match" in verify_checkpoint(prefix)


def test_every_checkpoint_damaged_is_an_error_and_nothing_is_restored(trained, tmp_path):
    ckpt_dir = _copy(trained, tmp_path)
    for step in (2, 4, 6):
        os.truncate(_data_file(ckpt_dir, step), 10)
    trainer = trained[1]
    trainer.global_step.assign(-1)
    with pytest.raises(DamagedCheckpointError, match="every checkpoint .* is damaged") as e:
        restore_newest_intact(trainer.checkpoint, str(ckpt_dir))
    assert all(f"ckpt-{s}:" in str(e.value) for s in (2, 4, 6))
    assert int(trainer.global_step.numpy()) == -1  # nothing restored
    assert not (ckpt_dir / DAMAGED_DIR).exists()  # left in place: the next start fails the same way


def test_resume_past_a_damaged_checkpoint_equals_uninterrupted(trained, tmp_path):
    ckpt_dir = _copy(trained, tmp_path)
    data = _data_file(ckpt_dir, 6)
    os.truncate(data, os.path.getsize(data) - 1)
    trainer = Trainer(load_config(None, OVERRIDES), str(ckpt_dir.parent))
    result = trainer.train()
    assert result["step"] == 6 and "loss" in result  # steps 5 and 6 ran again
    final = [v.numpy() for v in trainer.model.variables]
    assert len(final) == len(trained[2])
    for a, b in zip(final, trained[2]):
        np.testing.assert_array_equal(a, b)
    assert verify_checkpoint(str(ckpt_dir / "ckpt-6")) is None
