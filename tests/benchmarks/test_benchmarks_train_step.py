"""hac_tf/benchmarks/train_step.py: every row preset is a valid config at its sizes and
precisions, the overrides a row adds, unknown rows (no measurement here: timings are meaningless
in the test suite; hac-bench-train's table is checked in tests/benchmarks/test_benchmarks_peer_figures.py)."""

import pytest

from hac_tf.benchmarks import train_step
from hac_tf.benchmarks.train_step import PEER_MODEL_ROW_PREFIX, PRECISIONS, ROWS, row_overrides
from hac_tf.training.config import load_config


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_row_is_a_valid_config(name):
    row = ROWS[name]
    for precision in PRECISIONS:
        config = load_config(row.config, row_overrides(name, row.batch_sizes[0], precision))
        assert config.data.batch_size == row.batch_sizes[0] and config.data.image_size == row.image_size
        assert config.train.mixed_precision == precision and not config.export.enabled
    if name.endswith("_baseline"):
        assert tuple(config.model.level_depths) == (4,)


def test_row_overrides_append_the_extra_ones_last():
    overrides = row_overrides("cpu_default", 8, "float32", ["model.embed_dim=16"])
    assert overrides[-1] == "model.embed_dim=16"
    assert {"data.batch_size=8", "data.image_size=32", "train.mixed_precision=float32",
            "export.enabled=false"} <= set(overrides)
    with pytest.raises(KeyError):
        row_overrides("no_such_row", 8, "float32")


def test_the_peer_model_rows_exist_for_each_size():
    peer_rows = [n for n in ROWS if n.startswith(PEER_MODEL_ROW_PREFIX)]
    assert sorted(ROWS[n].image_size for n in peer_rows if not n.endswith("_baseline")) == [32, 64, 96]


def test_child_environment_sets_or_clears_the_system_allocator(monkeypatch):
    monkeypatch.setenv(train_step.SYSTEM_ALLOCATOR_ENV, "1")  # left over from the caller: not inherited
    assert train_step.SYSTEM_ALLOCATOR_ENV not in train_step.child_environment("onednn")
    assert train_step.child_environment("system")[train_step.SYSTEM_ALLOCATOR_ENV] == "1"
    monkeypatch.setenv("HAC_SOME_SETTING", "x")
    assert train_step.child_environment()["HAC_SOME_SETTING"] == "x"  # the rest is inherited
    with pytest.raises(ValueError, match="allocator must be one of"):
        train_step.child_environment("jemalloc")
