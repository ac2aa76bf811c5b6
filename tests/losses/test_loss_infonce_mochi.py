"""InfoNCE with a queue and MoCHi mixing against float64 NumPy references with fixed draws."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hac_tf.losses import (  # noqa: E402
    MochiConfig,
    MochiDraws,
    infonce_queue,
    mochi_synthetic_negatives,
    nt_xent,
    sample_mochi_draws,
)
from hacloss_helpers import numeric_grad


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return float(np.mean(lse - logits[np.arange(len(targets)), targets]))


def ref_synthetic(q, pool, n, draws, valid=None):
    """MoCHi 2.2 verbatim: rank the pool by q.n, keep the N hardest, mix, renormalise."""
    qn = _normalize(q.astype(np.float64))
    pool = pool.astype(np.float64)
    scores = qn @ pool.T
    if valid is not None:
        scores = np.where(valid, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    hard = pool[order]  # [B, N, d]
    rows = np.arange(q.shape[0])[:, None]
    alpha, beta = draws["alpha"][..., None], draws["beta"][..., None]
    h = alpha * hard[rows, draws["mix_i"]] + (1 - alpha) * hard[rows, draws["mix_j"]]
    hq = beta * qn[:, None, :] + (1 - beta) * hard[rows, draws["query_j"]]
    return np.concatenate([_normalize(h), _normalize(hq)], axis=1)


def ref_infonce(q, k, queue, tau, synthetic=None):
    qn, kn = _normalize(q.astype(np.float64)), _normalize(k.astype(np.float64))
    parts = [np.sum(qn * kn, axis=1, keepdims=True), qn @ queue.astype(np.float64).T]
    if synthetic is not None:
        parts.append(np.einsum("bd,bmd->bm", qn, synthetic))
    return _cross_entropy(np.concatenate(parts, axis=1) / tau, np.zeros(len(q), int))


def _data(b=3, d=6, k=20, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, d)).astype(np.float32)
    key = (q + rng.normal(size=(b, d))).astype(np.float32)
    queue = _normalize(rng.normal(size=(k, d))).astype(np.float32)
    return q, key, queue


def _draws(b, n, s, sq, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "mix_i": rng.integers(0, n, (b, s)),
        "mix_j": rng.integers(0, n, (b, s)),
        "alpha": rng.uniform(0, 1, (b, s)).astype(np.float32),
        "query_j": rng.integers(0, n, (b, sq)),
        "beta": rng.uniform(0, 0.5, (b, sq)).astype(np.float32),
    }


def _tf_draws(d):
    return MochiDraws(
        tf.constant(d["mix_i"], tf.int32), tf.constant(d["mix_j"], tf.int32),
        tf.constant(d["alpha"]), tf.constant(d["query_j"], tf.int32), tf.constant(d["beta"]),
    )


# ---------------------------------------------------------------- plain InfoNCE


@pytest.mark.parametrize("tau", [0.01, 0.07, 0.2, 1.0])
def test_infonce_value_matches_reference(tau):
    q, k, queue = _data(b=4, d=8, k=32)
    got = infonce_queue(q, k, queue, tau)
    assert got.dtype == tf.float32 and np.isfinite(got.numpy())
    np.testing.assert_allclose(got.numpy(), ref_infonce(q, k, queue, tau), rtol=1e-4, atol=1e-5)


def test_infonce_gradients_and_stop_gradient():
    q, k, queue = _data(b=3, d=5, k=10, seed=1)
    tq, tk, tqueue = tf.constant(q), tf.constant(k), tf.constant(queue)
    with tf.GradientTape() as tape:
        tape.watch([tq, tk, tqueue])
        loss = infonce_queue(tq, tk, tqueue, 0.2)
    gq, gk, gqueue = tape.gradient(loss, [tq, tk, tqueue])
    assert gk is None and gqueue is None
    want = numeric_grad(lambda x: ref_infonce(x, k, queue, 0.2), q)
    np.testing.assert_allclose(gq.numpy(), want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_infonce_low_precision_and_validation():
    q, k, queue = _data(b=4, d=8, k=16)
    low = [tf.cast(x, tf.bfloat16) for x in (q, k, queue)]
    got = infonce_queue(*low)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), infonce_queue(q, k, queue).numpy(), rtol=0.05)
    with pytest.raises(ValueError, match=r"q and k"):
        infonce_queue(q, k[:2], queue)
    with pytest.raises(ValueError, match=r"queue.*\(16, 7\)"):
        infonce_queue(q, k, queue[:, :7])
    with pytest.raises(ValueError, match="queue must be rank 2"):
        infonce_queue(q, k, queue[None])
    with pytest.raises(ValueError, match="temperature"):
        infonce_queue(q, k, queue, -0.1)


# ---------------------------------------------------------------- MoCHi


def test_synthetic_points_match_reference_and_have_unit_norm():
    q, _, queue = _data()
    cfg = MochiConfig(num_hardest=5, num_mixed=4, num_query_mixed=3)
    d = _draws(3, 5, 4, 3)
    got = mochi_synthetic_negatives(q, queue, cfg, draws=_tf_draws(d)).numpy()
    assert got.shape == (3, 7, 6)
    np.testing.assert_allclose(got, ref_synthetic(q, queue, 5, d), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-6)
    sampled = mochi_synthetic_negatives(q, queue, cfg, seed=[3, 4]).numpy()
    np.testing.assert_allclose(np.linalg.norm(sampled, axis=-1), 1.0, atol=1e-6)


def test_selected_negatives_are_the_n_hardest():
    q, _, queue = _data(b=4, d=6, k=30, seed=5)
    n = 6
    cfg = MochiConfig(num_hardest=n, num_mixed=n, num_query_mixed=0)
    ranks = np.tile(np.arange(n), (4, 1))
    draws = MochiDraws(
        tf.constant(ranks, tf.int32), tf.constant(ranks, tf.int32), tf.ones([4, n]),
        tf.zeros([4, 0], tf.int32), tf.zeros([4, 0]),
    )
    got = mochi_synthetic_negatives(q, queue, cfg, draws=draws).numpy()  # alpha = 1: n_i itself
    scores = _normalize(q) @ queue.T
    for row in range(4):
        hardest = queue[np.argsort(-scores[row])[:n]]
        np.testing.assert_allclose(got[row], hardest, atol=1e-6)
        assert np.min(scores[row][np.argsort(-scores[row])[:n]]) >= np.max(
            np.sort(scores[row])[::-1][n:]
        )


@pytest.mark.parametrize("tau", [0.01, 0.2])
def test_infonce_with_mochi_matches_reference(tau):
    q, k, queue = _data()
    cfg = MochiConfig(num_hardest=5, num_mixed=4, num_query_mixed=3)
    d = _draws(3, 5, 4, 3, seed=1)
    got = infonce_queue(q, k, queue, tau, mochi=cfg, draws=_tf_draws(d))
    want = ref_infonce(q, k, queue, tau, ref_synthetic(q, queue, 5, d))
    assert np.isfinite(got.numpy())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)
    assert got.numpy() > infonce_queue(q, k, queue, tau).numpy()  # extra negatives add mass


def test_zero_mixing_equals_plain_exactly():
    q, k, queue = _data(b=5, d=8, k=40)
    plain = infonce_queue(q, k, queue, 0.2).numpy()
    mixed = infonce_queue(q, k, queue, 0.2, mochi=MochiConfig(16, 0, 0), step=100).numpy()
    np.testing.assert_array_equal(mixed, plain)
    plain_sim = nt_xent(q, k, 0.5).numpy()
    np.testing.assert_array_equal(nt_xent(q, k, 0.5, mochi=MochiConfig(4, 0, 0)).numpy(), plain_sim)


def test_draw_ranges_and_reproducibility():
    cfg = MochiConfig(num_hardest=7, num_mixed=50, num_query_mixed=60, seed=11)
    d = sample_mochi_draws(64, 7, cfg, seed=[1, 2])
    assert d.mix_i.shape == (64, 50) and d.beta.shape == (64, 60)
    for idx in (d.mix_i, d.mix_j, d.query_j):
        v = idx.numpy()
        assert v.min() == 0 and v.max() == 6
    assert 0.0 <= d.alpha.numpy().min() and d.alpha.numpy().max() < 1.0
    assert 0.0 <= d.beta.numpy().min() and d.beta.numpy().max() < 0.5
    assert d.beta.numpy().max() > 0.45  # really spans [0, 0.5)
    again = sample_mochi_draws(64, 7, cfg, seed=[1, 2])
    np.testing.assert_array_equal(d.alpha.numpy(), again.alpha.numpy())
    g1, g2 = tf.random.Generator.from_seed(5), tf.random.Generator.from_seed(5)
    np.testing.assert_array_equal(
        sample_mochi_draws(4, 7, cfg, rng=g1).beta.numpy(),
        sample_mochi_draws(4, 7, cfg, rng=g2).beta.numpy(),
    )
    # MochiConfig.seed + step: reproducible per step, different across steps.
    q, k, queue = _data()
    small = MochiConfig(5, 4, 3, seed=11)
    s1 = infonce_queue(q, k, queue, mochi=small, step=1).numpy()
    assert infonce_queue(q, k, queue, mochi=small, step=1).numpy() == s1
    assert infonce_queue(q, k, queue, mochi=small, step=2).numpy() != s1


def test_disabled_before_start_step():
    q, k, queue = _data()
    cfg = MochiConfig(5, 4, 3, start_step=10, seed=0)
    plain = infonce_queue(q, k, queue, 0.2).numpy()
    assert infonce_queue(q, k, queue, 0.2, mochi=cfg, step=9).numpy() == plain
    assert infonce_queue(q, k, queue, 0.2, mochi=cfg, step=10).numpy() != plain

    @tf.function
    def fn(step):
        return infonce_queue(q, k, queue, 0.2, mochi=cfg, step=step)

    np.testing.assert_array_equal(fn(tf.constant(3, tf.int64)).numpy(), plain)
    assert fn(tf.constant(10, tf.int64)).numpy() > plain
    sim_cfg = MochiConfig(4, 4, 3, start_step=5, seed=0)
    np.testing.assert_array_equal(
        nt_xent(q, k, 0.5, mochi=sim_cfg, step=tf.constant(4)).numpy(), nt_xent(q, k, 0.5).numpy()
    )


@pytest.mark.parametrize("detach", [True, False])
def test_mochi_gradients_wrt_query(detach):
    q, k, queue = _data(b=2, d=4, k=12, seed=7)
    cfg = MochiConfig(4, 3, 2, detach_synthetic=detach)
    d = _draws(2, 4, 3, 2, seed=2)
    tq = tf.constant(q)
    with tf.GradientTape() as tape:
        tape.watch(tq)
        loss = infonce_queue(tq, k, queue, 0.2, mochi=cfg, draws=_tf_draws(d))
    got = tape.gradient(loss, tq).numpy()
    fixed = ref_synthetic(q, queue, 4, d)
    if detach:  # synthetic points are constants
        want = numeric_grad(lambda x: ref_infonce(x, k, queue, 0.2, fixed), q)
    else:  # gradient also flows through q inside h'
        want = numeric_grad(
            lambda x: ref_infonce(x, k, queue, 0.2, ref_synthetic(x, queue, 4, d)), q
        )
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_num_hardest_is_clipped_to_pool():
    q, k, queue = _data(b=3, d=6, k=8)
    cfg = MochiConfig(num_hardest=100, num_mixed=5, num_query_mixed=5)
    d = _draws(3, 8, 5, 5, seed=3)
    got = infonce_queue(q, k, queue, 0.2, mochi=cfg, draws=_tf_draws(d))
    want = ref_infonce(q, k, queue, 0.2, ref_synthetic(q, queue, 8, d))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4)
    assert np.isfinite(infonce_queue(q, k, queue, 0.2, mochi=cfg, seed=[0, 1]).numpy())


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_nt_xent_with_in_batch_mochi_matches_reference(tau):
    rng = np.random.default_rng(9)
    a = rng.normal(size=(4, 6)).astype(np.float32)
    b = (a + rng.normal(size=(4, 6))).astype(np.float32)
    n_rows, n_hard = 8, 3
    cfg = MochiConfig(num_hardest=n_hard, num_mixed=4, num_query_mixed=2)
    d = _draws(n_rows, n_hard, 4, 2, seed=4)
    got = nt_xent(a, b, tau, mochi=cfg, draws=_tf_draws(d))

    z = _normalize(np.concatenate([a, b]).astype(np.float64))
    targets = (np.arange(n_rows) + 4) % n_rows
    valid = ~np.eye(n_rows, dtype=bool)
    valid[np.arange(n_rows), targets] = False  # pool: all rows except self and positive
    synthetic = ref_synthetic(z, z, n_hard, d, valid=valid)
    logits = z @ z.T
    logits[np.eye(n_rows, dtype=bool)] = -np.inf
    logits = np.concatenate([logits, np.einsum("bd,bmd->bm", z, synthetic)], axis=1) / tau
    want = _cross_entropy(logits, targets)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)


def test_mochi_config_validation():
    with pytest.raises(ValueError, match="num_hardest"):
        MochiConfig(num_hardest=0)
    with pytest.raises(ValueError, match="num_mixed"):
        MochiConfig(num_mixed=-1)
    with pytest.raises(ValueError, match="start_step"):
        MochiConfig(start_step=1.5)
    assert MochiConfig.from_value(MochiConfig(3, 2, 1).to_dict()) == MochiConfig(3, 2, 1)
