"""hac_tf.methods: the base methods (one registered class each: SimCLR, MoCo v2, BYOL, SimSiam,
Barlow Twins, VICReg, ...) and the one multi-depth Keras model that applies them at every level of
the hierarchy.

A base method is one class in ``hac_tf/methods/<name>.py`` registered with ``@register``
(hac_tf/methods/base.py states what it owns; docs/ADDING.md). Importing this package imports
every module of it, so every registered name is known (``METHOD_NAMES``) and every registered
class is exported here by its class name (``hac_tf.methods.VICReg``), derived from the registry.

Public API:
  ModelSpec                      validated, frozen definition of a model (method, backbone,
                                 level_depths, loss_weights, embedding, heads, method settings,
                                 plug-ins)
  HierarchicalContrastiveModel   keras.Model: compute_loss(batch, training, step) -> (loss, metrics),
                                 update_targets(step, total_steps), encode(images), backbone,
                                 online_variables / trainable_variables, predictor_variables,
                                 target_variables, plugin_layers
  register, method_class(name), method_names(where=None), METHOD_NAMES
  Method, MethodSettings, PairOutputs   the base-method interface
  the registered method classes by class name (SimCLR, MoCo, BYOL, SimSiam, BarlowTwins, VICReg)
  KeyQueue, EncoderTower, cosine_momentum, ema_update, copy_variables
"""

from hac_tf.methods.base import Method, MethodSettings, PairOutputs
from hac_tf.methods.registry import load_method_modules, method_class, method_names, register

load_method_modules()  # every hac_tf/methods/<name>.py registers its method

from hac_tf.methods.ema import copy_variables, cosine_momentum, ema_update  # noqa: E402
from hac_tf.methods.model import EncoderTower, HierarchicalContrastiveModel  # noqa: E402
from hac_tf.methods.moco import KeyQueue  # noqa: E402
from hac_tf.methods.spec import ModelSpec  # noqa: E402

#: names of the registered base methods, sorted
METHOD_NAMES = method_names()

# every registered method class, exported by its class name (derived: a new method needs no edit here)
_METHOD_CLASSES = {method_class(name).__name__: method_class(name) for name in METHOD_NAMES}
globals().update(_METHOD_CLASSES)

__all__ = sorted([
    "EncoderTower",
    "HierarchicalContrastiveModel",
    "KeyQueue",
    "METHOD_NAMES",
    "Method",
    "MethodSettings",
    "ModelSpec",
    "PairOutputs",
    "copy_variables",
    "cosine_momentum",
    "ema_update",
    "method_class",
    "method_names",
    "register",
] + list(_METHOD_CLASSES))
