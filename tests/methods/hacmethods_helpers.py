"""Shared helpers of the hac_tf.methods tests (imported by the test modules, not collected)."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from hac_tf.augment.params import identity_params
from hac_tf.methods import ModelSpec

SMALL = dict(width_multiplier=0.125, embed_dim=16, projector_hidden_dim=64, projector_out_dim=32)


def small_spec(method: str, **overrides) -> ModelSpec:
    """A narrow ResNet-18 (width 0.125, CIFAR stem) spec with 64/32 heads."""
    kwargs = dict(SMALL)
    if method in ("byol", "simsiam"):
        kwargs["predictor_hidden_dim"] = 32
    if method == "moco":
        kwargs["moco_queue_size"] = 64
    kwargs.update(overrides)
    return ModelSpec(method=method, **kwargs)


def random_params(rng: np.random.Generator, batch: int) -> Dict[str, tf.Tensor]:
    """Identity recorded parameters with random colour-jitter factors."""
    params = identity_params(batch)
    jitter = np.concatenate(
        [rng.uniform(0.6, 1.4, (batch, 3)), rng.uniform(-0.1, 0.1, (batch, 1))], axis=1
    )
    params["jitter"] = tf.constant(jitter, tf.float32)
    params["jitter_applied"] = tf.ones([batch, 1], tf.float32)
    return params


def random_batch(
    rng: np.random.Generator, num_levels: int, batch: int = 4, size: int = 32
) -> Dict[str, Dict[str, object]]:
    """{"level_k": {view_a, view_b, params_a, params_b}} with random images in [0, 1]."""
    out = {}
    for k in range(num_levels):
        out[f"level_{k + 1}"] = {
            "view_a": tf.constant(rng.random((batch, size, size, 3), dtype=np.float32)),
            "view_b": tf.constant(rng.random((batch, size, size, 3), dtype=np.float32)),
            "params_a": random_params(rng, batch),
            "params_b": random_params(rng, batch),
        }
    return out


def assert_vars_equal(a: Sequence, b: Sequence, atol: float = 0.0) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)
