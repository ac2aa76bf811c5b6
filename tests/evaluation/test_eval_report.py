"""Reports: table contents, JSON round trip, PNG written at the requested size."""

import json
import os

import matplotlib.image
import numpy as np

from hac_tf.evaluation import format_table, load_report, save_report

RESULTS = {
    "pretrained": {
        "stage1": {"garment": 0.71, "colour": 0.93},
        "stage4": {"garment": 0.88, "colour": 0.41},
        "embedding": {"garment": np.float64(0.87), "colour": np.float32(0.25)},
    },
    "random-init": {
        "stage1": {"garment": 0.55, "colour": 0.90},
        "stage4": {"garment": 0.61, "colour": 0.70},
        "embedding": {"garment": 0.60, "colour": 0.66, "colour/knn": 0.5},
    },
}


def test_table_has_every_row_and_column():
    table = format_table(RESULTS, title="probe")
    lines = table.splitlines()
    assert lines[0] == "probe"
    for name in ("pretrained", "random-init", "stage1", "stage4", "embedding", "garment",
                 "colour", "colour/knn"):
        assert name in table
    row = next(l for l in lines if l.startswith("pretrained"))
    assert "71.00" in row and "25.00" in row and row.rstrip().endswith("-")  # missing knn cell
    assert "50.00" in next(l for l in lines if l.startswith("random-init"))
    body = [l for l in lines if l.startswith(("model", "pretrained", "random-init"))]
    assert len({len(l) for l in body}) == 1  # fixed width: every line equally long
    assert "0.7100" in format_table(RESULTS, percent=False, digits=4)


def test_save_report_json_round_trip_and_png(tmp_path):
    out = tmp_path / "report"
    paths = save_report(RESULTS, str(out), "Coloured Fashion-MNIST probe", figsize=(9.0, 4.0),
                        dpi=100, chance={"garment": 0.1, "colour": 1 / 16},
                        metadata={"epochs": 3})
    assert paths.json == os.path.join(str(out), "results.json")
    loaded = load_report(str(out))
    assert loaded["title"] == "Coloured Fashion-MNIST probe" and loaded["metadata"] == {"epochs": 3}
    expected = json.loads(json.dumps(RESULTS, default=float))
    assert loaded["results"] == expected
    assert load_report(paths.json) == loaded
    assert os.path.getsize(paths.png) > 10_000
    image = matplotlib.image.imread(paths.png)
    assert image.shape[:2] == (400, 900)
    assert image[..., :3].std() > 0.05  # not blank
    with open(paths.text) as f:
        assert f.read() == paths.table
    assert "random-init" in paths.table


def test_default_figure_size_scales(tmp_path):
    small = save_report({"m": {"e": {"x": 0.5}}}, str(tmp_path / "s"), "")
    h, w = matplotlib.image.imread(small.png).shape[:2]
    assert w >= 400 and h >= 400
