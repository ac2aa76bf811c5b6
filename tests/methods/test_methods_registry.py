"""The method registry: every list of method names is derived from the registered classes, and a
method defined in one class (with its settings) is usable by the spec, the model and the config."""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import keras
import numpy as np
import pytest
import tensorflow as tf
from hacmethods_helpers import random_batch

from hac_tf.losses import negative_cosine
from hac_tf.methods import (
    METHOD_NAMES,
    HierarchicalContrastiveModel,
    Method,
    MethodSettings,
    ModelSpec,
    PairOutputs,
    method_class,
    method_names,
    register,
    registry,
)
from hac_tf.plugins import equimod, mochi, viewmaker
from hac_tf.schema import ranged


def test_names_and_traits_come_from_the_classes():
    assert METHOD_NAMES == ("barlow", "byol", "moco", "simclr", "simsiam", "vicreg") == method_names()
    assert method_names(lambda m: m.has_predictor) == ("byol", "simsiam")
    assert method_names(lambda m: m.target_kind is not None) == ("byol", "moco")
    assert method_names(lambda m: m.has_queue) == ("moco",)
    assert method_names(mochi.applies_to) == ("moco", "simclr")
    assert method_names(equimod.applies_to) == ("byol", "simclr")
    assert method_names(viewmaker.applies_to) == ("barlow", "byol", "simclr", "simsiam", "vicreg")
    assert registry.setting_owners("temperature") == ("moco", "simclr")
    assert method_class("moco").settings_class().moco_queue_size == 4096
    with pytest.raises(ValueError, match="unknown method 'nope'; allowed: barlow, byol"):
        method_class("nope")


def test_every_registered_class_is_exported_by_its_class_name():
    import hac_tf.methods as methods

    for name in METHOD_NAMES:
        cls = method_class(name)
        assert getattr(methods, cls.__name__) is cls and cls.__name__ in methods.__all__, name
    assert methods.VICReg is method_class("vicreg") and methods.BarlowTwins is method_class("barlow")
    assert all(hasattr(methods, name) for name in methods.__all__)


def test_register_rejects_an_inconsistent_class():
    class NoHead(Method):
        name_ = "nohead"

    with pytest.raises(ValueError, match="projector_defaults is empty"):
        register(NoHead)

    class PredictorWithoutWidth(Method):
        name_ = "pww"
        has_predictor = True
        projector_defaults = dict(hidden_dim=8, out_dim=8, num_layers=2)

    with pytest.raises(ValueError, match="predictor_hidden_default"):
        register(PredictorWithoutWidth)


@dataclasses.dataclass(frozen=True)
class _ToySettings(MethodSettings):
    toy_scale: float = ranged(2.0, 0.0, 10.0, lo_inclusive=False)


class _Toy(Method):
    """A sixth method in one class: scaled negative cosine between the two projections."""

    name_ = "toy"
    projector_defaults = dict(hidden_dim=16, out_dim=8, num_layers=2, hidden_bn=True, last_bn=False,
                              hidden_bias=True, last_bias=True)
    settings_class = _ToySettings

    def level_loss(self, level: int, online: PairOutputs, target: Optional[PairOutputs], training: bool = True,
                   step: Optional[tf.Tensor] = None) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        return self.settings.toy_scale * negative_cosine(online.z_a, online.z_b), {}


def test_a_method_in_one_class_reaches_spec_model_and_config(monkeypatch):
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    register(_Toy)
    assert "toy" in method_names() and registry.setting_owners("toy_scale") == ("toy",)

    spec = ModelSpec(method="toy", width_multiplier=0.125, level_depths=(1, 4), embed_dim=4, toy_scale=3.0)
    assert spec.setting("toy_scale") == 3.0 and spec.projector["out_dim"] == 8
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match=r"ModelSpec.toy_scale: must be in \(0.0, 10.0\]"):
        ModelSpec(method="toy", toy_scale=0.0)
    with pytest.raises(ValueError, match="ModelSpec.toy_scale: is a setting of toy, not of method 'simclr'"):
        ModelSpec(method="simclr", toy_scale=1.0)

    keras.utils.set_random_seed(0)
    model = HierarchicalContrastiveModel(spec)
    loss, metrics = model.compute_loss(random_batch(np.random.default_rng(0), 2))
    assert np.isfinite(float(loss)) and set(metrics) >= {"level_1/loss", "level_2/loss"}

    from hac_tf.training import config

    generated = {f.name: f for f in dataclasses.fields(config._model_config_class())}
    assert generated["toy_scale"].default == 2.0  # its setting is a model.<key> of the config
    assert "toy" in config.schema.rule_of(generated["method"]).values
