"""extract_features / dataset_to_arrays with tiny real encoders."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.evaluation import dataset_to_arrays, extract_features, extract_features_from_arrays


def _dataset(rng, n=37, size=8):
    images = rng.integers(0, 256, size=(n, size, size, 3)).astype(np.uint8)
    garment = (np.arange(n) % 3).astype(np.int32)
    colour = np.arange(n, dtype=np.int32)[::-1].copy()
    ds = tf.data.Dataset.from_tensor_slices((images, {"garment": garment, "colour": colour}))
    return ds, images, garment, colour


def _keras_encoder(size=8):
    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    stage1 = keras.layers.GlobalAveragePooling2D(name="stage1")(h)
    emb = keras.layers.Dense(5, name="embedding")(keras.layers.Flatten()(h))
    return keras.Model(inp, {"stage1": stage1, "embedding": emb, "map": h})


def test_keras_encoder_shapes_values_and_order(rng):
    ds, images, garment, colour = _dataset(rng)
    model = _keras_encoder()
    feats, labels = extract_features(lambda x: model(x, training=False), ds, batch_size=8,
                                     feature_names=["stage1", "embedding"], progress=True)
    assert set(feats) == {"stage1", "embedding"}
    assert feats["stage1"].shape == (37, 4) and feats["embedding"].shape == (37, 5)
    assert feats["stage1"].dtype == np.float32
    np.testing.assert_array_equal(labels["garment"], garment)
    np.testing.assert_array_equal(labels["colour"], colour)
    want = model(images.astype(np.float32) / 255.0, training=False)
    np.testing.assert_allclose(feats["embedding"], want["embedding"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats["stage1"], want["stage1"], rtol=1e-5, atol=1e-6)


def test_all_outputs_spatial_maps_pooled_and_max_examples(rng):
    ds, images, garment, _ = _dataset(rng)
    model = _keras_encoder()
    feats, labels = extract_features(tf.function(model), ds, batch_size=4, max_examples=10,
                                     progress=False)
    assert set(feats) == {"stage1", "embedding", "map"}
    assert all(v.shape[0] == 10 for v in feats.values())
    assert feats["map"].shape == (10, 4)  # [B, H, W, C] -> GAP -> [B, C]
    np.testing.assert_allclose(feats["map"], feats["stage1"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels["garment"], garment[:10])


def test_plain_function_single_tensor_bare_label_batched_source(rng):
    images = rng.integers(0, 256, size=(21, 6, 6, 3)).astype(np.uint8)
    y = rng.integers(0, 4, 21).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((images, y)).batch(5)  # already batched, bare label

    def gap(x):
        assert x.dtype == tf.float32
        return tf.reduce_mean(x, axis=[1, 2])

    feats, labels = extract_features(gap, ds, batch_size=8, progress=False)
    assert set(feats) == {"embedding"} and set(labels) == {"label"}
    np.testing.assert_allclose(feats["embedding"], images.mean(axis=(1, 2)) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(labels["label"], y)


def test_grayscale_is_tiled_and_missing_feature_raises(rng):
    images = rng.integers(0, 256, size=(6, 5, 5, 1)).astype(np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, {"label": np.zeros(6, np.int32)}))
    feats, _ = extract_features(lambda x: {"e": tf.reduce_mean(x, axis=[1, 2])}, ds,
                                progress=False)
    assert feats["e"].shape == (6, 3)
    np.testing.assert_allclose(feats["e"][:, 0], feats["e"][:, 2])
    with pytest.raises(KeyError, match="nope"):
        extract_features(lambda x: {"e": tf.reduce_mean(x, axis=[1, 2])}, ds,
                         feature_names=["nope"], progress=False)


def test_dataset_to_arrays_and_array_path_agree(rng):
    ds, images, garment, colour = _dataset(rng, n=30)
    arr, labels = dataset_to_arrays(ds, max_examples=25, chunk=7)
    assert arr.dtype == np.uint8 and arr.shape == (25, 8, 8, 3)
    np.testing.assert_array_equal(arr, images[:25])
    np.testing.assert_array_equal(labels["colour"], colour[:25])
    model = _keras_encoder()
    from_arrays = extract_features_from_arrays(model, arr, batch_size=6)
    from_ds, _ = extract_features(model, ds, batch_size=9, max_examples=25, progress=False)
    for name in from_ds:
        np.testing.assert_allclose(from_arrays[name], from_ds[name], rtol=1e-5, atol=1e-6)
