"""Shared helpers of the hac_tf.plugins tests (imported by the test modules, not collected)."""

from __future__ import annotations

import os
from typing import Dict, List, Sequence

import keras
import numpy as np
import tensorflow as tf

from hac_tf.augment.params import identity_params
from hac_tf.methods import HierarchicalContrastiveModel, ModelSpec

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_FMNIST = os.path.join(TESTS, "fixtures", "fashion_mnist")
SMALL = dict(width_multiplier=0.125, embed_dim=8, projector_hidden_dim=32, projector_out_dim=16)
TINY_EQUIMOD = dict(hidden_dim=32, out_dim=16, param_dim=8)
TINY_AUGSELF = dict(hidden_dim=16)
TINY_VIEWMAKER = dict(base_channels=4, num_res_blocks=2)


def small_spec(method: str, **overrides) -> ModelSpec:
    kwargs = dict(SMALL)
    if method in ("byol", "simsiam"):
        kwargs["predictor_hidden_dim"] = 16
    if method == "moco":
        kwargs["moco_queue_size"] = 32
    kwargs.update(overrides)
    return ModelSpec(method=method, **kwargs)


def build(spec: ModelSpec, seed: int = 0) -> HierarchicalContrastiveModel:
    keras.utils.set_random_seed(seed)
    return HierarchicalContrastiveModel(spec)


def random_params(rng: np.random.Generator, batch: int) -> Dict[str, tf.Tensor]:
    """Recorded parameters with random crops, flips, jitter, grayscale and blur."""
    p = identity_params(batch)
    y0 = rng.uniform(0, 0.5, batch)
    x0 = rng.uniform(0, 0.5, batch)
    p["crop"] = tf.constant(np.stack([y0, x0, y0 + rng.uniform(0.3, 0.5, batch),
                                      x0 + rng.uniform(0.3, 0.5, batch)], 1), tf.float32)
    p["flip"] = tf.constant(rng.integers(0, 2, (batch, 1)), tf.float32)
    applied = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    jit = np.concatenate([rng.uniform(0.6, 1.4, (batch, 3)), rng.uniform(-0.1, 0.1, (batch, 1))], 1)
    p["jitter"] = tf.constant(np.where(applied > 0, jit, [1.0, 1.0, 1.0, 0.0]), tf.float32)
    p["jitter_applied"] = tf.constant(applied)
    p["grayscale"] = tf.constant(rng.integers(0, 2, (batch, 1)), tf.float32)
    p["blur_sigma"] = tf.constant(rng.uniform(0.1, 2.0, (batch, 1)) * rng.integers(0, 2, (batch, 1)), tf.float32)
    return p


def random_batch(rng: np.random.Generator, num_levels: int, batch: int = 4, size: int = 32) -> Dict[str, object]:
    """{"level_k": {view_a, view_b, params_a, params_b}, "images": uint8 [B, S, S, 3]}."""
    out: Dict[str, object] = {}
    for k in range(num_levels):
        out[f"level_{k + 1}"] = {
            "view_a": tf.constant(rng.random((batch, size, size, 3), dtype=np.float32)),
            "view_b": tf.constant(rng.random((batch, size, size, 3), dtype=np.float32)),
            "params_a": random_params(rng, batch),
            "params_b": random_params(rng, batch),
        }
    out["images"] = tf.constant(rng.integers(0, 256, (batch, size, size, 3)), tf.uint8)
    return out


def copy_weights(src, dst) -> None:
    """dst's variables <- src's, matched by Keras path (dst's paths must all exist in src)."""
    source = src.checkpoint_variables()
    for path, v in dst.checkpoint_variables().items():
        v.assign(source[path])


def loss_and_grads(model, batch, variables: Sequence, step=None, training=True):
    with tf.GradientTape() as tape:
        loss, metrics = model.compute_loss(batch, training=training, step=step)
    return loss, metrics, tape.gradient(loss, list(variables))


def base_paths(model) -> List[str]:
    return list(model.checkpoint_variables())
