"""Schedules and optimizers against hand-computed references."""

import math

import numpy as np
import tensorflow as tf

from hac_tf.training.optim import LARS, WarmupCosine, apply_weight_decay, peak_learning_rate


def test_warmup_cosine_values():
    s = WarmupCosine(1.0, total_steps=110, warmup_steps=10)
    assert float(s(0)) == 0.0
    assert abs(float(s(5)) - 0.5) < 1e-6
    assert abs(float(s(10)) - 1.0) < 1e-6
    assert abs(float(s(60)) - 0.5 * (1 + math.cos(math.pi * 0.5))) < 1e-6
    assert abs(float(s(110))) < 1e-6
    assert abs(float(WarmupCosine(2.0, 10, 0, cosine=False)(7)) - 2.0) < 1e-6


def test_linear_lr_scaling():
    assert peak_learning_rate(0.05, 512, "linear") == 0.1
    assert peak_learning_rate(0.05, 512, "none") == 0.05


def test_lars_matches_numpy_reference():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    b0 = rng.normal(size=(3,)).astype(np.float32)
    w, b = tf.Variable(w0), tf.Variable(b0)
    opt = LARS(learning_rate=0.1, momentum=0.9, weight_decay_rate=0.01, eta=0.001)
    vw, vb = np.zeros_like(w0), np.zeros_like(b0)
    rw, rb = w0.astype(np.float64), b0.astype(np.float64)
    for _ in range(3):
        gw = rng.normal(size=w0.shape).astype(np.float32)
        gb = rng.normal(size=b0.shape).astype(np.float32)
        opt.apply_gradients([(tf.constant(gw), w), (tf.constant(gb), b)])
        d = gw + 0.01 * rw
        trust = 0.001 * np.linalg.norm(rw) / np.linalg.norm(d)
        vw = 0.9 * vw + 0.1 * trust * d
        rw = rw - vw
        vb = 0.9 * vb + 0.1 * gb  # bias: no decay, no adaptation
        rb = rb - vb
    np.testing.assert_allclose(w.numpy(), rw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.numpy(), rb, rtol=1e-5, atol=1e-6)


def test_coupled_weight_decay():
    v = tf.Variable([1.0, -2.0])
    (g,) = apply_weight_decay([tf.constant([0.5, 0.5])], [v], 0.1)
    np.testing.assert_allclose(g.numpy(), [0.6, 0.3])


def test_adamw_run_decays_kernels_but_not_biases_or_batchnorm(tmp_path):
    """The trainer's AdamW excludes exactly the rank <= 1 variables (optim.excluded_from_decay)."""
    from hac_tf.training.config import load_config
    from hac_tf.training.trainer import Trainer
    from tiny import tiny_overrides

    config = load_config(None, tiny_overrides("model.method=simclr", "optimizer.name=adamw",
                                              "optimizer.weight_decay=0.05"))
    trainer = Trainer(config, str(tmp_path / "run"))
    decayed = {v.path for v in trainer.main_vars if trainer.optimizer._use_weight_decay(v)}
    kernels = {v.path for v in trainer.main_vars if len(v.shape) >= 2}
    assert decayed == kernels and kernels and len(kernels) < len(trainer.main_vars)
