"""Run facts are worked out once: a run saves its resolved model spec (<model_dir>/model_spec.json,
with EquiMod's standardisation constants and MoCHi's start step), and export rebuilds the model
from it with the training data gone and the augmentation policy never sampled again."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from hac_tf.methods import ModelSpec
from hac_tf.methods.spec import MODEL_SPEC_FILE
from hac_tf.training import builders
from hac_tf.training.config import load_config
from hac_tf.training.run_export import export_run, rebuild_run_model
from hac_tf.training.trainer import Trainer

FIXTURE_FMNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                              "fashion_mnist")


def _overrides(data_dir) -> list:
    return [
        f"data.data_dir={data_dir}", "data.batch_size=16", "data.shuffle_buffer=64", "data.image_size=16",
        "augment.num_levels=2", "model.level_depths=[1,2]", "model.width_multiplier=0.0625", "model.embed_dim=4",
        "model.projector_hidden_dim=8", "model.projector_out_dim=8", "model.method=simclr",
        "plugins.equimod.enabled=true", "plugins.equimod.hidden_dim=8", "plugins.equimod.out_dim=8",
        "plugins.equimod.param_dim=4", "plugins.equimod.std_samples=64", "plugins.mochi.enabled=true",
        "plugins.mochi.num_hardest=4", "plugins.mochi.num_mixed=2", "plugins.mochi.num_query_mixed=1",
        "plugins.mochi.start_epoch=1.5", "train.max_steps=2", "train.checkpoint_every_steps=2",
        "train.log_every_steps=1", "export.enabled=false",
    ]


def test_export_rebuilds_the_model_from_the_saved_spec_without_the_data(tmp_path, monkeypatch, caplog):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE_FMNIST, data)
    run = tmp_path / "run"
    config = load_config(None, _overrides(data))
    trainer = Trainer(config, str(run))
    trainer.train()
    saved = ModelSpec.load(str(run / MODEL_SPEC_FILE))
    assert saved == trainer.model.spec
    assert saved.equimod.param_mean is not None and len(saved.equimod.param_std) == 1  # the last level
    assert saved.mochi.start_step == round(1.5 * trainer.steps_per_epoch) == 6  # 64 images // 16

    shutil.rmtree(data)  # the data is gone, and sampling the view policy again would fail the test

    def no_sampling(*args, **kwargs):
        raise AssertionError("the view policy was sampled again")

    monkeypatch.setattr("hac_tf.plugins.equimod.sample_param_statistics", no_sampling)
    assert rebuild_run_model(str(run)).spec == saved
    version_dir = export_run(str(run), export_dir=str(tmp_path / "export" / "run"), warmup=False)
    assert os.path.isdir(version_dir)

    # a resumed run (it has a checkpoint) trains on with the saved spec, not a re-resolved one, and
    # a warning names the model keys the config changed since
    assert builders.run_model(config, str(run), steps_per_epoch=1, write=False).spec == saved
    changed = load_config(str(run / "config.yaml"), ["model.embed_dim=8", "plugins.mochi.num_mixed=3"])
    with caplog.at_level(logging.WARNING):
        assert builders.run_model(changed, str(run), write=False).spec == saved
    assert "differs in model.embed_dim, plugins.mochi.num_mixed, which is ignored" in caplog.text


def test_a_run_without_a_checkpoint_resolves_and_saves_its_spec(tmp_path):
    config = load_config(None, _overrides(FIXTURE_FMNIST) + ["plugins.equimod.enabled=false"])
    model = builders.run_model(config, str(tmp_path), steps_per_epoch=4)
    assert ModelSpec.load(str(tmp_path / MODEL_SPEC_FILE)) == model.spec
    assert model.spec.mochi.start_step == 6  # 1.5 epochs of 4 steps
    (tmp_path / MODEL_SPEC_FILE).write_text("[1, 2]")
    again = builders.run_model(config, str(tmp_path), steps_per_epoch=2)  # no checkpoint: resolved anew
    assert again.spec.mochi.start_step == 3
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    (tmp_path / "checkpoints" / "ckpt-1.index").write_text("")
    (tmp_path / MODEL_SPEC_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="model_spec.json does not hold a valid model spec"):
        builders.run_model(config, str(tmp_path), steps_per_epoch=2)
