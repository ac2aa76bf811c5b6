"""The plug-in registry (hac_tf/plugins/registry.py): the plug-ins are found, not listed, in their
build and hook order; a plug-in written as one module reaches the spec (by name, round-tripping
through to_dict / from_dict and model_spec.json), the model (its layer and its level term) and the
config (its generated ``plugins.<name>`` section and its checks)."""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pytest
import tensorflow as tf
from hacplugins_helpers import TINY_AUGSELF, TINY_VIEWMAKER, build, random_batch, small_spec

from hac_tf import schema
from hac_tf.methods import ModelSpec
from hac_tf.methods.registry import all_setting_names
from hac_tf.plugins import PLUGIN_MODULES, augself, equimod, mochi, registry, viewmaker
from hac_tf.plugins.base import LevelFeatures, PluginLayer
from hac_tf.plugins.settings import check_levels, config_from_value, resolve_levels, section_values
from hac_tf.schema import ranged


def test_the_plugins_are_found_in_their_build_and_hook_order():
    assert PLUGIN_MODULES == {"mochi": mochi, "equimod": equimod, "augself": augself, "viewmaker": viewmaker}
    assert list(PLUGIN_MODULES) == list(registry.plugin_modules()) == list(registry.plugin_names())
    assert [m.ORDER for m in PLUGIN_MODULES.values()] == sorted(m.ORDER for m in PLUGIN_MODULES.values())
    names = {f.name for f in dataclasses.fields(ModelSpec)} | set(all_setting_names())
    assert not set(PLUGIN_MODULES) & names  # a plug-in is given to ModelSpec by its name


def test_register_rejects_an_incomplete_module_and_a_taken_order(monkeypatch):
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))
    half = types.ModuleType("hac_tf.plugins.half")
    half.CONFIG_CLASS, half.ORDER = object, 99
    with pytest.raises(ValueError, match="lacks SECTION_FIELDS, APPLIES_TO, applies_to"):
        registry.register(half)
    clash = _toy_module(order=mochi.ORDER)
    with pytest.raises(ValueError, match="plug-ins 'mochi' and 'toyplug' have the same ORDER 10"):
        registry.register(clash)


def test_the_plugin_fields_round_trip_as_before():
    spec = small_spec("simclr", level_depths=(1, 2), mochi=dict(num_hardest=4, num_mixed=2, num_query_mixed=1),
                      augself=TINY_AUGSELF, viewmaker=dict(TINY_VIEWMAKER, levels=(2,)))
    assert spec.plugin_names == ("mochi", "augself", "viewmaker") and spec.equimod is None
    assert spec.viewmaker.levels == (2,) and spec.augself.levels == (2,)  # resolved
    values = spec.to_dict()
    # model_spec.json keeps its keys: one per plug-in, None when off (as when they were fields)
    assert "plugins" not in values and set(PLUGIN_MODULES) <= set(values) and values["equimod"] is None
    assert values["mochi"] == spec.mochi.to_dict() and values["viewmaker"] == spec.viewmaker.to_dict()
    again = ModelSpec.from_dict(json.loads(json.dumps(values)))
    assert again == spec and again.to_dict() == values
    assert ModelSpec(**{k: v for k, v in values.items() if k != "equimod"}) == spec
    with pytest.raises(ValueError, match="ModelSpec.nope: unknown plug-in; registered: mochi, equimod"):
        ModelSpec(plugins=(("nope", {}),))


# ----------------------------------------------------------------------------- a plug-in in one module
@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """A toy plug-in: ``weight`` x the mean square of the level's depth features."""

    weight: float = ranged(0.5, 0.0, 10.0)
    levels: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        schema.check_fields("ToyConfig", self)
        object.__setattr__(self, "levels", check_levels("ToyConfig", self.levels))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ToyLayer(PluginLayer):
    def __init__(self, config: ToyConfig, **kwargs) -> None:
        super().__init__(name="toyplug", **kwargs)
        self.config = config

    def level_term(self, batch, features: LevelFeatures, training: bool) -> Optional[Tuple[tf.Tensor, Dict]]:
        if not self.has_level(features.level):
            return None
        value = tf.reduce_mean(tf.square(tf.cast(features.features, tf.float32)))
        return self.config.weight * value, {"toy_term": value}


def _toy_module(order: int = 35) -> types.ModuleType:
    module = types.ModuleType("hac_tf.plugins.toyplug")
    module.ORDER = order
    module.CONFIG_CLASS = ToyConfig
    module.SECTION_FIELDS = {}
    module.APPLIES_TO = "methods without a predictor"
    module.applies_to = lambda method: not method.has_predictor

    def resolve(value: Any, num_levels: int) -> ToyConfig:
        config = config_from_value(ToyConfig, value)
        return dataclasses.replace(config, levels=resolve_levels("ToyConfig", config.levels, num_levels, "all"))

    module.resolve = resolve
    module.from_section = lambda section, facts: ToyConfig(**section_values(section, ToyConfig))
    module.build_layer = lambda config, feature_dim, sync_bn=False: ToyLayer(config)
    return module


def test_a_plugin_in_one_module_reaches_spec_model_and_config(monkeypatch):
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))
    toy = registry.register(_toy_module())
    assert registry.plugin_names() == ("mochi", "equimod", "augself", "toyplug", "viewmaker")

    spec = small_spec("simclr", level_depths=(1, 2), toyplug=dict(weight=2.0, levels=(2,)))
    assert spec.plugin_names == ("toyplug",) and spec.toyplug == ToyConfig(2.0, (2,))
    assert ModelSpec.from_dict(spec.to_dict()) == spec and spec.to_dict()["toyplug"] == {"weight": 2.0, "levels": (2,)}
    with pytest.raises(ValueError, match=r"ModelSpec.toyplug: applies to .* \(methods without a predictor\), "
                                         r"not to method 'simsiam'"):
        small_spec("simsiam", toyplug={})

    model = build(spec)
    assert model.plugin_layers == [model.toyplug]
    batch = random_batch(np.random.default_rng(0), 2)
    loss, metrics = model.compute_loss(batch, training=False, step=tf.constant(0, tf.int64))
    plain, _ = build(small_spec("simclr", level_depths=(1, 2))).compute_loss(batch, training=False,
                                                                            step=tf.constant(0, tf.int64))
    assert "level_2/toy_term" in metrics and "level_1/toy_term" not in metrics
    np.testing.assert_allclose(float(loss), float(plain) + 2.0 * float(metrics["level_2/toy_term"]), rtol=1e-5)

    from hac_tf.training import config as config_module

    section = config_module._plugin_config_class(toy)()
    assert (section.enabled, section.weight) == (False, 0.5)
    assert config_module._plugin_config("toyplug", dataclasses.replace(section, weight=3.0), 2) == ToyConfig(3.0, (1, 2))
