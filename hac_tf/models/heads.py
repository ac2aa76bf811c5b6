"""Heads: parameter embedding, projector and predictor MLPs (docs/METHODS.md#hierarchy-heads, #base-methods).

* :class:`EmbeddingMLP` — the HAC "colour encoder": ``encode_fields(params, fields)`` [B, F] →
  Linear(F→out) → BN → ReLU → [B, out]. Default fields ("colour",) = the raw jitter 4-vector.
* :class:`ProjectionMLP` — [Linear → BN → ReLU] × (num_layers−1) → Linear → BN.
  Defaults are the SimSiam/HAC projector (2048-2048-2048, last Linear without bias, last BN).
  Other base methods (examples)::

      SimCLR (SimSiam-style):  ProjectionMLP(2048, 128, num_layers=3, last_bn=True)
      EquiMod SimCLR head:     ProjectionMLP(2048, 128, 3, hidden_bias=False, last_bn_affine=False)
      MoCo v2:                 ProjectionMLP(2048, 128, 2, hidden_bn=False, last_bn=False)
      BYOL:                    ProjectionMLP(4096, 256, 2, last_bn=False)
      Barlow Twins:            ProjectionMLP(8192, 8192, 3, hidden_bias=False, last_bn=False,
                                             last_bias=False)  # its affine-free BN is in the loss

* :class:`PredictionMLP` — Linear(→hidden) → BN → ReLU → Linear(→out) (SimSiam/BYOL predictor).

Linear kernels use PyTorch's default U(±1/sqrt(fan_in)); biases start at zero (PyTorch draws them
from the same uniform; the difference is immaterial with BN following).
All input widths are inferred at build time; all layers implement ``get_config``.
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Union

import keras
import tensorflow as tf

from hac_tf.augment.params import encode_fields, field_width
from hac_tf.models.layers import (
    Shape,
    apply_chain,
    batch_norm,
    build_chain,
    chain_output_shape,
    dense_initializer,
)


def _dense(units: int, use_bias: bool, name: str) -> keras.layers.Dense:
    return keras.layers.Dense(
        units, use_bias=use_bias, kernel_initializer=dense_initializer(), name=name
    )


class _MLPBase(keras.layers.Layer):
    """A layer applying ``self.mlp_layers`` in sequence to ``[B, D_in]`` → ``[B, D_out]``."""

    mlp_layers: List[keras.layers.Layer]

    def build(self, input_shape: Shape) -> None:
        build_chain(self.mlp_layers, input_shape)

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        return apply_chain(self.mlp_layers, x, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return chain_output_shape(self.mlp_layers, input_shape)


@keras.saving.register_keras_serializable(package="hac_tf")
class EmbeddingMLP(keras.layers.Layer):
    """Embeds chosen recorded augmentation parameters: params dict → ``[B, out_dim]``.

    Call with the recorded-parameter dict (see ``hac_tf.augment.params``); only ``fields`` are
    read. An already encoded ``[B, field_width(fields)]`` tensor is accepted as well.

    Args:
      fields: parameter field names (PARAM_KEYS or the alias "colour"), concatenated in order.
      out_dim: embedding width (512 in HAC).
      sync_bn: synchronized BatchNorm.
    """

    def __init__(
        self,
        fields: Sequence[str] = ("colour",),
        out_dim: int = 512,
        sync_bn: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(fields, str):
            fields = (fields,)
        self.fields = tuple(fields)
        if not self.fields:
            raise ValueError("EmbeddingMLP needs at least one parameter field")
        try:
            self.in_dim = field_width(self.fields)
        except KeyError as e:
            raise ValueError(f"unknown parameter field {e.args[0]!r} in {self.fields}") from None
        self.out_dim = int(out_dim)
        self.sync_bn = bool(sync_bn)
        self.mlp_layers: List[keras.layers.Layer] = [
            _dense(self.out_dim, True, "linear"),
            batch_norm(self.sync_bn, name="bn"),
            keras.layers.ReLU(name="relu"),
        ]

    def build(self, input_shape=None) -> None:  # input shape comes from the fields
        build_chain(self.mlp_layers, (None, self.in_dim))

    def encode(self, params: Union[Mapping[str, tf.Tensor], tf.Tensor]) -> tf.Tensor:
        """The ``[B, in_dim]`` float32 input of the MLP."""
        if isinstance(params, Mapping):
            return encode_fields(params, self.fields)
        return tf.cast(params, tf.float32)

    def call(
        self, params: Union[Mapping[str, tf.Tensor], tf.Tensor], training: Optional[bool] = None
    ) -> tf.Tensor:
        return apply_chain(self.mlp_layers, self.encode(params), training)

    def compute_output_shape(self, input_shape) -> Shape:
        if isinstance(input_shape, Mapping):
            input_shape = next(iter(input_shape.values()))
        return (input_shape[0], self.out_dim)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(fields=list(self.fields), out_dim=self.out_dim, sync_bn=self.sync_bn)
        return config


@keras.saving.register_keras_serializable(package="hac_tf")
class ProjectionMLP(_MLPBase):
    """Projector ``[B, D_in] → [B, out_dim]``.

    ``[Linear(→hidden, bias=hidden_bias) → BN? → ReLU] × (num_layers−1) → Linear(→out) → BN?``

    Args:
      hidden_dim, out_dim: widths (defaults: SimSiam/HAC 2048, 2048).
      num_layers: number of Linear layers, >= 1.
      last_bn: BN after the last Linear.
      last_bn_affine: False gives BN without gamma/beta (PyTorch ``affine=False``).
      hidden_bn: BN in the hidden layers (False for MoCo v2's Linear → ReLU → Linear).
      hidden_bias: bias of the hidden Linears.
      last_bias: bias of the last Linear; default ``not last_bn``.
      sync_bn: synchronized BatchNorm.
    """

    def __init__(
        self,
        hidden_dim: int = 2048,
        out_dim: int = 2048,
        num_layers: int = 3,
        last_bn: bool = True,
        last_bn_affine: bool = True,
        hidden_bn: bool = True,
        hidden_bias: bool = True,
        last_bias: Optional[bool] = None,
        sync_bn: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.hidden_dim = int(hidden_dim)
        self.out_dim = int(out_dim)
        self.num_layers = int(num_layers)
        self.last_bn = bool(last_bn)
        self.last_bn_affine = bool(last_bn_affine)
        self.hidden_bn = bool(hidden_bn)
        self.hidden_bias = bool(hidden_bias)
        self.last_bias = (not self.last_bn) if last_bias is None else bool(last_bias)
        self.sync_bn = bool(sync_bn)
        layers: List[keras.layers.Layer] = []
        for i in range(self.num_layers - 1):
            layers.append(_dense(self.hidden_dim, self.hidden_bias, f"linear{i + 1}"))
            if self.hidden_bn:
                layers.append(batch_norm(self.sync_bn, name=f"bn{i + 1}"))
            layers.append(keras.layers.ReLU(name=f"relu{i + 1}"))
        layers.append(_dense(self.out_dim, self.last_bias, f"linear{self.num_layers}"))
        if self.last_bn:
            layers.append(
                batch_norm(
                    self.sync_bn,
                    center=self.last_bn_affine,
                    scale=self.last_bn_affine,
                    name=f"bn{self.num_layers}",
                )
            )
        self.mlp_layers = layers

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hidden_dim=self.hidden_dim,
            out_dim=self.out_dim,
            num_layers=self.num_layers,
            last_bn=self.last_bn,
            last_bn_affine=self.last_bn_affine,
            hidden_bn=self.hidden_bn,
            hidden_bias=self.hidden_bias,
            last_bias=self.last_bias,
            sync_bn=self.sync_bn,
        )
        return config


@keras.saving.register_keras_serializable(package="hac_tf")
class PredictionMLP(_MLPBase):
    """Predictor ``[B, D_in] → [B, out_dim]``: Linear(→hidden) → BN → ReLU → Linear(→out).

    Defaults are SimSiam/HAC (hidden 512, out 2048); BYOL uses ``PredictionMLP(4096, 256)``.
    """

    def __init__(
        self, hidden_dim: int = 512, out_dim: int = 2048, sync_bn: bool = False, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.out_dim = int(out_dim)
        self.sync_bn = bool(sync_bn)
        self.mlp_layers = [
            _dense(self.hidden_dim, True, "linear1"),
            batch_norm(self.sync_bn, name="bn1"),
            keras.layers.ReLU(name="relu1"),
            _dense(self.out_dim, True, "linear2"),
        ]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(hidden_dim=self.hidden_dim, out_dim=self.out_dim, sync_bn=self.sync_bn)
        return config
