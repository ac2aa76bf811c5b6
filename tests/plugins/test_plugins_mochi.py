"""MoCHi plug-in: synthetic logits vs an independent NumPy reference (queue and in-batch pools),
hardness ordering, s = s' = 0 equals plain InfoNCE / NT-Xent exactly, the start-step gate and
the config -> ModelSpec wiring."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hacplugins_helpers import FIXTURE_FMNIST, build, copy_weights, random_batch, small_spec

from hac_tf.losses import MochiConfig, MochiDraws, infonce_queue, nt_xent
from hac_tf.losses.mochi import mochi_hardest
from hac_tf.plugins import mochi_config


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def draws_for(rng, rows, n, s, sq):
    d = dict(mix_i=rng.integers(0, n, (rows, s)), mix_j=rng.integers(0, n, (rows, s)), alpha=rng.random((rows, s)),
             query_j=rng.integers(0, n, (rows, sq)), beta=0.5 * rng.random((rows, sq)))
    tf_draws = MochiDraws(*(tf.constant(d[k], tf.int32 if k.endswith(("_i", "_j")) else tf.float32)
                            for k in ("mix_i", "mix_j", "alpha", "query_j", "beta")))
    return d, tf_draws


def numpy_synthetic_logits(q, pool, n, d, tau, valid=None):
    """q.h / tau of docs/METHODS.md#mochi, written out loop by loop (float64)."""
    q = unit(q.astype(np.float64))
    out = []
    for b in range(len(q)):
        scores = pool @ q[b]
        cand = [i for i in range(len(pool)) if valid is None or valid[b, i]]
        hard = sorted(cand, key=lambda i: -scores[i])[:n]
        row = []
        for t in range(d["mix_i"].shape[1]):
            a = d["alpha"][b, t]
            h = a * pool[hard[d["mix_i"][b, t]]] + (1 - a) * pool[hard[d["mix_j"][b, t]]]
            row.append(q[b] @ unit(h) / tau)
        for t in range(d["query_j"].shape[1]):
            be = d["beta"][b, t]
            h = be * q[b] + (1 - be) * pool[hard[d["query_j"][b, t]]]
            row.append(q[b] @ unit(h) / tau)
        out.append(row)
    return np.array(out)


def ce0(logits):
    m = logits.max(1, keepdims=True)
    return float(np.mean(m[:, 0] + np.log(np.exp(logits - m).sum(1)) - logits[:, 0]))


def test_queue_loss_matches_numpy_reference_for_fixed_draws():
    rng = np.random.default_rng(0)
    B, K, d, N, s, sq, tau = 5, 40, 8, 6, 7, 3, 0.2
    q, k = rng.normal(size=(B, d)), rng.normal(size=(B, d))
    queue = unit(rng.normal(size=(K, d)))
    dn, dt = draws_for(rng, B, N, s, sq)
    cfg = MochiConfig(num_hardest=N, num_mixed=s, num_query_mixed=sq)
    got = infonce_queue(tf.constant(q, tf.float32), tf.constant(k, tf.float32), tf.constant(queue, tf.float32),
                        tau, mochi=cfg, draws=dt)
    qn, kn = unit(q), unit(k)
    logits = np.concatenate([np.sum(qn * kn, 1, keepdims=True) / tau, qn @ queue.T / tau,
                             numpy_synthetic_logits(q, queue, N, dn, tau)], axis=1)
    np.testing.assert_allclose(float(got), ce0(logits), rtol=2e-5)
    plain = ce0(logits[:, : 1 + K])
    assert float(got) > plain  # extra (hard) negatives only add to the denominator


def test_in_batch_loss_matches_numpy_reference_for_fixed_draws():
    rng = np.random.default_rng(1)
    B, d, N, s, sq, tau = 4, 8, 3, 5, 2, 0.5
    za, zb = rng.normal(size=(B, d)), rng.normal(size=(B, d))
    z = unit(np.concatenate([za, zb]))
    dn, dt = draws_for(rng, 2 * B, N, s, sq)
    cfg = MochiConfig(num_hardest=N, num_mixed=s, num_query_mixed=sq)
    got = nt_xent(tf.constant(za, tf.float32), tf.constant(zb, tf.float32), tau, mochi=cfg, draws=dt)
    pos = np.concatenate([np.arange(B) + B, np.arange(B)])
    valid = np.ones((2 * B, 2 * B), bool)
    valid[np.arange(2 * B), np.arange(2 * B)] = False
    valid[np.arange(2 * B), pos] = False  # the pool excludes self and positive
    sim = z @ z.T / tau
    sim[np.arange(2 * B), np.arange(2 * B)] = -np.inf
    extra = numpy_synthetic_logits(z, z, N, dn, tau, valid)
    logits = np.concatenate([sim, extra], 1)
    m = logits.max(1, keepdims=True)
    ref = np.mean(m[:, 0] + np.log(np.exp(logits - m).sum(1)) - logits[np.arange(2 * B), pos])
    np.testing.assert_allclose(float(got), ref, rtol=2e-5)


