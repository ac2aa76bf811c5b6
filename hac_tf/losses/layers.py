"""Keras 3 loss layers wrapping the pure loss functions.

Each layer holds its hyper-parameters (validated in __init__, ValueError on bad values),
`call(...)` returns the float32 scalar loss, and `get_config()` / `from_config()` round-trip.
The layers default to a float32 dtype policy so a mixed-precision global policy never
down-casts their inputs; the functions cast to float32 anyway. `similarity_stats(a, b)`
returns the monitoring dict of `hac_tf.losses.stats.similarity_stats`.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, Optional, Union

import keras
import tensorflow as tf

from hac_tf.losses.barlow import barlow_twins
from hac_tf.losses.cosine import byol_loss, negative_cosine, symmetric_negative_cosine
from hac_tf.losses.infonce import infonce_queue
from hac_tf.losses.mochi import MochiConfig, StepLike
from hac_tf.losses.ntxent import nt_xent
from hac_tf.losses.stats import similarity_stats


def _number(name: str, value: Any, *, positive: bool = True, allow_zero: bool = False) -> float:
    """Validates a Python real hyper-parameter and returns it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


class _LossLayer(keras.layers.Layer):
    """Base: float32 policy by default and the similarity_stats helper."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def similarity_stats(self, z_a: tf.Tensor, z_b: tf.Tensor) -> Dict[str, tf.Tensor]:
        """{"pos_sim", "neg_sim", "embedding_std"} float32 scalars for [B, d] inputs."""
        return similarity_stats(z_a, z_b)


@keras.saving.register_keras_serializable(package="hac_tf")
class NTXentLoss(_LossLayer):
    """SimCLR NT-Xent layer: call(z_a [B,d], z_b [B,d], step=None) -> scalar.

    Args:
      temperature: tau > 0 (default 0.5).
      gather_across_replicas: gather negatives over replicas (see `nt_xent`).
      mochi: optional MochiConfig (or its dict) for in-batch hard-negative mixing.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        gather_across_replicas: bool = True,
        mochi: Union[MochiConfig, dict, None] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.temperature = _number("temperature", temperature)
        self.gather_across_replicas = bool(gather_across_replicas)
        self.mochi = MochiConfig.from_value(mochi)

    def call(self, z_a: tf.Tensor, z_b: tf.Tensor, step: StepLike = None) -> tf.Tensor:
        return nt_xent(
            z_a, z_b, self.temperature, self.gather_across_replicas, mochi=self.mochi, step=step
        )

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            temperature=self.temperature,
            gather_across_replicas=self.gather_across_replicas,
            mochi=None if self.mochi is None else self.mochi.to_dict(),
        )
        return config


@keras.saving.register_keras_serializable(package="hac_tf")
class InfoNCEQueueLoss(_LossLayer):
    """MoCo v2 InfoNCE layer: call(q [B,d], k [B,d], queue [K,d], step=None) -> scalar.

    Args:
      temperature: tau > 0 (default 0.2).
      mochi: optional MochiConfig (or its dict).
    """

    def __init__(
        self,
        temperature: float = 0.2,
        mochi: Union[MochiConfig, dict, None] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.temperature = _number("temperature", temperature)
        self.mochi = MochiConfig.from_value(mochi)

    def call(
        self, q: tf.Tensor, k: tf.Tensor, queue: tf.Tensor, step: StepLike = None
    ) -> tf.Tensor:
        return infonce_queue(q, k, queue, self.temperature, mochi=self.mochi, step=step)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            temperature=self.temperature,
            mochi=None if self.mochi is None else self.mochi.to_dict(),
        )
        return config


@keras.saving.register_keras_serializable(package="hac_tf")
class NegativeCosineLoss(_LossLayer):
    """SimSiam / BYOL cosine layer.

    call(p, z) -> D(p, z) (variant "simsiam") or mean(2 - 2 cos) (variant "byol");
    call(p1, z1, p2, z2) -> the symmetric form 0.5 * L(p1, z2) + 0.5 * L(p2, z1).
    All inputs [B, d]; z is always stop-gradient.

    Args:
      variant: "simsiam" (negative cosine) or "byol" (2 - 2 cos).
    """

    VARIANTS = ("simsiam", "byol")

    def __init__(self, variant: str = "simsiam", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if variant not in self.VARIANTS:
            raise ValueError(f"variant must be one of {self.VARIANTS}, got {variant!r}")
        self.variant = variant

    def call(
        self,
        p1: tf.Tensor,
        z1: tf.Tensor,
        p2: Optional[tf.Tensor] = None,
        z2: Optional[tf.Tensor] = None,
    ) -> tf.Tensor:
        if (p2 is None) != (z2 is None):
            raise ValueError("pass both p2 and z2 for the symmetric loss, or neither")
        if p2 is None:
            return negative_cosine(p1, z1) if self.variant == "simsiam" else byol_loss(p1, z1)
        if self.variant == "simsiam":
            return symmetric_negative_cosine(p1, z1, p2, z2)
        return 0.5 * byol_loss(p1, z2) + 0.5 * byol_loss(p2, z1)

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(variant=self.variant)
        return config


@keras.saving.register_keras_serializable(package="hac_tf")
class BarlowTwinsLoss(_LossLayer):
    """Barlow Twins layer: call(z_a [B,d], z_b [B,d]) -> scale * (on_diag + lambd * off_diag).

    Args:
      lambd: off-diagonal weight >= 0 (default 3.9e-3).
      scale: overall scale > 0 (default 1/32).
      eps: standardisation variance epsilon > 0.
      gather_across_replicas: global batch statistics under multiple replicas.
    """

    def __init__(
        self,
        lambd: float = 3.9e-3,
        scale: float = 1.0 / 32.0,
        eps: float = 1e-5,
        gather_across_replicas: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lambd = _number("lambd", lambd, allow_zero=True)
        self.scale = _number("scale", scale)
        self.eps = _number("eps", eps)
        self.gather_across_replicas = bool(gather_across_replicas)

    def call(self, z_a: tf.Tensor, z_b: tf.Tensor) -> tf.Tensor:
        return barlow_twins(
            z_a, z_b, self.lambd, self.scale, self.eps, self.gather_across_replicas
        )

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update(
            lambd=self.lambd,
            scale=self.scale,
            eps=self.eps,
            gather_across_replicas=self.gather_across_replicas,
        )
        return config
