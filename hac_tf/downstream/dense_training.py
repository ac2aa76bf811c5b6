"""The training loop of the dense transfers: plain ``tf.GradientTape`` steps with a tf_keras
optimizer and a ``tf_keras.utils.Progbar`` (Model Garden models are tf_keras models), and how much
the backbone's variables moved.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Dict, List, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

__all__ = ["snapshot_variables", "train_dense", "variables_change"]


def snapshot_variables(variables: Sequence[tf.Variable]) -> List[np.ndarray]:
    """Copies of the variables' current values (for :func:`variables_change`)."""
    return [np.array(v.numpy(), copy=True) for v in variables]


def variables_change(before: Sequence[np.ndarray], variables: Sequence[tf.Variable]) -> Dict[str, Any]:
    """How much ``variables`` moved since ``before``: counts and the largest / mean |change|."""
    deltas = [np.abs(v.numpy().astype(np.float64) - b) for b, v in zip(before, variables)]
    changed = [bool(np.any(d > 0)) for d in deltas]
    return {
        "num_variables": len(deltas),
        "num_changed": int(sum(changed)),
        "max_abs_change": float(max((d.max() for d in deltas if d.size), default=0.0)),
        "mean_abs_change": float(np.mean([d.mean() for d in deltas if d.size])) if deltas else 0.0,
    }


def train_dense(model, dataset: tf.data.Dataset, loss_fn, steps: int, optimizer=None,
                learning_rate: float = 1e-3, verbose: int = 1, log_every: int = 1,
                use_tf_function: bool = True) -> Dict[str, Any]:
    """``steps`` gradient steps of ``model`` on ``dataset`` (``(images, labels)`` batches).

    ``loss_fn(outputs, labels) -> {"total_loss": ..., ...}``. Runs a ``tf.function`` step with a
    ``tf_keras`` optimizer (default Adam(``learning_rate``), gradients clipped to global norm 10).
    ``use_tf_function=False`` runs the step eagerly (no tracing: quicker for a step or two).
    Returns the per-step losses, wall time and the change of the backbone's trainable weights.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    optimizer = optimizer or tf_keras.optimizers.Adam(learning_rate, global_clipnorm=10.0)
    backbone_vars = list(model.backbone.trainable_variables)
    before = snapshot_variables(backbone_vars)
    bn_vars = list(model.backbone.non_trainable_variables)
    backbone_ids = {id(v) for v in backbone_vars}
    bn_before = snapshot_variables(bn_vars)

    def step(images, labels):
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            losses = loss_fn(outputs, labels)
        variables = model.trainable_variables
        grads = tape.gradient(losses["total_loss"], variables)
        backbone_grad_norm = tf.linalg.global_norm(
            [g for g, v in zip(grads, variables) if g is not None and id(v) in backbone_ids]
            or [tf.zeros([])])
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return dict(losses, backbone_grad_norm=backbone_grad_norm)

    if use_tf_function:
        step = tf.function(step)

    history: Dict[str, List[float]] = collections.defaultdict(list)
    progbar = tf_keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=None) if verbose else None
    start = time.time()
    for i, (images, labels) in enumerate(dataset.take(steps)):
        values = {k: float(v) for k, v in step(images, labels).items()}
        for k, v in values.items():
            history[k].append(v)
        if progbar is not None and ((i + 1) % log_every == 0 or i + 1 == steps):
            progbar.update(i + 1, [(k, v) for k, v in values.items() if k != "backbone_grad_norm"])
    seconds = time.time() - start
    if not history:
        raise ValueError("the training dataset produced no batch")
    return {
        "steps": len(history["total_loss"]),
        "seconds": seconds,
        "losses": dict(history),
        "first_loss": history["total_loss"][0],
        "final_loss": history["total_loss"][-1],
        "backbone_trainable_change": variables_change(before, backbone_vars),
        "backbone_bn_statistics_change": variables_change(bn_before, bn_vars),
    }
