"""Experiment config (``plugins`` section) -> the plug-in fields of a ModelSpec.

Kept apart from ``hac_tf.training.builders`` so the builders only call
:func:`plugin_spec_kwargs`. Everything that depends on the data or the view policy is computed
here, once, at build time:

* MoCHi: ``start_epoch`` -> a start step (needs the steps per epoch).
* EquiMod: the levels (default: the last), the standardisation constants of the parameter vector,
  estimated by sampling the experiment's own view policy (same groups and strengths, tiny view
  size: recorded parameters do not depend on the view size or the image content).
* AugSelf: the colour divisors 2 x jitter strength and the blur divisor (max sigma).
* Viewmaker: its levels = the view levels whose groups include ``viewmaker``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict

from hac_tf.plugins.augself import AugSelfConfig, colour_scale_from_strength
from hac_tf.plugins.settings import section_values
from hac_tf.plugins.equimod import EquiModConfig, sample_param_statistics
from hac_tf.plugins.mochi import mochi_from_section
from hac_tf.plugins.viewmaker import ViewmakerConfig

#: source side used when sampling the policy for EquiMod's constants (bounded for memory)
MAX_SAMPLING_SOURCE_SIDE = 64


def any_enabled(config: Any) -> bool:
    p = config.plugins
    return any(getattr(p, name).enabled for name in ("mochi", "equimod", "augself", "viewmaker"))


def equimod_constants(section: Any, levels, settings: Any, make_policy: Callable[[Any], Any], image_size: int):
    """(means, stds) of the EquiMod vector per level (1-based ``levels``) under the view policy."""
    cheap = dataclasses.replace(
        settings, image_size=8, blur_probability=settings.resolved_blur_probability(), blur_kernel_size=3)
    policy = make_policy(cheap)
    side = max(8, min(int(image_size), MAX_SAMPLING_SOURCE_SIDE))
    return sample_param_statistics(policy, levels, tuple(section.fields), source_size=side,
                                   num_samples=section.std_samples, seed=0)


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
      steps_per_epoch: called only when MoCHi needs it.
    """
    p = config.plugins
    num_levels = len(config.model.level_depths)
    kw: Dict[str, Any] = {}
    if p.mochi.enabled:
        spe = steps_per_epoch() if p.mochi.start_epoch > 0 else 1
        kw["mochi"] = mochi_from_section(p.mochi, spe, config.train.seed)
    if p.equimod.enabled:
        eq = EquiModConfig(**section_values(p.equimod, EquiModConfig)).resolved(num_levels)
        means, stds = equimod_constants(p.equimod, eq.levels, settings, make_policy, config.data.image_size)
        kw["equimod"] = dataclasses.replace(eq, param_mean=means, param_std=stds)
    if p.augself.enabled:
        kw["augself"] = AugSelfConfig(**section_values(p.augself, AugSelfConfig),
                                      colour_scale=colour_scale_from_strength(config.augment.jitter_strength),
                                      blur_scale=float(settings.blur_sigma[1]))
    if p.viewmaker.enabled:
        levels = tuple(k + 1 for k in make_policy(settings).levels_with_group("viewmaker"))
        kw["viewmaker"] = ViewmakerConfig(**section_values(p.viewmaker, ViewmakerConfig), levels=levels,
                                          seed=config.train.seed)
    return kw
