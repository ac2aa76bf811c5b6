"""Keras loss layers (config round trip, validation, dtype policy) and similarity_stats."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hac_tf.losses import (  # noqa: E402
    BarlowTwinsLoss,
    InfoNCEQueueLoss,
    MochiConfig,
    NegativeCosineLoss,
    NTXentLoss,
    barlow_twins,
    byol_loss,
    infonce_queue,
    negative_cosine,
    nt_xent,
    similarity_stats,
    symmetric_negative_cosine,
)


def _pair(b=6, d=8, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(b, d)).astype(np.float32)
    return a, (a + rng.normal(size=(b, d))).astype(np.float32)


def _queue(k=16, d=8):
    x = np.random.default_rng(1).normal(size=(k, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


LAYERS = [
    NTXentLoss(temperature=0.3, gather_across_replicas=False),
    NTXentLoss(temperature=0.3, mochi=MochiConfig(4, 2, 1, start_step=100, seed=7)),
    InfoNCEQueueLoss(temperature=0.1, mochi=MochiConfig(8, 4, 2, seed=3)),
    NegativeCosineLoss(variant="byol"),
    BarlowTwinsLoss(lambd=0.01, scale=0.5, gather_across_replicas=True),
]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda x: type(x).__name__)
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    a, b = _pair()
    args = (a, b, _queue()) if isinstance(layer, InfoNCEQueueLoss) else (a, b)
    np.testing.assert_array_equal(layer(*args).numpy(), clone(*args).numpy())


def test_layers_match_functions():
    a, b = _pair()
    a2, b2 = _pair(seed=2)
    queue = _queue()
    np.testing.assert_allclose(NTXentLoss(0.2)(a, b).numpy(), nt_xent(a, b, 0.2).numpy())
    np.testing.assert_allclose(
        InfoNCEQueueLoss(0.2)(a, b, queue).numpy(), infonce_queue(a, b, queue, 0.2).numpy()
    )
    cos = NegativeCosineLoss()
    np.testing.assert_allclose(cos(a, b).numpy(), negative_cosine(a, b).numpy())
    np.testing.assert_allclose(
        cos(a, b, a2, b2).numpy(), symmetric_negative_cosine(a, b, a2, b2).numpy()
    )
    byol = NegativeCosineLoss("byol")
    np.testing.assert_allclose(byol(a, b).numpy(), byol_loss(a, b).numpy())
    np.testing.assert_allclose(
        byol(a, b, a2, b2).numpy(), 0.5 * byol_loss(a, b2).numpy() + 0.5 * byol_loss(a2, b).numpy(),
        rtol=1e-6,
    )
    np.testing.assert_allclose(BarlowTwinsLoss()(a, b).numpy(), barlow_twins(a, b).numpy())
    mochi = NTXentLoss(0.2, mochi=MochiConfig(4, 2, 1, start_step=5, seed=0))
    np.testing.assert_array_equal(mochi(a, b, step=1).numpy(), nt_xent(a, b, 0.2).numpy())
    assert mochi(a, b, step=5).numpy() > nt_xent(a, b, 0.2).numpy()


@pytest.mark.parametrize(
    "factory",
    [
        lambda: NTXentLoss(temperature=0.0),
        lambda: NTXentLoss(temperature=-1.0),
        lambda: NTXentLoss(temperature=float("nan")),
        lambda: NTXentLoss(temperature="0.5"),
        lambda: NTXentLoss(mochi={"num_hardest": 0}),
        lambda: NTXentLoss(mochi=3),
        lambda: InfoNCEQueueLoss(temperature=0),
        lambda: InfoNCEQueueLoss(mochi=MochiConfig.from_value({"num_query_mixed": -2})),
        lambda: NegativeCosineLoss(variant="cosine"),
        lambda: BarlowTwinsLoss(lambd=-0.1),
        lambda: BarlowTwinsLoss(scale=0.0),
        lambda: BarlowTwinsLoss(eps=0.0),
    ],
)
def test_invalid_hyperparameters_raise(factory):
    with pytest.raises(ValueError):
        factory()


def test_layer_output_is_float32_under_mixed_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = NTXentLoss(0.2)
        a, b = _pair()
        got = layer(tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16))
    finally:
        keras.config.set_dtype_policy(previous)
    assert layer.compute_dtype == "float32" and got.dtype == tf.float32


def test_layer_shape_errors():
    a, b = _pair()
    with pytest.raises(ValueError, match="z_a and z_b"):
        NTXentLoss()(a, b[:, :3])
    with pytest.raises(ValueError, match="p2 and z2"):
        NegativeCosineLoss()(a, b, a)


def test_similarity_stats_reference_and_collapse():
    a, b = _pair(b=5, d=8)
    stats = similarity_stats(a, b)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    sim = an @ bn.T
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(stats["pos_sim"].numpy(), np.mean(np.diag(sim)), rtol=1e-5)
    np.testing.assert_allclose(stats["neg_sim"].numpy(), np.mean(sim[off]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        stats["embedding_std"].numpy(), np.mean(np.std(np.concatenate([an, bn]), axis=0)),
        rtol=1e-5,
    )
    assert all(v.dtype == tf.float32 for v in stats.values())
    # Collapse: every embedding identical -> std 0, pos_sim 1.
    same = np.tile(a[:1], (5, 1))
    collapsed = similarity_stats(same, 2 * same)
    assert collapsed["embedding_std"].numpy() == pytest.approx(0.0, abs=1e-6)
    assert collapsed["pos_sim"].numpy() == pytest.approx(1.0, abs=1e-6)
    # Healthy high-dimensional random embeddings: std ~ 1/sqrt(d).
    rng = np.random.default_rng(0)
    z = rng.normal(size=(512, 64)).astype(np.float32)
    healthy = similarity_stats(z, rng.normal(size=(512, 64)).astype(np.float32))
    assert healthy["embedding_std"].numpy() == pytest.approx(1 / 8, rel=0.05)
    assert similarity_stats(a[:1], b[:1])["neg_sim"].numpy() == 0.0
    layer_stats = NTXentLoss().similarity_stats(a, b)
    assert set(layer_stats) == {"pos_sim", "neg_sim", "embedding_std"}
