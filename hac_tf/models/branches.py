"""Stage branches: every depth k yields a feature of the backbone's final width (docs/METHODS.md#stage-branches).

Level k = 1..3 (:class:`StageBranch`), on the stage-k map ``[B,H,W,C_k·exp]``::

    x = ReLU(BN(conv1x1(stage_k)))                       # prepare_attention, -> C_k channels
    a = sigmoid(BN(resize_to(SepConv(C_k, s2)(x), x)))   # attention
    f = a ⊙ x
    feat = GAP(ReLU(BN(conv1x1(SepConv...(f)))))         # scala: C_k -> ... -> top, -> feature_dim

Level 4 (:class:`GlobalPoolBranch`) is ``GAP(stage4)``. Both map a spatial map to
``[B, feature_dim]`` with ``branch(x, training=...)``.

Deviation from the released PyTorch code: the attention map is brought back to ``x``'s size with
a bilinear resize (half-pixel centres) instead of a fixed ``Upsample(×2, align_corners=False)``.
For even H, W this is exactly the ×2 upsample; for odd H, W (e.g. 28 px MNIST with the ImageNet
stem, or a 1x1 map at 32 px) the PyTorch code fails with a shape mismatch, while the resize maps
``ceil(H/2) -> H``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import keras
import tensorflow as tf

from hac_tf.models.layers import (
    Shape,
    apply_chain,
    batch_norm,
    build_chain,
    conv_layers,
    depthwise_layers,
)


def _conv_out(size: Optional[int], stride: int) -> Optional[int]:
    """Output size of a 3x3 conv with pad 1 and the given stride."""
    return None if size is None else (size + 2 - 3) // stride + 1


@keras.saving.register_keras_serializable(package="hac_tf")
class SepConv(keras.layers.Layer):
    """Separable conv block ``[B,H,W,Cin] -> [B,ceil(H/s),ceil(W/s),cout]``.

    dw3x3(s, pad 1) → 1x1 Cin→Cin → BN → ReLU → dw3x3(1, pad 1) → 1x1 Cin→cout → BN → ReLU,
    all convs without bias. ``Cin`` is taken from the input at build time. A 1x1 map with
    stride 2 stays 1x1.
    """

    def __init__(self, cout: int, stride: int = 2, sync_bn: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if cout < 1 or stride < 1:
            raise ValueError(f"SepConv needs cout >= 1 and stride >= 1, got {cout}, {stride}")
        self.cout = int(cout)
        self.stride = int(stride)
        self.sync_bn = bool(sync_bn)
        self.sep_layers: List[keras.layers.Layer] = []

    def build(self, input_shape: Shape) -> None:
        cin = input_shape[-1]
        if cin is None:
            raise ValueError(f"{self.name}: the channel dimension must be known, got {input_shape}")
        self.sep_layers = (
            depthwise_layers(self.stride, name="dw1")
            + conv_layers(cin, 1, name="pw1")
            + [batch_norm(self.sync_bn, name="bn1"), keras.layers.ReLU(name="relu1")]
            + depthwise_layers(1, name="dw2")
            + conv_layers(self.cout, 1, name="pw2")
            + [batch_norm(self.sync_bn, name="bn2"), keras.layers.ReLU(name="relu2")]
        )
        build_chain(self.sep_layers, input_shape)

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        return apply_chain(self.sep_layers, x, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        b, h, w, _ = input_shape
        return (b, _conv_out(h, self.stride), _conv_out(w, self.stride), self.cout)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(cout=self.cout, stride=self.stride, sync_bn=self.sync_bn)
        return config


def resize_like(x: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
    """Bilinear resize (half-pixel centres == PyTorch ``align_corners=False``) of ``x`` to the
    spatial size of ``reference``; keeps ``x``'s dtype."""
    size = reference.shape[1:3]
    if not size.is_fully_defined():
        size = tf.shape(reference)[1:3]
    elif tuple(x.shape[1:3]) == tuple(size):
        return x
    return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)


def _split_channels(base_channels: Sequence[int]) -> tuple[List[int], int]:
    """(C1..C3, top) from 3 widths (top = 2*C3) or 4 widths (top = the 4th)."""
    base = [int(c) for c in base_channels]
    if len(base) == 3:
        return base, 2 * base[2]
    if len(base) == 4:
        return base[:3], base[3]
    raise ValueError(f"base_channels must list 3 or 4 stage widths, got {list(base_channels)}")


