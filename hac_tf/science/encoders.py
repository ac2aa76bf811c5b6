"""The features the colour benchmark measures: GAP of every backbone stage and the projector output."""

from __future__ import annotations

from typing import Callable, Dict

import tensorflow as tf

from hac_tf.augment.params import identity_params

__all__ = ["FEATURE_NAMES", "benchmark_encoder"]

#: names of the measured features, shallow to deep
FEATURE_NAMES = ("stage1", "stage2", "stage3", "stage4", "projector")


def benchmark_encoder(model) -> Callable[[tf.Tensor], Dict[str, tf.Tensor]]:
    """A traced function: float32 images ``[B, S, S, 3]`` in [0, 1] -> ``{name: float32 [B, D]}``.

    ``stage1``..``stage4``: global-average-pooled backbone stages (``model.encode``).
    ``projector``: the last level's projector output (the deepest level; inference mode); a
    level with a parameter embedding gets the embedding of the identity parameters (a clean
    image was not augmented).
    """
    level = model.spec.num_levels - 1
    tower = model.online

    @tf.function(reduce_retracing=True, autograph=False)
    def encode(images: tf.Tensor) -> Dict[str, tf.Tensor]:
        out = {k: v for k, v in model.encode(images, training=False).items() if k.startswith("stage")}
        params = None
        embedding = tower.embedding(level)
        if embedding is not None:
            params = embedding.encode(identity_params(tf.shape(images)[0]))
        z = tower.project(level, images, params, training=False)
        out["projector"] = tf.cast(z, tf.float32)
        return out

    return encode
