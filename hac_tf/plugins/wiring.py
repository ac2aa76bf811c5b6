"""Experiment config (``plugins`` section) -> the plug-in fields of a ModelSpec, and the source keys
the enabled plug-ins read.

Kept apart from ``hac_tf.training.builders`` so the builders only call
:func:`plugin_spec_kwargs` and :func:`source_keys`. Everything a plug-in needs from the data or the view policy (its run
facts: MoCHi's start step, EquiMod's standardisation constants, AugSelf's divisors, the
Viewmaker's levels) is worked out here, once per run, by the plug-in's own ``from_section``
(hac_tf/plugins/base.py), and saved with the run's resolved spec (``<model_dir>/model_spec.json``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

from hac_tf.plugins.base import RunFacts
from hac_tf.plugins.registry import plugin_modules


def any_enabled(config: Any) -> bool:
    return any(getattr(config.plugins, name).enabled for name in plugin_modules())


def source_keys(config: Any) -> Tuple[str, ...]:
    """Keys of the source batch, besides the view levels, that the enabled plug-ins read (their
    ``SOURCE_KEYS``, e.g. EquiMod's ``"images"``): the training pipeline keeps them."""
    keys = (k for name, module in plugin_modules().items() if getattr(config.plugins, name).enabled
            for k in getattr(module, "SOURCE_KEYS", ()))
    return tuple(dict.fromkeys(keys))


def plugin_spec_kwargs(
    config: Any,
    settings: Any,
    make_policy: Callable[[Any], Any],
    steps_per_epoch: Callable[[], int],
) -> Dict[str, Any]:
    """ModelSpec keyword arguments of the enabled plug-ins.

    Args:
      config: a validated ExperimentConfig.
      settings: its AugmentationSettings.
      make_policy: settings -> the experiment's view policy built with those settings.
      steps_per_epoch: called only when a plug-in needs it (MoCHi with start_epoch > 0).
    """
    facts = RunFacts(num_levels=len(config.model.level_depths), image_size=config.data.image_size,
                     train_seed=config.train.seed, jitter_strength=tuple(config.augment.jitter_strength),
                     settings=settings, make_policy=make_policy, steps_per_epoch=steps_per_epoch)
    return {name: module.from_section(getattr(config.plugins, name), facts)
            for name, module in plugin_modules().items() if getattr(config.plugins, name).enabled}
