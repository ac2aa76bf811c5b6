"""Checkpoints written by hac_tf 0.2 (tests/fixtures/checkpoints_v0_2, made by
tests/fixtures/make_checkpoints.py) still restore with the current code and reproduce their
stored outputs: the model alone (as export does) and the whole trainer state (model, optimizer,
step, as a resumed run does)."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from hac_tf.training.config import load_config
from hac_tf.training.run_export import restore_model
from hac_tf.training.trainer import Trainer

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
sys.path.insert(0, FIXTURES)
from make_checkpoints import FIXTURE_FMNIST, NUM_LEVELS, OUT, RUNS, model_outputs  # noqa: E402


@pytest.mark.parametrize("name", sorted(RUNS))
def test_v0_2_checkpoint_restores_and_reproduces_its_outputs(name):
    run = os.path.join(OUT, name)
    model, step, changed = restore_model(load_config(os.path.join(run, "config.yaml")),
                                         os.path.join(run, "checkpoints", "ckpt-2"))
    assert step == 2 and changed > 0
    expected = np.load(os.path.join(run, "expected.npz"))
    got = model_outputs(model, NUM_LEVELS[name])
    assert sorted(got) == sorted(expected.files)
    for key in expected.files:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("name", sorted(RUNS))
def test_v0_2_trainer_state_restores_every_object(tmp_path, name):
    run = tmp_path / name
    shutil.copytree(os.path.join(OUT, name), run)
    config = load_config(str(run / "config.yaml"), [f"data.data_dir={FIXTURE_FMNIST}"])
    trainer = Trainer(config, str(run))
    assert trainer.restore() == 2  # assert_existing_objects_matched: model, optimizer(s), step
    if name.startswith("moco"):
        fill = [v for v in trainer.model.variables if v.path.endswith("/fill")]
        assert fill and all(int(v.numpy()) == 16 for v in fill)  # the queue came back full
