"""Writes a PNG grid of a few source images and all their views per level, annotated with the
parameters each view recorded -- the picture that explains add-one views.

Usage:
  python tools/show_views.py --out=out/views.png
  python tools/show_views.py --policy=strength --source=fashion_mnist --num_images=3 --image_size=32
  python tools/show_views.py --source=image_folder --data_dir=/path/to/root --image_size=96
"""

from __future__ import annotations

import os
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from hac_tf.augment import AugmentationSettings, build_policy  # noqa: E402
from hac_tf.data import build_source  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "out/views.png", "Output PNG path.")
flags.DEFINE_string("source", "coloured_fashion_mnist", "Data source name (see hac_tf.data.build_source).")
flags.DEFINE_string("data_dir", None, "Data directory for the source (None = its default).")
flags.DEFINE_string("split", "train", "Split to draw images from.")
flags.DEFINE_enum("policy", "add_one", ["add_one", "uniform", "strength", "two_view"], "View policy.")
flags.DEFINE_integer("num_images", 4, "Source images (rows).")
flags.DEFINE_integer("image_size", 32, "View size.")
flags.DEFINE_float("blur_probability", -1.0, "< 0: paper default (0 at <= 32 px).")
flags.DEFINE_integer("seed", 0, "Seed of the views.")


def describe(params: Dict[str, np.ndarray], i: int) -> str:
    """Short text of one view's recorded parameters."""
    y0, x0, y1, x1 = params["crop"][i]
    lines = [f"crop {y0:.2f},{x0:.2f}-{y1:.2f},{x1:.2f}"]
    if params["jitter_applied"][i, 0]:
        b, c, s, h = params["jitter"][i]
        order = "".join("bcsh"[int(k)] for k in params["jitter_order"][i])
        lines.append(f"jit b{b:.2f} c{c:.2f}")
        lines.append(f"s{s:.2f} h{h:+.2f} {order}")
    else:
        lines.append("no jitter")
    extras = []
    if params["grayscale"][i, 0]:
        extras.append("gray")
    if params["blur_sigma"][i, 0] > 0:
        extras.append(f"blur{params['blur_sigma'][i, 0]:.1f}")
    if params["flip"][i, 0]:
        extras.append("flip")
    if params["rotation"][i, 0]:
        extras.append(f"rot{int(params['rotation'][i, 0]) * 90}")
    if params["solarize"][i, 0]:
        extras.append("sol")
    if extras:
        lines.append(" ".join(extras))
    return "\n".join(lines)


def render(images: np.ndarray, views: Dict[str, Dict], out: str, title: str) -> None:
    levels: List[str] = list(views)
    n = images.shape[0]
    cols = 1 + 2 * len(levels)
    fig, axes = plt.subplots(n, cols, figsize=(1.75 * cols, 2.6 * n), squeeze=False)
    for r in range(n):
        axes[r, 0].imshow(images[r])
        axes[r, 0].set_title("source", fontsize=8)
        for li, name in enumerate(levels):
            for vi, key in enumerate(("a", "b")):
                ax = axes[r, 1 + 2 * li + vi]
                ax.imshow(np.clip(views[name][f"view_{key}"][r], 0, 1))
                params = {k: v for k, v in views[name][f"params_{key}"].items()}
                ax.set_title(f"{name.replace('_', ' ')} {key}", fontsize=8)
                ax.set_xlabel(describe(params, r), fontsize=5.5, family="monospace")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: List[str]) -> None:
    del argv
    kwargs = {"data_dir": FLAGS.data_dir} if FLAGS.data_dir else {}
    if FLAGS.source == "image_folder":
        kwargs["image_size"] = max(FLAGS.image_size, 32)
    ds = build_source(FLAGS.source, FLAGS.split, **kwargs)
    images = np.stack([img for img, _ in ds.take(FLAGS.num_images).as_numpy_iterator()])
    settings = AugmentationSettings(
        image_size=FLAGS.image_size,
        blur_probability=None if FLAGS.blur_probability < 0 else FLAGS.blur_probability,
    )
    policy = build_policy(FLAGS.policy, settings=settings)
    views = policy(tf.constant(images), seed=tf.constant([FLAGS.seed, 0]))
    views = tf.nest.map_structure(lambda t: t.numpy(), views)
    title = f"{FLAGS.policy} views of {FLAGS.source} ({FLAGS.image_size}px): level k applies the first k groups"
    if FLAGS.policy != "add_one":
        title = f"{FLAGS.policy} views of {FLAGS.source} ({FLAGS.image_size}px)"
    render(images, views, FLAGS.out, title)
    logging.info("wrote %s", FLAGS.out)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
