"""Multi-depth ResNet backbones (18 / 34 / 50) with per-stage outputs (docs/METHODS.md#stage-branches).

torchvision layout (ResNet-50 is v1.5: the stride sits on the 3x3 conv of the bottleneck):

  stem   cifar:    [0,1] images -> Normalize -> conv3x3 s1 p1 -> BN -> ReLU
         imagenet: [0,1] images -> Normalize -> conv7x7 s2 p3 -> BN -> ReLU -> maxpool3x3 s2 p1
  stage1 blocks at width 64·w,  stride 1      -> [B, H1, W1, 64·w·exp]
  stage2 blocks at width 128·w, stride 2      -> [B, H1/2, W1/2, 128·w·exp]
  stage3 blocks at width 256·w, stride 2      -> [B, H1/4, W1/4, 256·w·exp]
  stage4 blocks at width 512·w, stride 2      -> [B, H1/8, W1/8, 512·w·exp]

H1 = H (cifar stem) or ceil(ceil(H/2)/2) (imagenet stem); exp = 1 (18/34) or 4 (50).

``ResNetBackbone(images, training, max_stage=k)`` runs only the stem and stages 1..k (a level-k
view of the hierarchical method never touches deeper stages) and returns
``{"stage1": ..., "stage{k}": ...}``. ``functional_model()`` wraps the very same layer objects in a
plain Keras 3 functional model (shared weights) for export.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from hac_tf.models.layers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    Shape,
    apply_chain,
    batch_norm,
    build_chain,
    chain_output_shape,
    conv_layers,
    scaled_width,
)

# depth -> (block type, blocks per stage)
RESNET_SPECS: Dict[int, Tuple[str, Tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
STEMS: Tuple[str, ...] = ("cifar", "imagenet")
BASE_WIDTHS: Tuple[int, int, int, int] = (64, 128, 256, 512)
EXPANSION: Dict[str, int] = {"basic": 1, "bottleneck": 4}
NUM_STAGES = 4


class _ResidualBlock(keras.layers.Layer):
    """Common part of the residual blocks: ``relu(residual(x) + shortcut(x))``.

    Subclasses fill ``self.residual_layers`` (ending with the zero-initialisable BN) and
    ``self.shortcut_layers`` (1x1 conv stride s + BN, or empty for the identity shortcut).
    """

    expansion: int = 1

    def __init__(
        self,
        in_channels: int,
        filters: int,
        stride: int = 1,
        sync_bn: bool = False,
        zero_init_residual: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.in_channels = int(in_channels)
        self.filters = int(filters)
        self.stride = int(stride)
        self.sync_bn = bool(sync_bn)
        self.zero_init_residual = bool(zero_init_residual)
        self.out_channels = self.filters * self.expansion
        self.residual_layers: List[keras.layers.Layer] = self._make_residual()
        self.shortcut_layers: List[keras.layers.Layer] = []
        if self.stride != 1 or self.in_channels != self.out_channels:
            self.shortcut_layers = conv_layers(
                self.out_channels, 1, stride=self.stride, name="downsample_conv"
            ) + [batch_norm(self.sync_bn, name="downsample_bn")]

    def _make_residual(self) -> List[keras.layers.Layer]:
        raise NotImplementedError

    @property
    def last_bn(self) -> keras.layers.BatchNormalization:
        """The BN closing the residual path (gamma = 0 when ``zero_init_residual``)."""
        return self.residual_layers[-1]

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] is not None and input_shape[-1] != self.in_channels:
            raise ValueError(
                f"{self.name}: expected {self.in_channels} input channels, got {input_shape}"
            )
        build_chain(self.residual_layers, input_shape)
        build_chain(self.shortcut_layers, input_shape)

    def residual(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Residual path ``[B,H,W,Cin] -> [B,H/s,W/s,Cout]`` (before the add)."""
        return apply_chain(self.residual_layers, x, training)

    def shortcut(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        """Shortcut path ``[B,H,W,Cin] -> [B,H/s,W/s,Cout]`` (identity or 1x1 conv + BN)."""
        return apply_chain(self.shortcut_layers, x, training)

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        return tf.nn.relu(self.residual(x, training) + self.shortcut(x, training))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return chain_output_shape(self.residual_layers, input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            in_channels=self.in_channels,
            filters=self.filters,
            stride=self.stride,
            sync_bn=self.sync_bn,
            zero_init_residual=self.zero_init_residual,
        )
        return config


@keras.saving.register_keras_serializable(package="hac_tf")
class BasicBlock(_ResidualBlock):
    """ResNet-18/34 block: conv3x3(s) → BN → ReLU → conv3x3 → BN (+ shortcut) → ReLU. exp = 1."""

    expansion = 1

    def _make_residual(self) -> List[keras.layers.Layer]:
        return (
            conv_layers(self.filters, 3, stride=self.stride, padding=1, name="conv1")
            + [batch_norm(self.sync_bn, name="bn1"), keras.layers.ReLU(name="relu1")]
            + conv_layers(self.filters, 3, stride=1, padding=1, name="conv2")
            + [batch_norm(self.sync_bn, gamma_zero=self.zero_init_residual, name="bn2")]
        )


@keras.saving.register_keras_serializable(package="hac_tf")
class Bottleneck(_ResidualBlock):
    """ResNet-50 (v1.5) block: 1x1 → BN → ReLU → 3x3(s) → BN → ReLU → 1x1(4f) → BN. exp = 4."""

    expansion = 4

    def _make_residual(self) -> List[keras.layers.Layer]:
        return (
            conv_layers(self.filters, 1, name="conv1")
            + [batch_norm(self.sync_bn, name="bn1"), keras.layers.ReLU(name="relu1")]
            + conv_layers(self.filters, 3, stride=self.stride, padding=1, name="conv2")
            + [batch_norm(self.sync_bn, name="bn2"), keras.layers.ReLU(name="relu2")]
            + conv_layers(self.filters * 4, 1, name="conv3")
            + [batch_norm(self.sync_bn, gamma_zero=self.zero_init_residual, name="bn3")]
        )


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


@keras.saving.register_keras_serializable(package="hac_tf")
class ResNetStem(keras.layers.Layer):
    """``[B,H,W,3]`` images in [0,1] → normalised → stem conv → ``[B,H',W',C]``.

    cifar: conv3x3 s1 p1 → BN → ReLU (H' = H). imagenet: conv7x7 s2 p3 → BN → ReLU →
    maxpool3x3 s2 p1 (H' = ceil(ceil(H/2)/2)). The max-pool pads with zeros instead of -inf;
    this is equivalent because its input is post-ReLU (>= 0).
    """

    def __init__(
        self,
        stem: str = "cifar",
        filters: int = 64,
        sync_bn: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; allowed: {list(STEMS)}")
        self.stem = stem
        self.filters = int(filters)
        self.sync_bn = bool(sync_bn)
        self.normalize = Normalize(mean, std, name="normalize")
        if stem == "cifar":
            convs = conv_layers(self.filters, 3, stride=1, padding=1, name="conv1")
        else:
            convs = conv_layers(self.filters, 7, stride=2, padding=3, name="conv1")
        self.stem_layers: List[keras.layers.Layer] = (
            [self.normalize]
            + convs
            + [batch_norm(self.sync_bn, name="bn1"), keras.layers.ReLU(name="relu1")]
        )
        if stem == "imagenet":
            self.stem_layers += [
                keras.layers.ZeroPadding2D(1, name="maxpool_pad"),
                keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool"),
            ]

    def build(self, input_shape: Shape) -> None:
        build_chain(self.stem_layers, input_shape)

    def call(self, images: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        return apply_chain(self.stem_layers, images, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return chain_output_shape(self.stem_layers, input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            stem=self.stem,
            filters=self.filters,
            sync_bn=self.sync_bn,
            mean=list(self.normalize.mean),
            std=list(self.normalize.std),
        )
        return config


@keras.saving.register_keras_serializable(package="hac_tf")
class ResNetStage(keras.layers.Layer):
    """One ResNet stage: ``num_blocks`` blocks, the first with ``stride`` and the projection.

    ``[B,H,W,in_channels] -> [B,H/stride,W/stride,filters*exp]``.

    ``call_count`` counts Python executions of ``call`` (one per eager call, one per trace in
    graph mode); tests use it to check that ``max_stage`` skips deeper stages.
    """

    def __init__(
        self,
        block: str,
        in_channels: int,
        filters: int,
        num_blocks: int,
        stride: int = 1,
        sync_bn: bool = False,
        zero_init_residual: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; allowed: {sorted(BLOCKS)}")
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.block = block
        self.in_channels = int(in_channels)
        self.filters = int(filters)
        self.num_blocks = int(num_blocks)
        self.stride = int(stride)
        self.sync_bn = bool(sync_bn)
        self.zero_init_residual = bool(zero_init_residual)
        cls = BLOCKS[block]
        self.out_channels = self.filters * cls.expansion
        self.blocks: List[_ResidualBlock] = []
        cin = self.in_channels
        for i in range(self.num_blocks):
            self.blocks.append(
                cls(
                    cin,
                    self.filters,
                    stride=self.stride if i == 0 else 1,
                    sync_bn=self.sync_bn,
                    zero_init_residual=self.zero_init_residual,
                    name=f"block{i + 1}",
                )
            )
            cin = self.out_channels
        self.call_count = 0

    def build(self, input_shape: Shape) -> None:
        build_chain(self.blocks, input_shape)

    def call(self, x: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
        self.call_count += 1
        return apply_chain(self.blocks, x, training)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return chain_output_shape(self.blocks, input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            block=self.block,
            in_channels=self.in_channels,
            filters=self.filters,
            num_blocks=self.num_blocks,
            stride=self.stride,
            sync_bn=self.sync_bn,
            zero_init_residual=self.zero_init_residual,
        )
        return config


def _check_max_stage(max_stage: Optional[int]) -> int:
    if max_stage is None:
        return NUM_STAGES
    if isinstance(max_stage, bool) or int(max_stage) != max_stage or not 1 <= max_stage <= NUM_STAGES:
        raise ValueError(f"max_stage must be an int in 1..{NUM_STAGES}, got {max_stage!r}")
    return int(max_stage)


@keras.saving.register_keras_serializable(package="hac_tf")
class ResNetBackbone(keras.Model):
    """ResNet-18/34/50 backbone returning spatial stage maps.

    Call: ``backbone(images [B,H,W,3] float in [0,1], training=..., max_stage=k)`` →
    ``{"stage1": [B,H1,W1,C1], ..., "stage{k}": ...}`` — only the stem and stages 1..k run.

    Attributes:
      stem: :class:`ResNetStem` (includes the mean/std normalisation).
      stages: list of 4 :class:`ResNetStage`; stage k maps stage k-1's output to stage k's.
      base_channels: 4 un-expanded stage widths (64,128,256,512 scaled by width_multiplier).
      stage_channels: 4 output channel counts (base_channels * expansion).
      feature_dim: ``stage_channels[-1]`` (the GAP feature width).
      expansion: 1 (BasicBlock) or 4 (Bottleneck).
    """

    def __init__(
        self,
        depth: int = 18,
        stem: str = "cifar",
        width_multiplier: float = 1.0,
        sync_bn: bool = False,
        zero_init_residual: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        input_shape: Shape = (None, None, 3),
        name: Optional[str] = None,
        **kwargs,
    ) -> None:
        if depth not in RESNET_SPECS:
            raise ValueError(f"unknown ResNet depth {depth!r}; allowed: {sorted(RESNET_SPECS)}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; allowed: {list(STEMS)}")
        if not width_multiplier > 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
        super().__init__(name=name or f"resnet{depth}", **kwargs)
        block, blocks_per_stage = RESNET_SPECS[depth]
        self.depth = int(depth)
        self.stem_type = stem
        self.width_multiplier = float(width_multiplier)
        self.sync_bn = bool(sync_bn)
        self.zero_init_residual = bool(zero_init_residual)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.image_shape: Shape = tuple(input_shape)
        self.expansion = EXPANSION[block]
        self.base_channels: List[int] = [scaled_width(c, width_multiplier) for c in BASE_WIDTHS]
        self.stage_channels: List[int] = [c * self.expansion for c in self.base_channels]
        self.feature_dim: int = self.stage_channels[-1]

        self.stem = ResNetStem(stem, self.base_channels[0], sync_bn, mean, std, name="stem")
        self.stages: List[ResNetStage] = []
        cin = self.base_channels[0]
        for k in range(NUM_STAGES):
            self.stages.append(
                ResNetStage(
                    block,
                    cin,
                    self.base_channels[k],
                    blocks_per_stage[k],
                    stride=1 if k == 0 else 2,
                    sync_bn=sync_bn,
                    zero_init_residual=zero_init_residual,
                    name=f"stage{k + 1}",
                )
            )
            cin = self.stage_channels[k]

    def build(self, input_shape: Shape) -> None:
        build_chain([self.stem] + list(self.stages), input_shape)

    def call(
        self,
        images: tf.Tensor,
        training: Optional[bool] = None,
        max_stage: Optional[int] = NUM_STAGES,
    ) -> Dict[str, tf.Tensor]:
        """``[B,H,W,3]`` in [0,1] → ``{"stage1".."stage{max_stage}"}`` spatial maps."""
        k = _check_max_stage(max_stage)
        x = self.stem(images, training=training)
        out: Dict[str, tf.Tensor] = {}
        for i in range(k):
            x = self.stages[i](x, training=training)
            out[f"stage{i + 1}"] = x
        return out

    def stage_output_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        """Static shapes of the four stage maps for a ``[B,H,W,3]`` input shape."""
        shape = self.stem.compute_output_shape(tuple(input_shape))
        shapes = {}
        for i, stage in enumerate(self.stages):
            shape = stage.compute_output_shape(shape)
            shapes[f"stage{i + 1}"] = tuple(shape)
        return shapes

    def functional_model(
        self, input_shape: Optional[Shape] = None, name: Optional[str] = None
    ) -> keras.Model:
        """A plain functional ``keras.Model``: images → ``{"stage1".."stage4"}``.

        It is built from the same ``stem``/``stages`` layer objects, so it shares (not copies)
        every weight with this backbone.
        """
        shape = tuple(input_shape) if input_shape is not None else self.image_shape
        images = keras.Input(shape=shape, name="images", dtype="float32")
        x = self.stem(images)
        outputs: Dict[str, keras.KerasTensor] = {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            outputs[f"stage{i + 1}"] = x
        return keras.Model(images, outputs, name=name or f"{self.name}_functional")

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "depth": self.depth,
            "stem": self.stem_type,
            "width_multiplier": self.width_multiplier,
            "sync_bn": self.sync_bn,
            "zero_init_residual": self.zero_init_residual,
            "mean": list(self.mean),
            "std": list(self.std),
            "input_shape": list(self.image_shape),
        }


def build_resnet(
    depth: int = 18,
    stem: str = "cifar",
    width_multiplier: float = 1.0,
    sync_bn: bool = False,
    zero_init_residual: bool = True,
    input_shape: Shape = (None, None, 3),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    name: Optional[str] = None,
) -> ResNetBackbone:
    """Creates and builds (all weights created) a :class:`ResNetBackbone`.

    Raises ValueError for a depth not in (18, 34, 50), a stem not in ("cifar", "imagenet") or a
    width_multiplier <= 0.
    """
    model = ResNetBackbone(
        depth=depth,
        stem=stem,
        width_multiplier=width_multiplier,
        sync_bn=sync_bn,
        zero_init_residual=zero_init_residual,
        mean=mean,
        std=std,
        input_shape=input_shape,
        name=name,
    )
    model.build((None,) + tuple(input_shape))
    return model


def build_functional_backbone(
    backbone: Optional[ResNetBackbone] = None,
    input_shape: Optional[Shape] = None,
    name: Optional[str] = None,
    **resnet_kwargs,
) -> keras.Model:
    """Functional twin of ``backbone`` (weights shared); builds a new backbone from
    ``resnet_kwargs`` (see :func:`build_resnet`) when none is given."""
    if backbone is None:
        if input_shape is not None:
            resnet_kwargs["input_shape"] = input_shape
        backbone = build_resnet(**resnet_kwargs)
    return backbone.functional_model(input_shape=input_shape, name=name)
