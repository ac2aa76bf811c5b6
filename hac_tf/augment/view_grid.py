"""The picture that explains add-one views: a PNG grid of a few source images and all their
views per level, each annotated with the parameters it recorded (``hac-views`` /
``tools/show_views.py``).

    draw_view_grid(images, policy="add_one", image_size=32, out="out/views.png")
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional

import numpy as np


def describe_view(params: Mapping[str, np.ndarray], i: int) -> str:
    """Short multi-line text of the parameters view ``i`` recorded (crop, jitter, extras).

    ``params`` is a policy's ``params_a``/``params_b`` dict of numpy arrays (first axis: views).
    """
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


def render_view_grid(images: np.ndarray, views: Mapping[str, Dict], out: str, title: str) -> None:
    """Writes the grid PNG to ``out``: one row per source image (``images``: [N, H, W, 3] float
    in [0, 1]), then views a and b of every level of ``views`` (numpy version of a policy's
    output: ``{level: {"view_a", "view_b", "params_a", "params_b"}}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
                params = dict(views[name][f"params_{key}"].items())
                ax.set_title(f"{name.replace('_', ' ')} {key}", fontsize=8)
                ax.set_xlabel(describe_view(params, r), fontsize=5.5, family="monospace")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def draw_view_grid(source: str, out: str, data_dir: Optional[str] = None, split: str = "train",
                   policy: str = "add_one", num_images: int = 4, image_size: int = 32,
                   blur_probability: Optional[float] = None, seed: int = 0) -> str:
    """Draws ``num_images`` images of ``source``/``split`` (hac_tf.data.build_source), makes
    their views with ``policy`` (seeded by ``seed``; ``blur_probability`` None = the paper
    default) and writes the grid to ``out``; returns ``out``."""
    import tensorflow as tf

    from hac_tf.augment import AugmentationSettings, build_policy
    from hac_tf.data import build_source

    kwargs = {"data_dir": data_dir} if data_dir else {}
    if source == "image_folder":
        kwargs["image_size"] = max(image_size, 32)
    ds = build_source(source, split, **kwargs)
    images = np.stack([img for img, _ in ds.take(num_images).as_numpy_iterator()])
    settings = AugmentationSettings(image_size=image_size, blur_probability=blur_probability)
    views = build_policy(policy, settings=settings)(tf.constant(images), seed=tf.constant([seed, 0]))
    views = tf.nest.map_structure(lambda t: t.numpy(), views)
    title = f"{policy} views of {source} ({image_size}px)"
    if policy == "add_one":
        title = f"{policy} views of {source} ({image_size}px): level k applies the first k groups"
    render_view_grid(images, views, out, title)
    return out
