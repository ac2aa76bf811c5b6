"""VICReg as a base method: its loss on the level's projections, its heads and settings, the
plug-ins its traits admit, and its config keys."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hacmethods_helpers import random_batch, small_spec

from hac_tf.losses.vicreg import vicreg_loss
from hac_tf.methods import HierarchicalContrastiveModel, ModelSpec, PairOutputs, method_class


def test_level_loss_is_the_weighted_vicreg_loss_and_reports_its_terms():
    spec = ModelSpec(method="vicreg", vicreg_sim_coeff=5.0, vicreg_std_coeff=2.0, vicreg_cov_coeff=0.5)
    method = method_class("vicreg")(spec)
    rng = np.random.default_rng(0)
    z_a = tf.constant(rng.normal(size=(6, 8)).astype(np.float32))
    z_b = tf.constant(rng.normal(size=(6, 8)).astype(np.float32))
    loss, metrics = method.level_loss(0, PairOutputs(z_a, z_b), None)
    np.testing.assert_allclose(float(loss), float(vicreg_loss(z_a, z_b, 5.0, 2.0, 0.5)), rtol=1e-6)
    terms = [float(metrics[k]) for k in ("vicreg_invariance", "vicreg_variance", "vicreg_covariance")]
    np.testing.assert_allclose(5.0 * terms[0] + 2.0 * terms[1] + 0.5 * terms[2], float(loss), rtol=1e-6)


def test_heads_and_settings():
    spec = ModelSpec(method="vicreg")
    assert spec.projector == dict(hidden_dim=8192, out_dim=8192, num_layers=3, hidden_bn=True, last_bn=False,
                                  hidden_bias=True, last_bias=False)
    assert spec.predictor is None and not spec.has_target
    settings = spec.method_settings
    assert (settings.vicreg_sim_coeff, settings.vicreg_std_coeff, settings.vicreg_cov_coeff) == (25.0, 25.0, 1.0)
    assert ModelSpec(method="vicreg", vicreg_std_coeff=0.0, vicreg_cov_coeff=0.0).setting("vicreg_std_coeff") == 0.0
    with pytest.raises(ValueError, match=r"ModelSpec.vicreg_sim_coeff: must be in \(0.0, 1000.0\]"):
        ModelSpec(method="vicreg", vicreg_sim_coeff=0.0)
    with pytest.raises(ValueError, match="ModelSpec.vicreg_cov_coeff: is a setting of vicreg, not of method 'barlow'"):
        ModelSpec(method="barlow", vicreg_cov_coeff=1.0)
    with pytest.raises(ValueError, match="ModelSpec.predictor_hidden_dim: method 'vicreg' has no predictor"):
        ModelSpec(method="vicreg", predictor_hidden_dim=16)


def test_plugins_follow_from_the_traits():
    keras.utils.set_random_seed(0)
    spec = small_spec("vicreg", level_depths=(1, 4), augself=dict(hidden_dim=16),
                      viewmaker=dict(base_channels=4, num_res_blocks=1, levels=(2,)))
    assert spec.plugin_names == ("augself", "viewmaker")
    loss, metrics = HierarchicalContrastiveModel(spec).compute_loss(random_batch(np.random.default_rng(1), 2))
    assert np.isfinite(float(loss)) and "level_2/vicreg_variance" in metrics
    with pytest.raises(ValueError, match="ModelSpec.mochi: applies to moco, simclr"):
        ModelSpec(method="vicreg", mochi={})
    with pytest.raises(ValueError, match="ModelSpec.equimod: applies to byol, simclr"):
        ModelSpec(method="vicreg", equimod={})


def test_config_keys_reach_the_spec():
    from hac_tf.training.builders import model_spec_kwargs
    from hac_tf.training.config import ConfigError, load_config

    config = load_config("cfmnist_vicreg_hierarchical", ["model.vicreg_std_coeff=12.5", "model.vicreg_cov_coeff=0"])
    spec = ModelSpec(**model_spec_kwargs(config))
    assert spec.method == "vicreg" and spec.projector["out_dim"] == 512 and spec.level_depths == (1, 2, 3, 4)
    assert (spec.setting("vicreg_sim_coeff"), spec.setting("vicreg_std_coeff"), spec.setting("vicreg_cov_coeff")) \
        == (25.0, 12.5, 0.0)
    with pytest.raises(ConfigError, match="vicreg_std_coeff"):
        load_config("cfmnist_vicreg_baseline", ["model.vicreg_std_coeff=-1"])
