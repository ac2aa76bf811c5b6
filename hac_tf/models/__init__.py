"""hac_tf.models: multi-depth backbones, stage branches, embedding MLP, projector/predictor.

Conventions: images enter a backbone as float32 ``[B,H,W,3]`` in [0,1] (the backbone normalises
them); all BatchNorms come from :func:`batch_norm`; every custom layer has ``get_config`` and is
registered as ``hac_tf>ClassName`` for Keras serialization.
"""

from hac_tf.models.branches import (
    GlobalPoolBranch,
    SepConv,
    StageBranch,
    build_stage_branches,
    resize_like,
)
from hac_tf.models.heads import EmbeddingMLP, PredictionMLP, ProjectionMLP
from hac_tf.models.layers import IMAGENET_MEAN, IMAGENET_STD, Normalize, batch_norm, per_view_batch_norm, scaled_width
from hac_tf.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNetBackbone,
    ResNetStage,
    ResNetStem,
    build_functional_backbone,
    build_resnet,
)

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "EmbeddingMLP",
    "GlobalPoolBranch",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Normalize",
    "PredictionMLP",
    "ProjectionMLP",
    "ResNetBackbone",
    "ResNetStage",
    "ResNetStem",
    "SepConv",
    "StageBranch",
    "batch_norm",
    "per_view_batch_norm",
    "build_functional_backbone",
    "build_resnet",
    "build_stage_branches",
    "resize_like",
    "scaled_width",
]
