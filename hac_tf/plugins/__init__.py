"""hac_tf.plugins: related methods as configuration switches on any applicable base method,
with or without the hierarchy (docs/PLUGINS.md, docs/METHODS.md#plugins).

A plug-in is one module ``hac_tf/plugins/<name>.py``: a frozen config (``ModelSpec(<name>=...)``,
the config section ``plugins.<name>``) plus, where it has weights, a
:class:`~hac_tf.plugins.base.PluginLayer` the ``HierarchicalContrastiveModel`` owns and drives
through the hooks of the plug-in interface (hac_tf/plugins/base.py: what it adds to the forward
pass, the loss, the variables and optimizers, the checkpoint), never by name; the one training
loop is shared by all of them. Importing this package imports every module of it and registers
the plug-ins (hac_tf/plugins/registry.py), so a new plug-in module is listed nowhere else:
``PLUGIN_MODULES`` (name -> module, in build and hook order) is derived from the registry.

  MoCHi      ModelSpec.mochi (MochiConfig; math in hac_tf.losses.mochi)   methods with a softmax temperature
  EquiMod    ModelSpec.equimod (EquiModConfig) -> EquiModModule           methods that opt in (SimCLR, BYOL)
  AugSelf    ModelSpec.augself (AugSelfConfig) -> AugSelfModule           any method
  Viewmaker  ModelSpec.viewmaker (ViewmakerConfig) -> ViewmakerModule     methods without a queue
             (adversarial variables with their own Adam optimizer in the trainer)

Each plug-in module states the base methods it applies to as a rule over the method's traits
(``applies_to(method class)``, ``APPLIES_TO``), so the lists of names are derived from the
method registry (hac_tf/methods/registry.py), never written down.

See docs/PLUGINS.md.
"""

from hac_tf.plugins.registry import load_plugin_modules, plugin_modules

load_plugin_modules()  # every hac_tf/plugins/<name>.py that defines CONFIG_CLASS registers as a plug-in

from hac_tf.plugins.augself import (  # noqa: E402
    AUGSELF_TARGETS,
    AugSelfConfig,
    AugSelfModule,
    augself_targets,
    colour_scale_from_strength,
)
from hac_tf.plugins.base import LevelFeatures, PluginLayer  # noqa: E402
from hac_tf.plugins.equimod import (  # noqa: E402
    EQUIMOD_FIELDS,
    EquiModConfig,
    EquiModModule,
    encode_equimod_params,
    original_view,
    sample_param_statistics,
)
from hac_tf.plugins.mochi import mochi_config  # noqa: E402
from hac_tf.plugins.viewmaker import (  # noqa: E402
    ViewmakerConfig,
    ViewmakerGenerator,
    ViewmakerModule,
    project_perturbation,
)

#: the registered plug-ins (hac_tf/plugins/registry.py): name (ModelSpec key / config section) ->
#: module, in the order the model builds their layers and runs their hooks (their ORDER)
PLUGIN_MODULES = plugin_modules()

__all__ = [
    "AUGSELF_TARGETS",
    "AugSelfConfig",
    "AugSelfModule",
    "EQUIMOD_FIELDS",
    "EquiModConfig",
    "EquiModModule",
    "LevelFeatures",
    "PLUGIN_MODULES",
    "PluginLayer",
    "ViewmakerConfig",
    "ViewmakerGenerator",
    "ViewmakerModule",
    "augself_targets",
    "colour_scale_from_strength",
    "encode_equimod_params",
    "mochi_config",
    "original_view",
    "plugin_modules",
    "project_perturbation",
    "sample_param_statistics",
]
