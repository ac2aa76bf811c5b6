"""Tests for hac_tf.models.heads: EmbeddingMLP, ProjectionMLP, PredictionMLP."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.augment.params import identity_params
from hac_tf.models import EmbeddingMLP, PredictionMLP, ProjectionMLP


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def _random_params(batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    params = identity_params(batch)
    return {k: tf.constant(rng.uniform(0, 1, v.shape), tf.float32) for k, v in params.items()}


def test_embedding_default_is_colour_encoder():
    emb = EmbeddingMLP()
    assert emb.fields == ("colour",) and emb.in_dim == 4 and emb.out_dim == 512
    out = emb(identity_params(3), training=True)
    assert tuple(out.shape) == (3, 512)
    assert np.all(out.numpy() >= 0)  # ends in ReLU
    kernel = emb.mlp_layers[0].kernel
    assert tuple(kernel.shape) == (4, 512)
    # Linear(4→512) + BN(512) trainable; BN moving stats non-trainable.
    assert _count(emb.trainable_weights) == 4 * 512 + 512 + 2 * 512
    assert _count(emb.non_trainable_weights) == 2 * 512


@pytest.mark.parametrize("fields", [("colour",), ("colour", "crop"), ("crop", "flip", "blur_sigma")])
def test_embedding_reads_only_chosen_fields(fields):
    keras.utils.set_random_seed(0)
    emb = EmbeddingMLP(fields, out_dim=16)
    params = _random_params(5)
    ref = emb(params, training=False).numpy()
    keys = {"jitter" if f == "colour" else f for f in fields}
    for key in params:
        changed = dict(params)
        changed[key] = params[key] + 0.37
        out = emb(changed, training=False).numpy()
        if key in keys:
            assert not np.allclose(out, ref), key
        else:
            np.testing.assert_array_equal(out, ref)
    # A pre-encoded matrix gives the same result.
    encoded = tf.concat(
        [params["jitter" if f == "colour" else f] for f in fields], axis=-1
    )
    np.testing.assert_allclose(emb(encoded, training=False).numpy(), ref, atol=1e-6)


def test_embedding_unknown_field():
    with pytest.raises(ValueError, match="unknown parameter field"):
        EmbeddingMLP(("colour", "zoom"))


def test_embedding_in_functional_model():
    from hac_tf.augment.params import PARAM_WIDTHS

    inputs = {k: keras.Input((w,), name=k) for k, w in PARAM_WIDTHS.items()}
    emb = EmbeddingMLP(("colour", "crop"), out_dim=8)
    model = keras.Model(inputs, emb(inputs))
    assert tuple(model.output.shape) == (None, 8)
    out = model(_random_params(2))
    assert tuple(out.shape) == (2, 8)


def test_projection_default_simsiam():
    proj = ProjectionMLP()
    z = proj(tf.random.normal((4, 1024)), training=True)
    assert tuple(z.shape) == (4, 2048)
    kinds = [type(l).__name__ for l in proj.mlp_layers]
    assert kinds == [
        "Dense", "FusedBatchNormalization", "ReLU",
        "Dense", "FusedBatchNormalization", "ReLU",
        "Dense", "FusedBatchNormalization",
    ]
    assert [d.use_bias for d in proj.mlp_layers if isinstance(d, keras.layers.Dense)] == [
        True, True, False
    ]
    d_in, h = 1024, 2048
    assert _count(proj.trainable_weights) == (d_in * h + h) + 2 * h + (h * h + h) + 2 * h + h * h + 2 * h


@pytest.mark.parametrize(
    "kwargs,d_in,out,has_last_bn,n_dense",
    [
        (dict(hidden_dim=64, out_dim=16, num_layers=3, last_bn=True), 32, 16, True, 3),  # SimCLR
        (dict(hidden_dim=64, out_dim=16, num_layers=2, hidden_bn=False, last_bn=False), 32, 16, False, 2),  # MoCo v2
        (dict(hidden_dim=128, out_dim=32, num_layers=2, last_bn=False), 32, 32, False, 2),  # BYOL
        (dict(hidden_dim=64, out_dim=64, num_layers=3, hidden_bias=False, last_bn=False, last_bias=False), 32, 64, False, 3),  # Barlow
        (dict(hidden_dim=64, out_dim=16, num_layers=1), 32, 16, True, 1),
    ],
)
def test_projection_variants(kwargs, d_in, out, has_last_bn, n_dense):
    proj = ProjectionMLP(**kwargs)
    assert tuple(proj(tf.random.normal((3, d_in)), training=True).shape) == (3, out)
    dense = [l for l in proj.mlp_layers if isinstance(l, keras.layers.Dense)]
    assert len(dense) == n_dense
    assert isinstance(proj.mlp_layers[-1], keras.layers.BatchNormalization) == has_last_bn
    assert dense[-1].use_bias == kwargs.get("last_bias", not has_last_bn)
    if not kwargs.get("hidden_bn", True):
        assert not any(isinstance(l, keras.layers.BatchNormalization) for l in proj.mlp_layers)
    if kwargs.get("hidden_bias") is False:
        assert not any(d.use_bias for d in dense)


def test_projection_last_bn_without_affine():
    proj = ProjectionMLP(32, 8, num_layers=3, hidden_bias=False, last_bn_affine=False)
    proj.build((None, 16))
    last = proj.mlp_layers[-1]
    assert isinstance(last, keras.layers.BatchNormalization)
    assert not last.center and not last.scale and not last.trainable_weights
    with pytest.raises(ValueError):
        ProjectionMLP(num_layers=0)


def test_prediction_mlp():
    pred = PredictionMLP()
    p = pred(tf.random.normal((4, 2048)), training=True)
    assert tuple(p.shape) == (4, 2048)
    kinds = [type(l).__name__ for l in pred.mlp_layers]
    assert kinds == ["Dense", "FusedBatchNormalization", "ReLU", "Dense"]
    assert _count(pred.trainable_weights) == (2048 * 512 + 512) + 2 * 512 + (512 * 2048 + 2048)
    assert tuple(PredictionMLP(16, 8)(tf.zeros((2, 8))).shape) == (2, 8)


@pytest.mark.parametrize(
    "layer,x",
    [
        (EmbeddingMLP(("colour", "crop"), out_dim=8, sync_bn=True, name="emb"), None),
        (ProjectionMLP(32, 8, num_layers=2, last_bn=False, hidden_bn=False, name="proj"), (3, 12)),
        (PredictionMLP(16, 8, name="pred"), (3, 8)),
    ],
)
def test_get_config_round_trip(layer, x):
    inputs = _random_params(3) if x is None else tf.random.normal(x)
    ref = layer(inputs, training=False)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(inputs, training=False)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(inputs, training=False).numpy(), ref.numpy(), atol=1e-6)
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_heads_sync_bn_run():
    for layer, x in [
        (ProjectionMLP(16, 8, sync_bn=True), tf.random.normal((4, 8))),
        (PredictionMLP(16, 8, sync_bn=True), tf.random.normal((4, 8))),
        (EmbeddingMLP(out_dim=8, sync_bn=True), _random_params(4)),
    ]:
        bns = [l for l in layer.mlp_layers if isinstance(l, keras.layers.BatchNormalization)]
        assert bns and all(b.synchronized for b in bns)
        assert tuple(layer(x, training=True).shape) == (4, 8)
