"""The base-method interface: how the projections of one view pair become a loss.

A :class:`Method` is a Keras layer (so its state — e.g. MoCo's queues — is tracked by the model and
by ``tf.train.Checkpoint``). The model encodes each view pair and hands the method a
:class:`PairOutputs` for the online network (and one for the target network when the method has
one); the method returns the level's float32 loss and any extra metrics.

Subclass contract:
  name            registry name ("simclr", ...)
  has_predictor   the online branch ends with a predictor (BYOL, SimSiam)
  target_kind     None, "momentum" (fixed m, MoCo) or "ema" (cosine-ramped tau, BYOL)
  build_state(spec)                         create per-level state variables (called once)
  level_loss(level, online, target, training, step) -> (loss, {metric: scalar})
  target_momentum(step, total_steps)        momentum of the target update (target methods)
"""

from __future__ import annotations

from typing import ClassVar, Dict, NamedTuple, Optional, Tuple

import keras
import tensorflow as tf

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


class Method(keras.layers.Layer):
    """Base class of the per-level losses. See the module docstring for the contract."""

    name_: ClassVar[str] = ""
    has_predictor: ClassVar[bool] = False
    target_kind: ClassVar[Optional[str]] = None

    def __init__(self, spec: ModelSpec, **kwargs) -> None:
        kwargs.setdefault("name", f"{self.name_}_method")
        super().__init__(**kwargs)
        if spec.method != self.name_:
            raise ValueError(f"{type(self).__name__} needs a spec with method={self.name_!r}, "
                             f"got {spec.method!r}")
        self.spec = spec

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
