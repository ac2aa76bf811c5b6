"""hac_tf.methods: base methods (SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins) and the one
multi-depth Keras model that applies them at every level of the hierarchy.

Public API:
  ModelSpec                      validated, frozen definition of a model (method, backbone,
                                 level_depths, loss_weights, embedding, heads, method settings)
  HierarchicalContrastiveModel   keras.Model: compute_loss(batch, training, step) -> (loss, metrics),
                                 update_targets(step, total_steps), encode(images), backbone,
                                 online_variables / trainable_variables, predictor_variables,
                                 target_variables
  build_model(spec), build_method(spec), available_methods(), METHODS
  Method, PairOutputs            the per-level loss interface
  SimCLR, MoCo, BYOL, SimSiam, BarlowTwins, KeyQueue
  cosine_momentum, ema_update, copy_variables
"""

from hac_tf.methods.barlow import BarlowTwins
from hac_tf.methods.base import Method, PairOutputs
from hac_tf.methods.byol import BYOL
from hac_tf.methods.ema import copy_variables, cosine_momentum, ema_update
from hac_tf.methods.model import EncoderTower, HierarchicalContrastiveModel
from hac_tf.methods.moco import KeyQueue, MoCo
from hac_tf.methods.registry import METHODS, available_methods, build_method, build_model
from hac_tf.methods.simclr import SimCLR
from hac_tf.methods.simsiam import SimSiam
from hac_tf.methods.spec import METHOD_NAMES, ModelSpec

__all__ = [
    "BYOL",
    "BarlowTwins",
    "EncoderTower",
    "HierarchicalContrastiveModel",
    "KeyQueue",
    "METHODS",
    "METHOD_NAMES",
    "Method",
    "MoCo",
    "ModelSpec",
    "PairOutputs",
    "SimCLR",
    "SimSiam",
    "available_methods",
    "build_method",
    "build_model",
    "copy_variables",
    "cosine_momentum",
    "ema_update",
]
