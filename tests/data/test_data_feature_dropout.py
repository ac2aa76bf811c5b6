"""Fashion-MNIST overlay (feature-dropout style evaluation set): labels, determinism, rendering,
registry / config wiring and the multi-task probe on it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hac_tf.data import build_source
from hac_tf.data.feature_dropout import (
    OVERLAYS,
    composite_overlays,
    fashion_mnist_overlay_arrays,
    glyph_mask,
    overlay_parameters,
)

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "fashion_mnist")


def arrays(split="train", overlay="digits", **kw):
    return fashion_mnist_overlay_arrays(split, overlay, data_dir=FIXTURE, allow_download=False, **kw)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_glyphs_are_distinct_and_antialiased(overlay):
    names = OVERLAYS[overlay][0]
    masks = [glyph_mask(overlay, c, 12, 12) for c in range(len(names))]
    for m in masks:
        assert m.shape == (12, 12) and 0.0 <= m.min() and m.max() == 1.0 and m.sum() > 10
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert np.abs(masks[i] - masks[j]).sum() > 3.0, (names[i], names[j])
    # seven-segment "8" covers every other digit
    if overlay == "digits":
        assert all(np.all(masks[8] >= m - 1e-12) for m in masks)


def test_labels_balanced_deterministic_and_split_dependent():
    a = arrays()
    n = len(a.images)
    assert a.images.shape == (n, 32, 32, 3) and a.images.dtype == np.uint8
    counts = np.bincount(a.overlay, minlength=10)
    assert counts.max() - counts.min() <= 1  # exactly balanced
    b = arrays()
    assert b is a  # cached
    p1 = overlay_parameters(n, "train", "digits", 32, seed=0)
    p2 = overlay_parameters(n, "train", "digits", 32, seed=0)
    p3 = overlay_parameters(n, "test", "digits", 32, seed=0)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert not np.array_equal(p1["colour"], p3["colour"])
    np.testing.assert_array_equal(p1["label"], a.overlay)


def test_overlay_is_drawn_where_and_how_specified():
    base = np.zeros((2, 32, 32, 3), np.uint8)
    params = {"label": np.array([8, 1], np.int32), "colour": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
              "top": np.array([[0], [16]]), "left": np.array([[0], [23]])}
    out = composite_overlays(base, params, "digits", alpha=0.5)
    gh, gw = 16, 9  # copies=1 glyph at 32 px: 0.5 * 32 high, 5/9 as wide
    mask = glyph_mask("digits", 8, gh, gw)
    expected = np.floor(0.5 * mask * 255.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out[0, :gh, :gw, 0], expected)
    assert out[0, :, :, 1:].max() == 0 and out[0, gh:].max() == 0 and out[0, :, gw:].max() == 0
    assert out[1, :16].max() == 0 and out[1, :, :23].max() == 0 and out[1, 16:, 23:, 1].max() > 100


def test_four_copies_one_per_quadrant_and_the_garment_is_kept():
    a = arrays(overlay="shapes")
    p = overlay_parameters(len(a.images), "train", "shapes", 32, seed=0, copies=4)
    gh, gw = 12, 12
    for k, (qy, qx) in enumerate([(0, 0), (0, 16), (16, 0), (16, 16)]):
        assert np.all(p["top"][:, k] >= qy) and np.all(p["top"][:, k] + gh <= qy + 16)
        assert np.all(p["left"][:, k] >= qx) and np.all(p["left"][:, k] + gw <= qx + 16)
    from hac_tf.data.coloured import coloured_fashion_mnist_arrays

    plain = coloured_fashion_mnist_arrays("train", data_dir=FIXTURE, allow_download=False)
    np.testing.assert_array_equal(a.garment, plain.garment)
    np.testing.assert_array_equal(a.colour, plain.colour)
    changed = np.mean(np.any(a.images != plain.images, axis=-1), axis=(1, 2))
    assert np.all(changed > 0.1) and np.all(changed < 0.8)  # overlaid, but the garment still shows


def test_registry_and_config_wiring(tmp_path):
    from hac_tf.training import builders
    from hac_tf.training.config import ConfigError, load_config

    ds, info = build_source("fashion_mnist_overlay", "test", overlay="shapes", data_dir=FIXTURE,
                            allow_download=False, with_info=True)
    assert info.num_classes == {"garment": 10, "colour": 16, "overlay": 4}
    image, labels = next(iter(ds))
    assert image.shape == (32, 32, 3) and sorted(labels) == ["colour", "garment", "overlay"]
    c = load_config(None, [f"data.data_dir={FIXTURE}", "data.source=fashion_mnist_overlay", "data.overlay=digits",
                           "data.label_keys=[garment,colour,overlay]"])
    src, info = builders.labelled_source(c, "train", 8)
    assert info.num_classes["overlay"] == 10 and len(list(src)) == 8
    with pytest.raises(ConfigError, match="data.overlay"):
        load_config(None, ["data.source=fashion_mnist_overlay", "data.overlay=letters"])


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="needs the Debian dataset-fashion-mnist files (the 32-image fixture is too small)")
def test_multi_task_probe_reads_both_competing_labels():
    """On 8x8-pooled pixels, a linear probe decodes the garment and the overlay far above chance:
    both label sets are present in one image, so an encoder's choice between them is measurable."""
    from hac_tf.evaluation import multi_task_probe

    a = fashion_mnist_overlay_arrays("test", "shapes", allow_download=False)
    x = a.images.astype(np.float32).reshape(-1, 8, 4, 8, 4, 3).mean(axis=(2, 4)).reshape(len(a.images), -1) / 255.0
    n = 1500
    labels = {"garment": a.garment, "overlay": a.overlay}
    res = multi_task_probe({"pooled": x[:n]}, {k: v[:n] for k, v in labels.items()},
                           {"pooled": x[-500:]}, {k: v[-500:] for k, v in labels.items()},
                           label_keys=("garment", "overlay"), probe_kwargs=dict(epochs=100))
    assert res["pooled"]["garment"] > 0.45 and res["pooled"]["overlay"] > 0.45, res  # chance 0.10 / 0.25
