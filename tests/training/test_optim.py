"""Schedules and optimizers against hand-computed references."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.training.optim import LARS, CoupledSGD, WarmupCosine, build_optimizer, peak_learning_rate


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


def _sgd_reference(w0, grads, lr, momentum, wd, nesterov=False):
    """Keras' velocity convention with PyTorch's coupled decay, float64."""
    w, v = w0.astype(np.float64), np.zeros_like(w0, np.float64)
    for g in grads:
        d = g + wd * w
        v = momentum * v - lr * d
        w = w + (momentum * v - lr * d if nesterov else v)
    return w


@pytest.mark.parametrize("momentum,wd,nesterov", [(0.9, 0.01, False), (0.9, 0.0, False), (0.0, 0.01, False),
                                                  (0.9, 0.01, True)])
def test_coupled_sgd_matches_numpy_reference(momentum, wd, nesterov):
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    b0 = rng.normal(size=(3,)).astype(np.float32)
    w, b = tf.Variable(w0), tf.Variable(b0)
    opt = CoupledSGD(learning_rate=0.1, momentum=momentum, coupled_weight_decay=wd, nesterov=nesterov)
    gws = [rng.normal(size=w0.shape).astype(np.float32) for _ in range(3)]
    gbs = [rng.normal(size=b0.shape).astype(np.float32) for _ in range(3)]

    @tf.function
    def apply(gw, gb):  # graph mode, as in the train step
        opt.apply_gradients([(gw, w), (gb, b)])

    for gw, gb in zip(gws, gbs):
        apply(tf.constant(gw), tf.constant(gb))
    np.testing.assert_allclose(w.numpy(), _sgd_reference(w0, gws, 0.1, momentum, wd, nesterov), rtol=1e-5, atol=1e-6)
    # every variable is decayed, biases and BN included (PyTorch's SGD(weight_decay=...))
    np.testing.assert_allclose(b.numpy(), _sgd_reference(b0, gbs, 0.1, momentum, wd, nesterov), rtol=1e-5, atol=1e-6)


def test_coupled_sgd_equals_keras_sgd_on_decayed_gradients():
    """The fused kernel computes what Keras' SGD computes on g + wd*w (the pre-0.3 train loop)."""
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(5, 2)).astype(np.float32)
    ours, theirs = tf.Variable(w0), tf.Variable(w0)
    a = CoupledSGD(learning_rate=0.05, momentum=0.9, coupled_weight_decay=1e-4)
    k = keras.optimizers.SGD(learning_rate=0.05, momentum=0.9)
    for _ in range(4):
        g = tf.constant(rng.normal(size=w0.shape).astype(np.float32))
        a.apply_gradients([(g, ours)])
        k.apply_gradients([(g + 1e-4 * tf.convert_to_tensor(theirs), theirs)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)


def _reads_before_gradient(opt, shapes):
    """Ops of a traced ``apply_gradients`` that read a variable (weight or slot) and can run before
    the gradient they update with exists: no path from the gradient placeholder to them."""
    variables = [tf.Variable(tf.ones(s)) for s in shapes]
    opt.build(variables)
    fn = tf.function(lambda *gs: opt.apply_gradients(list(zip(gs, variables))))
    graph = fn.get_concrete_function(*[tf.TensorSpec(s, tf.float32) for s in shapes]).graph
    grads = {t.op for t in graph.inputs[:len(shapes)]}
    after = set(grads)
    changed = True
    ops = graph.get_operations()
    while changed:  # ops reachable from a gradient by data or control edges
        changed = False
        for op in ops:
            if op not in after and (any(t.op in after for t in op.inputs) or any(c in after for c in op.control_inputs)):
                after.add(op)
                changed = True
    big = [op for op in ops if op.type == "ReadVariableOp" and op.outputs[0].shape.num_elements() not in (None, 1)]
    return [op.name for op in big if op not in after]


@pytest.mark.parametrize("name", ["sgd", "lars"])
def test_updates_read_no_weight_before_its_gradient(name):
    """No full-size read of a weight or slot may run before its gradient exists: such a read (and
    the product made from it) would be computed at the step's start and held through the whole
    backward pass, one extra copy of the parameters (module docstring of hac_tf.training.optim)."""
    opt = build_optimizer(name, 0.1, momentum=0.9, weight_decay=1e-4)
    assert _reads_before_gradient(opt, [(64, 32), (32,)]) == []


def test_keras_sgd_reads_before_the_gradient():
    """The test above can fail: Keras' own SGD reads its velocity (momentum * v) before the gradient."""
    assert _reads_before_gradient(keras.optimizers.SGD(0.1, momentum=0.9), [(64, 32), (32,)])


def test_coupled_sgd_rejects_negative_decay():
    with pytest.raises(ValueError, match="coupled_weight_decay"):
        CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=-1.0)


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
