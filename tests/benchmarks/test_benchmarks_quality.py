"""hac_tf/benchmarks/quality.py: the table of a known summary, the configs of the cells, and a bad
method or override refused before anything trains."""

import math
import os

import pytest

from hac_tf.benchmarks.quality import quality_table, run_quality_benchmark, variant_config
from hac_tf.methods import METHOD_NAMES
from hac_tf.training.config import ConfigError, load_config


def test_quality_table_of_a_known_summary():
    pretrained = {f"stage{i}": {"garment": 0.5 + i / 100, "colour": 0.25} for i in range(1, 5)}
    pretrained["knn"] = {"garment": 0.6}
    table = quality_table({"simclr/hierarchical": {"pretrained": pretrained,
                                                   "random-init": {"stage4": {"garment": 0.1}}}})
    lines = table.splitlines()
    assert lines[0].startswith("model") and "stage4" in lines[0] and lines[0].endswith("kNN")
    cells = lines[3].split()
    assert cells[:2] == ["simclr/hierarchical", "pretrained"]
    assert cells[3:5] == ["51.0", "25.0"] and cells[-1] == "60.0"
    random_init = lines[4].split()
    assert random_init[1] == "random-init" and random_init[-1] == "nan"  # what it lacks shows as nan
    assert random_init[-4] == "10.0" and math.isnan(float(random_init[3]))  # stage4 garment


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("variant", ["baseline", "hierarchical"])
def test_cells_are_shipped_configs(method, variant):
    """Every registered method has its two benchmark cells (hac-bench-quality --methods=<method>)."""
    config = load_config(variant_config(method, variant))
    assert config.model.method == method


def test_bad_cells_are_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="no_such_method"):
        run_quality_benchmark(["simclr", "no_such_method"], ["baseline"], str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="no_such_key"):
        run_quality_benchmark(["simclr"], ["baseline"], str(tmp_path / "out"), ["model.no_such_key=1"])
    assert not os.path.exists(tmp_path / "out")