@keras.saving.register_keras_serializable(package="hac_tf")
class StageBranch(keras.layers.Layer):
    """Level-k branch (k = 1..3): stage-k map ``[B,H,W,in_channels]`` → ``[B, feature_dim]``.

    Args:
      level: 1, 2 or 3.
      in_channels: channels of the stage-k map (C_k·exp).
      base_channels: un-expanded widths ``[C1, C2, C3]`` (top = 2·C3) or ``[C1, C2, C3, C4]``
        (top = C4), already scaled by the width multiplier. The scala stack goes
        C_k → C_{k+1} → ... → top with stride-2 SepConvs, then 1x1 conv → ``feature_dim``.
      feature_dim: output width (the backbone's ``feature_dim`` = top·exp).
      sync_bn: synchronized BatchNorm.
    """

    def __init__(
        self,
        level: int,
        in_channels: int,
        base_channels: Sequence[int],
        feature_dim: int,
        sync_bn: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if level not in (1, 2, 3):
            raise ValueError(
                f"StageBranch level must be 1, 2 or 3, got {level!r} (use GlobalPoolBranch for 4)"
            )
        base, top = _split_channels(base_channels)
        self.level = int(level)
        self.in_channels = int(in_channels)
        self.base_channels = [int(c) for c in base_channels]
        self.feature_dim = int(feature_dim)
        self.sync_bn = bool(sync_bn)
        ck = base[level - 1]
        self.scala_widths: List[int] = base[level:] + [top]

        self.prepare_layers: List[keras.layers.Layer] = conv_layers(ck, 1, name="prepare_conv") + [
            batch_norm(sync_bn, name="prepare_bn"),
            keras.layers.ReLU(name="prepare_relu"),
        ]
        self.attention_sepconv = SepConv(ck, stride=2, sync_bn=sync_bn, name="attention_sepconv")
        self.attention_bn = batch_norm(sync_bn, name="attention_bn")
        self.scala_layers: List[keras.layers.Layer] = [
            SepConv(c, stride=2, sync_bn=sync_bn, name=f"scala_sepconv{i + 1}")
            for i, c in enumerate(self.scala_widths)
        ]
        self.scala_layers += conv_layers(self.feature_dim, 1, name="scala_conv") + [
            batch_norm(sync_bn, name="scala_bn"),
            keras.layers.ReLU(name="scala_relu"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
        ]

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] is not None and input_shape[-1] != self.in_channels:
            raise ValueError(
                f"{self.name}: expected {self.in_channels} input channels, got {input_shape}"
            )
        shape = build_chain(self.prepare_layers, input_shape)
        self.attention_sepconv.build(shape)
        self.attention_bn.build(shape)
        build_chain(self.scala_layers, shape)

    def prepare(self, feature_map: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """prepare_attention: ``[B,H,W,in_channels] -> [B,H,W,C_k]`` (1x1 conv → BN → ReLU)."""
        return apply_chain(self.prepare_layers, feature_map, training)

    def attention(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Attention map ``a`` in (0,1), same shape as the prepared map ``x`` ``[B,H,W,C_k]``."""
        a = self.attention_sepconv(x, training=training)
        a = resize_like(a, x)
        return tf.sigmoid(self.attention_bn(a, training=training))

    def call(self, feature_map: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        x = self.prepare(feature_map, training)
        f = self.attention(x, training) * x
        return apply_chain(self.scala_layers, f, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.feature_dim)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            level=self.level,
            in_channels=self.in_channels,
            base_channels=list(self.base_channels),
            feature_dim=self.feature_dim,
            sync_bn=self.sync_bn,
        )
        return config


@keras.saving.register_keras_serializable(package="hac_tf")
class GlobalPoolBranch(keras.layers.Layer):
    """Level-4 "branch": ``GAP(stage4)``, ``[B,H,W,C] -> [B,C]`` (no weights).

    ``feature_dim`` (optional) is checked against C at build time.
    """

    def __init__(self, feature_dim: Optional[int] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.feature_dim = None if feature_dim is None else int(feature_dim)
        self.level = 4

    def build(self, input_shape: Shape) -> None:
        if (
            self.feature_dim is not None
            and input_shape[-1] is not None
            and input_shape[-1] != self.feature_dim
        ):
            raise ValueError(
                f"{self.name}: expected {self.feature_dim} channels, got input shape {input_shape}"
            )

    def call(self, feature_map: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        return tf.reduce_mean(feature_map, axis=[1, 2])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], input_shape[-1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(feature_dim=self.feature_dim)
        return config


def build_stage_branches(
    stage_channels: Sequence[int],
    base_channels: Sequence[int],
    feature_dim: int,
    sync_bn: bool = False,
    levels: Sequence[int] = (1, 2, 3, 4),
    name_prefix: str = "branch",
) -> List[keras.layers.Layer]:
    """One built branch per requested level (StageBranch for 1..3, GlobalPoolBranch for 4).

    Typical use: ``build_stage_branches(bb.stage_channels, bb.base_channels, bb.feature_dim)``
    for a :class:`~hac_tf.models.resnet.ResNetBackbone` ``bb``.
    """
    branches: List[keras.layers.Layer] = []
    for level in levels:
        if level == 4:
            branch: keras.layers.Layer = GlobalPoolBranch(feature_dim, name=f"{name_prefix}{level}")
        else:
            branch = StageBranch(
                level,
                stage_channels[level - 1],
                base_channels,
                feature_dim,
                sync_bn=sync_bn,
                name=f"{name_prefix}{level}",
            )
        branch.build((None, None, None, int(stage_channels[level - 1])))
        branches.append(branch)
    return branches
