"""The generated Fashion-MNIST canvas set: determinism, label consistency, tf.data format."""

import os

import numpy as np
import pytest

from hac_tf.data import load_fashion_mnist_arrays
from hac_tf.downstream.canvas import (
    NUM_GARMENT_CLASSES,
    CanvasSpec,
    canvas_dataset,
    generate_canvases,
    masks_to_boxes,
)

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "fixtures", "fashion_mnist")
SPEC = CanvasSpec(canvas_size=48, max_objects=3)


@pytest.fixture(scope="module")
def canvases():
    return generate_canvases(40, "train", SPEC, seed=3, data_dir=FIXTURE_DIR)


def test_deterministic_and_index_addressed(canvases):
    again = generate_canvases(40, "train", SPEC, seed=3, data_dir=FIXTURE_DIR)
    for a, b in zip(canvases, again):
        np.testing.assert_array_equal(a, b)
    # canvas i does not depend on which other canvases are generated
    tail = generate_canvases(5, "train", SPEC, seed=3, data_dir=FIXTURE_DIR, start=35)
    np.testing.assert_array_equal(tail.images, canvases.images[35:])
    np.testing.assert_array_equal(tail.boxes, canvases.boxes[35:])
    other = generate_canvases(40, "train", SPEC, seed=4, data_dir=FIXTURE_DIR)
    assert not np.array_equal(other.images, canvases.images)
    test_split = generate_canvases(4, "test", SPEC, seed=3, data_dir=FIXTURE_DIR)
    assert not np.array_equal(test_split.images, canvases.images[:4])
    assert set(test_split.source_ids) .isdisjoint(set(canvases.source_ids))


def test_shapes_counts_and_classes(canvases):
    n, s, m = 40, SPEC.canvas_size, SPEC.max_objects
    assert canvases.images.shape == (n, s, s, 3) and canvases.images.dtype == np.uint8
    assert canvases.boxes.shape == (n, m, 4) and canvases.boxes.dtype == np.float32
    assert canvases.instance_masks.shape == (n, m, s, s)
    assert canvases.semantic_masks.shape == (n, s, s)
    assert np.all((canvases.num_objects >= 1) & (canvases.num_objects <= m))
    assert len(np.unique(canvases.num_objects)) > 1  # 1..3 garments, not a constant
    assert len(np.unique(canvases.source_ids)) == n
    labels = load_fashion_mnist_arrays("train", FIXTURE_DIR).labels
    for i in range(n):
        k = canvases.num_objects[i]
        cls = canvases.classes[i]
        assert np.all((cls[:k] >= 0) & (cls[:k] < NUM_GARMENT_CLASSES))
        assert np.all(cls[k:] == -1) and np.all(canvases.boxes[i, k:] == -1)
        assert not canvases.instance_masks[i, k:].any()
        # the class is the Fashion-MNIST label of the garment that was placed
        np.testing.assert_array_equal(cls[:k], labels[canvases.garment_index[i, :k]])


def test_boxes_match_mask_extents(canvases):
    for i in range(len(canvases.images)):
        k = canvases.num_objects[i]
        for j in range(k):
            mask = canvases.instance_masks[i, j].astype(bool)
            rows, cols = np.nonzero(mask)
            assert rows.size >= SPEC.min_visible_pixels
            ymin, xmin, ymax, xmax = canvases.boxes[i, j]
            assert (ymin, xmin, ymax, xmax) == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
            assert 0 <= ymin < ymax <= SPEC.canvas_size and 0 <= xmin < xmax <= SPEC.canvas_size
        np.testing.assert_array_equal(masks_to_boxes(canvases.instance_masks[i, :k]), canvases.boxes[i, :k])


def test_masks_binary_disjoint_and_semantic_union(canvases):
    assert set(np.unique(canvases.instance_masks)) <= {0, 1}
    for i in range(len(canvases.images)):
        k = canvases.num_objects[i]
        inst = canvases.instance_masks[i, :k].astype(np.int32)
        assert inst.sum(axis=0).max() <= 1  # occlusion resolved: one owner per pixel
        expected = np.zeros(canvases.semantic_masks[i].shape, np.int32)
        for j in range(k):
            expected[inst[j] == 1] = canvases.classes[i, j] + 1
        np.testing.assert_array_equal(canvases.semantic_masks[i], expected)
    # garment pixels differ from the background (masks come from the garment intensities)
    img = canvases.images[0].astype(np.float32)
    fg = canvases.semantic_masks[0] > 0
    assert abs(img[fg].mean() - img[~fg].mean()) > 20


def test_occlusion_allowed_when_requested():
    spec = CanvasSpec(canvas_size=32, min_objects=3, max_objects=3, max_mask_overlap=0.5,
                      min_garment_size=16, max_garment_size=24, noise_std=0.0, tint=False)
    arr = generate_canvases(12, "train", spec, seed=0, data_dir=FIXTURE_DIR)
    for i in range(12):
        k = arr.num_objects[i]
        assert arr.instance_masks[i, :k].astype(np.int32).sum(axis=0).max() <= 1
        np.testing.assert_array_equal(masks_to_boxes(arr.instance_masks[i, :k]), arr.boxes[i, :k])
    # untinted garments are grey (equal channels, no noise)
    img = arr.images[0].astype(np.int32)
    assert np.abs(img[..., 0] - img[..., 1]).max() <= 1


def test_canvas_dataset_matches_arrays(canvases):
    ds = canvas_dataset(40, "train", SPEC, seed=3, data_dir=FIXTURE_DIR)
    first = next(iter(ds.batch(40)))
    np.testing.assert_array_equal(first["image"].numpy(), canvases.images)
    np.testing.assert_array_equal(first["boxes"].numpy(), canvases.boxes)
    np.testing.assert_array_equal(first["semantic_mask"].numpy(), canvases.semantic_masks)
    assert first["source_id"].dtype.name == "int64"
    sub = canvas_dataset(4, "train", SPEC, seed=3, data_dir=FIXTURE_DIR, keys=["image", "boxes"])
    assert sorted(sub.element_spec) == ["boxes", "image"]
    with pytest.raises(ValueError, match="unknown canvas keys"):
        canvas_dataset(2, "train", SPEC, data_dir=FIXTURE_DIR, keys=["nope"])


def test_spec_validation():
    with pytest.raises(ValueError, match="min_objects"):
        CanvasSpec(min_objects=3, max_objects=2).resolved()
    with pytest.raises(ValueError, match="garment_size"):
        CanvasSpec(canvas_size=32, min_garment_size=40).resolved()
    spec = CanvasSpec(canvas_size=96).resolved()
    assert (spec.min_garment_size, spec.max_garment_size) == (24, 48)
