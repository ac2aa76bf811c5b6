"""The plug-in interface: what a plug-in adds to the model, so that the model (and the trainer)
loop over the enabled plug-ins without naming any.

A plug-in is a module ``hac_tf/plugins/<name>.py``, found and registered under its module name
by hac_tf/plugins/registry.py (nothing else lists it: ``PLUGIN_MODULES`` and the ModelSpec's
``<name>=`` keyword are derived from the registry), that provides

  ORDER                        its place in the order the model builds the plug-ins' layers and
                               runs their hooks (an int; mochi 10, equimod 20, augself 30, viewmaker 40)
  CONFIG_CLASS                 its settings: ``ModelSpec.<name>`` and the config's ``plugins.<name>``
                               section (generated from it, hac_tf/training/config.py)
  SECTION_FIELDS               config keys that are inputs of its run facts, not model settings
  APPLIES_TO, applies_to(cls)  the base methods it composes with, a rule over their traits
  resolve(value, num_levels)   ``ModelSpec.<name>`` checked, its levels resolved
  from_section(section, facts) its resolved config from the config section and the run facts it
                               works out once per run (:class:`RunFacts`; saved with the run's spec)
  build_layer(config, feature_dim, sync_bn) -> PluginLayer or None
                               its part of the model (None: MoCHi, which lives in the losses)

and may provide (the defaults add nothing):

  SOURCE_KEYS                  keys of the source batch, besides the view levels, that its layer
                               reads (EquiMod's x_0: ``("images",)``); the data pipeline keeps them
  check_config(config, facts)  its cross-field rules on the experiment config, run before anything
                               is built (:class:`ConfigFacts`); a ValueError whose message names the
                               keys. Whether it applies to ``model.method`` is checked for every
                               plug-in (here it may say so in its own words first)

A :class:`PluginLayer` adds, through hooks whose defaults add nothing:

  to the forward pass   ``prepare_batch``: rewrites the batch before the levels run (the Viewmaker's
                        views, as constants for the encoder); ``shared_images``: images encoded in
                        the level's backbone call together with the views (EquiMod's x_0 with
                        ``shared_bn``), whose features come back in :class:`LevelFeatures`
  to the loss           ``level_term``: its weighted term of a level and its metrics, added to the
                        total after the base method's (in ``term_order``)
  to the variables and  ``own_objective``: its trainable variables are not the encoder's; the
  optimizers            trainer trains them after every main step, on the same batch, with their own
                        optimizer (``build_optimizer``: Adam at ``learning_rate``) on ``objective``
                        (the Viewmaker's adversarial loss); ``objective_name`` names that
                        optimizer's checkpoint key ``<objective_name>_optimizer``
  to the checkpoint     its variables, saved with the model's under their Keras paths (nothing to do)
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import keras
import tensorflow as tf


class RunFacts(NamedTuple):
    """What a plug-in may need from the experiment to work out its run facts, once per run
    (``from_section``; hac_tf/plugins/wiring.py builds it).

    num_levels: view levels of the model; image_size: side of the views; train_seed: train.seed;
    jitter_strength: the colour-jitter strengths (b, c, s, h); settings: the AugmentationSettings;
    make_policy: settings -> the experiment's view policy built with them; steps_per_epoch: () ->
    optimizer steps per epoch (may read the data: call it only when needed).
    """

    num_levels: int
    image_size: int
    train_seed: int
    jitter_strength: Tuple[float, ...]
    settings: Any
    make_policy: Callable[[Any], Any]
    steps_per_epoch: Callable[[], int]


class ConfigFacts(NamedTuple):
    """What a plug-in's ``check_config`` reads besides the experiment config itself
    (hac_tf/training/config.py builds it, for every plug-in, enabled or not).

    section: its ``plugins.<name>`` config section; applicable: the registered methods it applies
    to (sorted names); level_groups: the augmentation groups of every view level, as the view
    policy builds them (level 1 first).
    """

    section: Any
    applicable: Tuple[str, ...]
    level_groups: Tuple[Tuple[str, ...], ...]


class LevelFeatures(NamedTuple):
    """What the model computed for one level, for the plug-ins' terms.

    level: 0-based level index; name: its batch key (``level_k``).
    features: online depth features of the pair before the parameter embedding, ``[2B, F]``
      (view a rows first).
    shared: features ``[N, F]`` of this plug-in's ``shared_images`` from the same backbone call,
      or None.
    encode: images ``[N, S, S, 3]`` -> their depth features ``[N, F]`` in a backbone call of their own.
    """

    level: int
    name: str
    features: tf.Tensor
    shared: Optional[tf.Tensor]
    encode: Callable[[tf.Tensor], tf.Tensor]


class PluginLayer(keras.layers.Layer):
    """Base class of a plug-in's part of the model (see the module docstring)."""

    #: plug-ins add their level terms in increasing term_order (ties: plug-in order)
    term_order: ClassVar[int] = 0
    #: its trainable variables have their own optimizer and objective (not the encoder's)
    own_objective: ClassVar[bool] = False
    #: name of that objective (``own_objective`` plug-ins): the trainer checkpoints its optimizer
    #: as ``<objective_name>_optimizer`` (and its float16 loss scale as ``<objective_name>_loss_scale``)
    objective_name: ClassVar[str] = ""

    def has_level(self, level: int) -> bool:
        """Whether the plug-in acts at 0-based level ``level``: its config's 1-based ``levels``."""
        return level + 1 in self.config.levels

    def prepare_batch(self, batch: Mapping[str, Any], level_names: Sequence[str], step: Any) -> Mapping[str, Any]:
        """The batch the levels see (default: unchanged)."""
        return batch

    def shared_images(self, batch: Mapping[str, Any], level: int) -> Optional[tf.Tensor]:
        """Images ``[N, S, S, 3]`` to encode with the level's views in one backbone call, or None."""
        return None

    def level_term(
        self, batch: Mapping[str, Any], features: LevelFeatures, training: bool
    ) -> Optional[Tuple[tf.Tensor, Dict[str, tf.Tensor]]]:
        """``(weighted float32 term, {metric: value})`` of the level, or None (default)."""
        return None

    @property
    def learning_rate(self) -> Optional[float]:
        """Learning rate of the own optimizer (``own_objective`` plug-ins)."""
        return None

    def build_optimizer(self) -> keras.optimizers.Optimizer:
        """Its own optimizer (``own_objective`` plug-ins; default: Adam at :attr:`learning_rate`),
        built by the trainer inside the strategy scope."""
        return keras.optimizers.Adam(self.learning_rate, name=f"{self.objective_name}_adam")

    def objective(self, model: Any, batch: Mapping[str, Any], training: bool = True,
                  step: Any = None) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """The float32 loss its own optimizer minimises w.r.t. its trainable variables, and its
        metrics (``own_objective`` plug-ins); ``model`` is the HierarchicalContrastiveModel."""
        raise NotImplementedError(f"{type(self).__name__} has no objective of its own")

    def call(self, *args, **kwargs):  # pragma: no cover - plug-ins are driven through their hooks
        raise NotImplementedError("plug-in layers are driven through their hooks")
