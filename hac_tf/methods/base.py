"""The base-method interface: one class per method owns everything that defines it.

A :class:`Method` subclass, decorated with :func:`hac_tf.methods.registry.register`, declares

  name_                    registry name ("simclr", ...): the value of ``model.method``
  traits                   has_predictor (the online branch ends with a predictor),
                           target_kind (None, "momentum": fixed m, "ema": cosine-ramped tau),
                           has_queue (state that a second forward pass would corrupt),
                           softmax_temperature (its loss is a softmax over negatives with a
                           temperature: the trait MoCHi needs)
  projector_defaults       ProjectionMLP keyword arguments of its projector
  predictor_hidden_default hidden width of its predictor (methods with a predictor)
  settings_class           its settings: a frozen :class:`MethodSettings` dataclass whose fields
                           are the ``model.<setting>`` config keys, with defaults and ranges
  plugins_opt_in           plug-ins specified only for some methods that this method takes
                           (EquiMod: SimCLR, BYOL); plug-ins with a trait rule need nothing here

and implements the per-level loss. It is a Keras layer, so its state (MoCo's queues) is tracked by
the model and by ``tf.train.Checkpoint``. The model encodes each view pair and hands the method a
:class:`PairOutputs` for the online network (and one for the target network when the method has
one); the method returns the level's float32 loss and any extra metrics:

  build_state()                               create per-level state variables (called once)
  level_loss(level, online, target, training, step) -> (loss, {metric: scalar})
  target_momentum(step, total_steps)          momentum of the target update (target methods)

Every list of method names (config choices, methods with a predictor, the methods a plug-in
applies to, ...) is derived from the registry (hac_tf/methods/registry.py); adding a method is
its loss and this one class (docs/ADDING.md).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Dict, NamedTuple, Optional, Tuple, Type

import keras
import tensorflow as tf

from hac_tf import schema

if TYPE_CHECKING:  # the spec validates against the registry of Method classes
    from hac_tf.methods.spec import ModelSpec


class PairOutputs(NamedTuple):
    """Head outputs of one view pair, each ``[B, d]`` (compute dtype; losses cast to float32).

    z_a, z_b: projector outputs of view a / view b.
    p_a, p_b: predictor outputs (None when the method has no predictor or for a target network).
    """

    z_a: tf.Tensor
    z_b: tf.Tensor
    p_a: Optional[tf.Tensor] = None
    p_b: Optional[tf.Tensor] = None


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """Base of the per-method settings dataclasses (no settings).

    Subclasses declare each setting as a field named like its config key (``model.<name>``), with
    its default and rule (:func:`hac_tf.schema.ranged`); instances are validated on construction
    and raise ``ValueError("ModelSpec.<name>: ...")``.
    """

    def __post_init__(self) -> None:
        schema.check_fields("ModelSpec", self)

    @classmethod
    def names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def field(cls, name: str) -> dataclasses.Field:
        return next(f for f in dataclasses.fields(cls) if f.name == name)


class Method(keras.layers.Layer):
    """Base class of the base methods. See the module docstring for the contract."""

    name_: ClassVar[str] = ""
    has_predictor: ClassVar[bool] = False
    target_kind: ClassVar[Optional[str]] = None
    has_queue: ClassVar[bool] = False
    softmax_temperature: ClassVar[bool] = False
    projector_defaults: ClassVar[Dict[str, Any]] = {}
    predictor_hidden_default: ClassVar[Optional[int]] = None
    settings_class: ClassVar[Type[MethodSettings]] = MethodSettings
    plugins_opt_in: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, spec: "ModelSpec", **kwargs) -> None:
        kwargs.setdefault("name", f"{self.name_}_method")
        super().__init__(**kwargs)
        if spec.method != self.name_:
            raise ValueError(f"{type(self).__name__} needs a spec with method={self.name_!r}, "
                             f"got {spec.method!r}")
        self.spec = spec
        #: the resolved settings (defaults filled in)
        self.settings: MethodSettings = spec.method_settings

    @classmethod
    def projector_kwargs(cls, overrides: Dict[str, Any]) -> Dict[str, Any]:
        """ProjectionMLP keyword arguments: the defaults with ``overrides`` (hidden_dim, out_dim,
        num_layers, hidden_bn, last_bn) applied; setting ``last_bn`` drops the last bias (BN
        replaces it) unless the method fixes its biases (Barlow Twins overrides this)."""
        out = dict(cls.projector_defaults)
        out.update(overrides)
        if "last_bn" in overrides:
            out["last_bias"] = not out["last_bn"]
        return out

    @property
    def method_name(self) -> str:
        return self.name_

    def build_state(self) -> None:
        """Creates the method's state variables (none by default)."""
        self.built = True

    def level_loss(
        self,
        level: int,
        online: PairOutputs,
        target: Optional[PairOutputs],
        training: bool = True,
        step: Optional[tf.Tensor] = None,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """Loss of level ``level`` (0-based) as a float32 scalar, plus extra metrics."""
        raise NotImplementedError

    def target_momentum(self, step, total_steps) -> Optional[tf.Tensor]:
        """Momentum of the target-network update at ``step``; None if there is no target."""
        return None

    def call(self, *args, **kwargs):  # pragma: no cover - methods are not called as layers
        raise NotImplementedError("use level_loss(...)")

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(spec=self.spec.to_dict())
        return config
