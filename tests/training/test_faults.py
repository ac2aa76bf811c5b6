"""Non-finite losses stop training with a clear message and leave the last good checkpoint intact;
bad data directories give clear errors."""

import os

import numpy as np
import tensorflow as tf

from tiny import run_train, tiny_overrides



def _train(model_dir, overrides, env_extra=None):
    return run_train(model_dir, overrides, env_extra=env_extra)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    r = _train(tmp_path / "run", tiny_overrides("model.method=simclr", "train.max_steps=8"),
               {"HAC_TF_NAN_AT_STEP": "5"})
    assert r.returncode == 3, r.stderr[-3000:]
    assert "non-finite loss/gradient" in r.stderr and "at step 5" in r.stderr
    assert "ckpt-4" in r.stderr  # names the last good checkpoint
    ckpts = os.listdir(tmp_path / "run" / "checkpoints")
    assert not any(c.startswith("ckpt-6") for c in ckpts)
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints" / "ckpt-4"))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all(), name


def test_training_on_an_empty_image_folder_is_a_clear_error(tmp_path):
    root = tmp_path / "images"
    (root / "cats").mkdir(parents=True)
    r = _train(tmp_path / "run", tiny_overrides("data.source=image_folder", f"data.data_dir={root}",
                                                "data.label_keys=[label]", "data.knn_label=label"))
    assert r.returncode == 1, r.stderr[-2000:]
    assert "error:" in r.stderr and "Traceback" not in r.stderr


def test_dataset_smaller_than_a_batch_is_a_clear_error(tmp_path):
    r = _train(tmp_path / "run", tiny_overrides("data.max_train_examples=8", "data.batch_size=16"))
    assert r.returncode == 1
    assert "fewer than one batch" in r.stderr
