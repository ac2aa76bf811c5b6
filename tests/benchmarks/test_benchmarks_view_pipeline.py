"""hac_tf/benchmarks/view_pipeline.py: the synthetic source and both pipelines deliver what the
benchmark counts (shapes and view counts; the rate itself is not checked: timings are
meaningless in the test suite)."""

import numpy as np

from hac_tf.benchmarks.view_pipeline import SOURCE_SIZE, add_one_view_dataset, plain_kerascv_dataset, smooth_source


def test_smooth_source_is_smooth_uint8_at_the_source_size():
    images, labels = next(iter(smooth_source(224, n=4).batch(4)))
    assert images.shape == (4, SOURCE_SIZE[224], SOURCE_SIZE[224], 3) and images.dtype == np.uint8
    x = images.numpy().astype(np.float32)
    assert np.abs(np.diff(x, axis=1)).mean() < 0.1 * x.std()  # neighbours close: not white noise
    assert labels["label"].numpy().tolist() == [0, 0, 0, 0]


def test_plain_kerascv_pipeline_gives_two_views():
    batch = next(iter(plain_kerascv_dataset(32, 4)))
    assert batch["view_a"].shape == (4, 32, 32, 3) and batch["view_b"].shape == (4, 32, 32, 3)


def test_add_one_pipeline_gives_two_recorded_views_per_level():
    batch = next(iter(add_one_view_dataset(32, 4, num_levels=2)))
    levels = sorted(k for k in batch if k.startswith("level_"))
    assert levels == ["level_1", "level_2"]  # 2 x num_levels views, as the benchmark counts them
    for level in levels:
        assert batch[level]["view_a"].shape == (4, 32, 32, 3) and batch[level]["view_b"].shape == (4, 32, 32, 3)
        assert "crop" in batch[level]["params_a"] and "crop" in batch[level]["params_b"]


def test_views_from_sources_of_another_size():
    """--source_size: 32 px views cut from 64 px sources (the peer's add-one pipeline is measured
    both ways: sources of the view size and 256 px sources)."""
    images, _ = next(iter(smooth_source(32, n=2, source_size=64).batch(2)))
    assert images.shape == (2, 64, 64, 3)
    batch = next(iter(add_one_view_dataset(32, 2, num_levels=1, source_size=64)))
    assert batch["level_1"]["view_a"].shape == (2, 32, 32, 3)
    assert next(iter(plain_kerascv_dataset(32, 2, source_size=64)))["view_a"].shape == (2, 32, 32, 3)
