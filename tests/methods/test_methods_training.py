"""Training sanity: every base method lowers its loss on coloured Fashion-MNIST without collapse.

A narrow ResNet-18 (width 0.125, CIFAR stem) is trained for a short run on real coloured
Fashion-MNIST training images (the first N images of ``coloured_fashion_mnist`` train, built with
``hac_tf.data``'s own colourisation; a plain tint if that module is unavailable) with two-view
augmentation through ``hac_tf.augment.make_view_dataset``, contrasted at depth 4 with the colour
embedding, using plain SGD (momentum 0.9) written in the test itself.
"""

from __future__ import annotations

import gzip
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from hac_tf.augment import AugmentationSettings, TwoViews, make_view_dataset
from hac_tf.methods import HierarchicalContrastiveModel, ModelSpec

FASHION_TRAIN = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
NUM_IMAGES = 2048
BATCH = 32
STEPS = 80
WINDOW = 10
OUT_DIM = 64

RESULTS: dict = {}


def _read_gray(n: int) -> np.ndarray:
    with gzip.open(FASHION_TRAIN, "rb") as f:
        header = np.frombuffer(f.read(16), ">u4")
        assert header[0] == 2051 and header[1] >= n
        return np.frombuffer(f.read(n * 28 * 28), np.uint8).reshape(n, 28, 28)


@pytest.fixture(scope="module")
def coloured_images() -> np.ndarray:
    gray = _read_gray(NUM_IMAGES)
    try:
        from hac_tf.data.coloured import DEFAULT_NUM_COLOURS, colour_assignment, colourise

        colours, background = colour_assignment(60000, "train", DEFAULT_NUM_COLOURS, 0)
        return colourise(gray, colours[:NUM_IMAGES], background[:NUM_IMAGES], DEFAULT_NUM_COLOURS, 32)
    except ImportError:  # pragma: no cover - hac_tf.data not available
        rng = np.random.default_rng(0)
        tint = rng.uniform(0.2, 1.0, (NUM_IMAGES, 1, 1, 3))
        img = tf.image.resize(gray[..., None].astype(np.float32) / 255.0, (32, 32)).numpy() * tint
        return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _spec(method: str) -> ModelSpec:
    kwargs = dict(projector_hidden_dim=128, projector_out_dim=OUT_DIM)
    if method in ("byol", "simsiam"):
        kwargs["predictor_hidden_dim"] = 64
    if method == "moco":
        kwargs["moco_queue_size"] = 256
    return ModelSpec(method=method, width_multiplier=0.125, level_depths=(4,),
                     embed_fields=("colour",), embed_dim=32, **kwargs)


@pytest.mark.long(20)
@pytest.mark.parametrize("method", ["simclr", "moco", "byol", "simsiam", "barlow", "vicreg"])
def test_short_training_lowers_the_loss_without_collapse(method, coloured_images):
    start = time.time()
    keras.utils.set_random_seed(0)
    model = HierarchicalContrastiveModel(_spec(method))
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    labels = {"garment": np.zeros(NUM_IMAGES, np.int32)}
    source = tf.data.Dataset.from_tensor_slices((coloured_images, labels))
    source = source.shuffle(NUM_IMAGES, seed=0, reshuffle_each_iteration=True).repeat()
    policy = TwoViews(settings=AugmentationSettings(image_size=32))
    data = make_view_dataset(source, policy, batch_size=BATCH, seed=0)
    variables = model.trainable_variables

    @tf.function(autograph=False)
    def train_step(batch, step):
        with tf.GradientTape() as tape:
            loss, metrics = model.compute_loss(batch, training=True, step=step)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        model.update_targets(step, STEPS)
        return metrics

    history = []
    for step, batch in enumerate(data.take(STEPS)):
        metrics = train_step(batch, tf.constant(step, tf.int64))
        history.append({k: float(v) for k, v in metrics.items()})
    losses = np.array([h["loss"] for h in history])
    assert np.all(np.isfinite(losses))
    # initial loss: the first 2 windows. (MoCo's loss is lowest in the very first steps, while its
    # queue still holds random unit vectors, and rises once real keys fill it.)
    first, last = losses[:2 * WINDOW].mean(), losses[-WINDOW:].mean()
    std = np.mean([h["level_1/embedding_std"] for h in history[-WINDOW:]])
    RESULTS[method] = dict(first=first, last=last, std=std, seconds=time.time() - start)
    print(f"{method}: loss {first:.3f} -> {last:.3f}, embedding_std {std:.3f} "
          f"(collapse 0, healthy ~{1 / np.sqrt(OUT_DIM):.3f}), {time.time() - start:.0f}s")
    assert last < first - 0.1, (first, last)
    assert std > 0.3 / np.sqrt(OUT_DIM), std
