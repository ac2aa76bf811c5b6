"""Benchmark: source images/s of the view pipelines through tf.data.

Prints, for each image size, the throughput of
  * the recording add-one pipeline (all 2L views + recorded parameters), and
  * the same classical augmentations built from plain KerasCV layers, two views, no recording,
and the views/s of each, so the cost per view produced can be compared.

Usage:
  python tools/bench_augment.py                       # sizes 32, 96, 224 (224 from 256x256 sources)
  python tools/bench_augment.py --sizes=32 --seconds=20 --batch_size=512
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from hac_tf.augment import AddOneViews, AugmentationSettings, make_view_dataset  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["32", "96", "224"], "View sizes to benchmark.")
flags.DEFINE_integer("batch_size", 256, "Source images per batch.")
flags.DEFINE_float("seconds", 8.0, "Measured seconds per row (after warm-up).")
flags.DEFINE_integer("num_levels", 4, "Add-one levels (2 views each).")
flags.DEFINE_bool("plain_kerascv", True, "Also measure the plain KerasCV two-view pipeline.")

SOURCE_SIZE = {32: 32, 64: 64, 96: 96, 224: 256}


def _source(size: int, n: int = 1024) -> tf.data.Dataset:
    src = SOURCE_SIZE.get(size, size)
    rng = np.random.default_rng(0)
    # smooth random images (as compressible as photos, unlike white noise)
    small = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
    imgs = tf.cast(tf.image.resize(small, [src, src]), tf.uint8).numpy()
    labels = {"label": np.zeros(n, np.int32)}
    return tf.data.Dataset.from_tensor_slices((imgs, labels)).cache().repeat()


def _plain_kerascv_dataset(size: int, batch_size: int) -> tf.data.Dataset:
    import keras_cv

    layers = [
        keras_cv.layers.RandomCropAndResize((size, size), crop_area_factor=(0.2, 1.0),
                                            aspect_ratio_factor=(3 / 4, 4 / 3)),
        keras_cv.layers.RandomFlip("horizontal"),
        keras_cv.layers.RandomApply(
            keras_cv.layers.RandomColorJitter((0, 255), 0.4, 0.4, 0.4, 0.1), rate=0.8),
        keras_cv.layers.RandomApply(keras_cv.layers.Grayscale(output_channels=3), rate=0.2),
    ]
    if size > 32:
        layers.append(keras_cv.layers.RandomApply(
            keras_cv.layers.RandomGaussianBlur(size // 20 * 2 + 1, (0.1, 2.0)), rate=0.5))
    pipeline = keras_cv.layers.Augmenter(layers)

    def two_views(images, labels):
        x = tf.cast(images, tf.float32)
        return {"view_a": pipeline(x), "view_b": pipeline(x), "labels": labels}

    ds = _source(size).batch(batch_size, drop_remainder=True)
    return ds.map(two_views, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _measure(ds: tf.data.Dataset, batch_size: int, seconds: float) -> float:
    it = iter(ds)
    for _ in range(3):  # warm-up: tracing, autotune
        next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(it)
        n += batch_size
    return n / (time.perf_counter() - t0)


def main(argv: List[str]) -> None:
    del argv
    print(f"cores={os.cpu_count()} tf={tf.__version__} batch={FLAGS.batch_size} "
          f"levels={FLAGS.num_levels} ({2 * FLAGS.num_levels} views/source image)")
    header = f"{'px':>5} {'source':>7} | {'recording add-one src/s':>24} {'views/s':>9} | " \
             f"{'plain KerasCV 2-view src/s':>27} {'views/s':>9} | {'per-view speed-up':>17}"
    print(header)
    print("-" * len(header))
    for size in [int(s) for s in FLAGS.sizes]:
        settings = AugmentationSettings(image_size=size)
        policy = AddOneViews(settings=settings, num_levels=FLAGS.num_levels)
        ours_ds = make_view_dataset(_source(size), policy, FLAGS.batch_size, seed=0)
        ours = _measure(ours_ds, FLAGS.batch_size, FLAGS.seconds)
        views = 2 * FLAGS.num_levels
        row = f"{size:>5} {SOURCE_SIZE.get(size, size):>7} | {ours:>24.0f} {ours * views:>9.0f} | "
        if FLAGS.plain_kerascv:
            plain = _measure(_plain_kerascv_dataset(size, FLAGS.batch_size), FLAGS.batch_size, FLAGS.seconds)
            row += f"{plain:>27.0f} {plain * 2:>9.0f} | {ours * views / (plain * 2):>16.2f}x"
        print(row, flush=True)


if __name__ == "__main__":
    app.run(main)