def test_hardness_ordering_and_masking():
    rng = np.random.default_rng(2)
    q, pool = unit(rng.normal(size=(3, 6))), unit(rng.normal(size=(20, 6)))
    valid = rng.random((3, 20)) > 0.3
    hard = mochi_hardest(tf.constant(q, tf.float32), tf.constant(pool, tf.float32), 5,
                         valid_mask=tf.constant(valid)).numpy()
    for b in range(3):
        scores = hard[b] @ q[b]
        assert np.all(np.diff(scores) <= 1e-7)  # hardest (highest q.n) first
        allowed = np.sort(pool[valid[b]] @ q[b])[::-1][:5]
        np.testing.assert_allclose(scores, allowed, rtol=1e-5, atol=1e-6)


def test_zero_synthetic_points_is_plain_infonce_exactly():
    rng = np.random.default_rng(3)
    q, k, queue = (tf.constant(rng.normal(size=s), tf.float32) for s in [(6, 8), (6, 8), (30, 8)])
    queue = tf.math.l2_normalize(queue, axis=-1)
    off = MochiConfig(num_hardest=4, num_mixed=0, num_query_mixed=0)
    assert float(infonce_queue(q, k, queue, 0.2, mochi=off)) == float(infonce_queue(q, k, queue, 0.2))
    assert float(nt_xent(q, k, 0.5, mochi=off)) == float(nt_xent(q, k, 0.5))


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_model_gate_before_start_step_equals_base_and_mixes_after(method):
    cfg = mochi_config(num_hardest=4, num_mixed=8, num_query_mixed=4, start_epoch=2, steps_per_epoch=5, seed=7)
    assert cfg.start_step == 10 and cfg.seed == 7
    levels = dict(level_depths=(4,), embed_fields=())
    mixed, plain = build(small_spec(method, mochi=cfg, **levels)), build(small_spec(method, **levels), seed=1)
    copy_weights(mixed, plain)
    batch = random_batch(np.random.default_rng(4), 1, batch=6)
    base = float(plain.compute_loss(batch, training=False)[0])
    before = float(mixed.compute_loss(batch, training=False, step=tf.constant(9, tf.int64))[0])
    after = float(mixed.compute_loss(batch, training=False, step=tf.constant(10, tf.int64))[0])
    assert before == base
    assert after > base


def test_config_section_wires_start_epoch_and_seed():
    from hac_tf.training import builders
    from hac_tf.training.config import ConfigError, load_config

    c = load_config(None, [f"data.data_dir={FIXTURE_FMNIST}", "model.method=moco", "plugins.mochi.enabled=true",
                           "plugins.mochi.num_hardest=16", "plugins.mochi.num_mixed=8",
                           "plugins.mochi.num_query_mixed=2", "plugins.mochi.start_epoch=1.5", "train.seed=3"])
    kw = builders.model_spec_kwargs(c, steps_per_epoch_hint=10)
    assert kw["mochi"] == MochiConfig(16, 8, 2, start_step=15, detach_synthetic=True, seed=3)
    # without a hint: 64 fixture images / batch 256 -> at least one step per epoch
    c2 = load_config(None, [f"data.data_dir={FIXTURE_FMNIST}", "data.batch_size=16", "model.method=simclr",
                            "plugins.mochi.enabled=true", "plugins.mochi.start_epoch=2"])
    assert builders.model_spec_kwargs(c2)["mochi"].start_step == 2 * (64 // 16)
    with pytest.raises(ConfigError, match="plugins.mochi needs a method with negatives"):
        load_config(None, ["model.method=byol", "plugins.mochi.enabled=true"])
