"""spec.embed_shuffle: the embedding gets the next row's recorded parameters (issue 17 control)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hacmethods_helpers import random_batch, small_spec

from hac_tf.methods import HierarchicalContrastiveModel, ModelSpec


def _rolled(batch):
    out = {}
    for name, level in batch.items():
        out[name] = dict(level)
        for side in ("params_a", "params_b"):
            out[name][side] = {k: tf.roll(v, 1, axis=0) for k, v in level[side].items()}
    return out


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_shuffled_embedding_is_the_plain_model_on_the_next_rows_params(method):
    keras.utils.set_random_seed(0)
    plain = HierarchicalContrastiveModel(small_spec(method, level_depths=(4,), embed_fields=("colour",)))
    shuffled = HierarchicalContrastiveModel(
        small_spec(method, level_depths=(4,), embed_fields=("colour",), embed_shuffle=True))
    assert len(plain.weights) == len(shuffled.weights)
    for target, source in zip(shuffled.weights, plain.weights):
        target.assign(source)
    batch = random_batch(np.random.default_rng(1), 1, batch=6)
    own = float(plain.compute_loss(batch, training=False)[0])
    other = float(shuffled.compute_loss(batch, training=False)[0])
    expected = float(plain.compute_loss(_rolled(batch), training=False)[0])
    np.testing.assert_allclose(other, expected, rtol=1e-6)
    assert abs(other - own) > 1e-6  # the embedding does see different parameters


def test_spec_and_config_switch():
    with pytest.raises(ValueError, match="embed_shuffle"):
        ModelSpec(method="simclr", level_depths=(4,), embed_fields=(), embed_shuffle=True)
    spec = small_spec("simclr", level_depths=(4,), embed_fields=("colour",), embed_shuffle=True)
    assert ModelSpec.from_dict(spec.to_dict()).embed_shuffle is True

    from hac_tf.training import builders
    from hac_tf.training.config import load_config

    config = load_config(None, ["model.method=simclr", "augment.policy=two_view", "model.level_depths=[4]",
                                "model.embed_fields=[colour]", "model.embed_shuffle=true"])
    assert builders.model_spec_kwargs(config)["embed_shuffle"] is True
    assert "embed_shuffle" not in builders.model_spec_kwargs(load_config(None))
