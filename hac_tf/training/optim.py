"""Optimizers and learning-rate schedules for pretraining.

* ``WarmupCosine``: linear warm-up from 0 to the peak lr, then per-step cosine decay to 0.
* ``LARS`` written for the Keras 3 optimizer API: SGD with momentum where each weight matrix's
  update is scaled by the trust ratio eta*||w|| / ||g + wd*w||; rank <= 1 variables (BN gamma/beta,
  biases) get neither weight decay nor adaptation.
* ``CoupledSGD``: SGD with momentum and *coupled* L2 weight decay (g + wd*w on every variable,
  PyTorch semantics, as the paper's code), one fused in-place update per variable; AdamW uses
  Keras' decoupled decay with BN and biases excluded.

Memory: the step's updates must not make per-parameter temporaries before the backward pass has
produced the parameter's gradient. A term that depends only on the weights or the optimizer's
slots (``momentum * v``, ``wd * w``) depends on nothing the step computes, so TensorFlow's executor
runs it as soon as the step starts and holds the result through the whole backward pass: one extra
copy of the parameters per such term. Keras' SGD with the decay added to the gradients held two
(0.25 GB each for the 62.3 M-parameter paper model: the step's one-call peak at batch 16, 32 px,
fell from 0.55-0.61 GB to 0.29-0.33 GB with the updates below; docs/PERFORMANCE.md).
So every read of a weight or a slot in an update here waits for that weight's gradient. What stays
is one copy of the gradients (Keras joins them in one all-reduce before any update, as PyTorch keeps
``.grad`` until ``step()``); updating each weight as soon as its gradient exists does not save it
here (measured: 0.29-0.33 GB either way), since a weight updated while the backward pass still
holds its value is copied first.
"""

from __future__ import annotations

import math

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


def after_gradient(gradient: tf.Tensor):
    """Context in which ops wait for ``gradient``: reads of the weight and its slots made inside it
    happen when the gradient exists, not at the start of the step (see the module docstring)."""
    return tf.control_dependencies([gradient])


class CoupledSGD(keras.optimizers.SGD):
    """SGD with momentum and coupled L2 weight decay, Keras' velocity convention:

        d = g + wd * w;   v = momentum * v - lr * d;   w += v      (every variable, BN included)

    which is PyTorch's ``SGD(momentum, weight_decay)`` at a constant learning rate (PyTorch keeps
    ``v`` in gradient units and multiplies by the current lr; Keras folds lr into ``v``). The
    update is TensorFlow's fused in-place kernel ``ResourceApplyKerasMomentum`` (one pass over the
    weight, its velocity and its gradient; no temporaries), and ``wd * w`` is read only once the
    gradient exists. The decay is applied to the gradient *after* the replicas' gradients are
    summed and after Keras' clipping (``global_clipnorm`` clips g, as PyTorch's clip_grad_norm_
    before ``step()``). Slots and checkpoint layout are Keras' SGD's (``momentums``).
    """

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, coupled_weight_decay: float = 0.0,
                 nesterov: bool = False, name: str = "SGD", **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs)
        if coupled_weight_decay < 0:
            raise ValueError(f"coupled_weight_decay must be >= 0, got {coupled_weight_decay}")
        self.coupled_weight_decay = float(coupled_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        g = tf.cast(gradient, dtype)
        with after_gradient(g):
            lr = tf.cast(learning_rate, dtype)
            if self.coupled_weight_decay > 0:
                g = g + tf.cast(self.coupled_weight_decay, dtype) * tf.convert_to_tensor(variable)
            if self.momentum == 0:
                variable.assign_sub(lr * g)
                return
            velocity = self.momentums[self._get_variable_index(variable)]
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=variable.handle, accum=velocity.handle, lr=lr, grad=g,
                momentum=tf.cast(self.momentum, dtype), use_locking=False, use_nesterov=self.nesterov)

    def get_config(self):
        config = super().get_config()
        config["coupled_weight_decay"] = self.coupled_weight_decay
        return config


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
        g = tf.cast(gradient, variable.dtype)
        with after_gradient(g):  # reads of w and v wait for g (module docstring: memory)
            lr = tf.cast(learning_rate, variable.dtype)
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
                    lars_eta: float = 1e-3, clipnorm: float = 0.0):
    """sgd (``CoupledSGD``: coupled decay on every variable) | lars | adamw."""
    extra = {"global_clipnorm": clipnorm} if clipnorm > 0 else {}
    if name == "sgd":
        return CoupledSGD(learning_rate=learning_rate, momentum=momentum, coupled_weight_decay=weight_decay, **extra)
    if name == "lars":
        return LARS(learning_rate=learning_rate, momentum=momentum, weight_decay_rate=weight_decay,
                    eta=lars_eta, **extra)
    if name == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay, **extra)
        return opt
    raise ValueError(f"unknown optimizer {name!r}; allowed: adamw, lars, sgd")
