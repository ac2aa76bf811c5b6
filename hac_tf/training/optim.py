"""Optimizers and learning-rate schedules for pretraining.

* ``WarmupCosine``: linear warm-up from 0 to the peak lr, then per-step cosine decay to 0.
* ``LARS`` written for the Keras 3 optimizer API: SGD with momentum where each weight matrix's
  update is scaled by the trust ratio eta*||w|| / ||g + wd*w||; rank <= 1 variables (BN gamma/beta,
  biases) get neither weight decay nor adaptation.
* SGD uses *coupled* L2 weight decay (g + wd*w, PyTorch semantics, as the paper's code) applied
  by the train loop through ``apply_weight_decay``; AdamW uses Keras' decoupled decay with BN and
  biases excluded.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import keras
import tensorflow as tf


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = peak * step / warmup  (step < warmup),  else peak * 0.5 (1 + cos(pi * t)),
    t = (step - warmup) / (total - warmup); ``cosine=False`` keeps the peak after warm-up."""

    def __init__(self, peak_lr: float, total_steps: int, warmup_steps: int = 0, cosine: bool = True):
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(min(warmup_steps, total_steps))
        self.cosine = bool(cosine)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.peak_lr, tf.float32)
        if self.warmup_steps > 0:
            warm = peak * step / float(self.warmup_steps)
        else:
            warm = peak
        if self.cosine:
            span = float(max(self.total_steps - self.warmup_steps, 1))
            t = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            decayed = peak * 0.5 * (1.0 + tf.cos(math.pi * t))
        else:
            decayed = peak
        return tf.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "cosine": self.cosine}


def excluded_from_decay(variable) -> bool:
    """BN parameters and biases (rank <= 1) are excluded from weight decay / LARS adaptation."""
    return len(variable.shape) <= 1


class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) on the Keras 3 optimizer API.

    For a variable w with gradient g (rank >= 2):
        d = g + wd * w;  trust = eta * ||w|| / ||d||  (1 if either norm is 0);  v = m v + lr * trust * d;  w -= v
    Rank <= 1 variables: d = g, trust = 1.
    """

    def __init__(self, learning_rate=0.1, momentum: float = 0.9, weight_decay_rate: float = 1e-6,
                 eta: float = 1e-3, name: str = "lars", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LARS momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.weight_decay_rate = float(weight_decay_rate)
        self.eta = float(eta)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        lr = tf.cast(learning_rate, variable.dtype)
        g = tf.cast(gradient, variable.dtype)
        v = self._velocities[self._get_variable_index(variable)]
        if not excluded_from_decay(variable):
            w = tf.convert_to_tensor(variable)
            g = g + self.weight_decay_rate * w
            w_norm = tf.norm(w)
            g_norm = tf.norm(g)
            trust = tf.where((w_norm > 0) & (g_norm > 0), self.eta * w_norm / g_norm, 1.0)
            g = g * tf.cast(trust, g.dtype)
        self.assign(v, self.momentum * v + lr * g)
        self.assign_sub(variable, v)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "weight_decay_rate": self.weight_decay_rate, "eta": self.eta})
        return config


def peak_learning_rate(base_lr: float, batch_size: int, scaling: str) -> float:
    """base_lr * batch_size / 256 for 'linear' scaling (Goyal et al.), base_lr for 'none'."""
    if scaling == "linear":
        return base_lr * batch_size / 256.0
    if scaling == "none":
        return base_lr
    raise ValueError(f"unknown lr scaling {scaling!r}; allowed: linear, none")


def build_optimizer(name: str, learning_rate, momentum: float = 0.9, weight_decay: float = 0.0,
                    lars_eta: float = 1e-3, clipnorm: float = 0.0, var_names_excluded: Sequence[str] = ()):
    """sgd | lars | adamw. For sgd, weight decay is applied by ``apply_weight_decay`` (coupled)."""
    extra = {"global_clipnorm": clipnorm} if clipnorm > 0 else {}
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, **extra)
    if name == "lars":
        return LARS(learning_rate=learning_rate, momentum=momentum, weight_decay_rate=weight_decay,
                    eta=lars_eta, **extra)
    if name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay, **extra)
        return opt
    raise ValueError(f"unknown optimizer {name!r}; allowed: adamw, lars, sgd")


def apply_weight_decay(grads: List[Optional[tf.Tensor]], variables: Sequence[tf.Variable],
                       weight_decay: float) -> List[Optional[tf.Tensor]]:
    """Coupled L2 decay for SGD: g + wd * w on every variable (PyTorch SGD(weight_decay=...))."""
    if weight_decay <= 0:
        return list(grads)
    return [None if g is None else g + tf.cast(weight_decay, g.dtype) * tf.cast(v, g.dtype)
            for g, v in zip(grads, variables)]
