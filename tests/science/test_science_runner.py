"""hac_tf.science: one benchmark cell end to end (tiny, fixture data), resumption, the summary."""

from __future__ import annotations

import json
import os

import numpy as np

from hac_tf.science.budget import Budget
from hac_tf.science.rows import ROWS
from hac_tf.science.runner import run_cell
from hac_tf.science.summary import aggregate, load_records, markdown_table, plot_tradeoff, point_labels, write_summary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FM_FIXTURE = os.path.join(REPO, "tests", "fixtures", "fashion_mnist")
TINY = [f"data.data_dir={FM_FIXTURE}", "data.batch_size=8", "data.shuffle_buffer=64", "model.width_multiplier=0.125",
        "model.embed_dim=16", "model.projector_hidden_dim=32", "model.projector_out_dim=16",
        "train.checkpoint_every_steps=1", "train.log_every_steps=1"]
FAST = dict(knn_k=5, few_shot_draws=1, shift_examples=32)


def test_cells_train_measure_write_and_are_skipped_when_done(tmp_path):
    out = str(tmp_path)
    path, record, ran = run_cell(ROWS["baseline_shuffled_embed"], 3, Budget("images", 16), out,
                                 "banded_simclr_baseline", TINY, eval_train=64, eval_test=32, log=lambda s: None,
                                 work_dir=str(tmp_path / "work"), report_kwargs=FAST)
    assert os.path.isdir(tmp_path / "work" / "baseline_shuffled_embed__images16__seed3" / "train" / "checkpoints")
    assert ran and os.path.basename(path) == "baseline_shuffled_embed__images16__seed3.json"
    assert record["steps"] == 2 and record["source_images"] == 16 and record["flops_per_step"] > 0
    assert "model.embed_shuffle=true" in record["overrides"] and "train.seed=3" in record["overrides"]
    assert sorted(record["results"]) == ["projector", "stage1", "stage2", "stage3", "stage4"]
    s4 = record["results"]["stage4"]
    assert 0.0 <= s4["garment_linear"] <= 1.0 and 0.0 <= s4["band_hue_ridge_mae"] <= 180.0
    mtime = os.path.getmtime(path)
    again = run_cell(ROWS["baseline_shuffled_embed"], 3, Budget("images", 16), out, "banded_simclr_baseline", TINY,
                     eval_train=64, eval_test=32, log=lambda s: None)
    assert again[2] is False and again[1] == record and os.path.getmtime(path) == mtime
    md, png, table = write_summary(out, tuple(ROWS))
    assert os.path.isfile(md) and png and os.path.getsize(png) > 1000
    assert table.splitlines()[2].startswith("| baseline_shuffled_embed | images:16 | 1 | 2 |")


def test_summary_mean_and_std_over_seeds(tmp_path):
    for seed, (garment, colour) in enumerate(((0.80, 30.0), (0.84, 34.0))):
        record = {"row": "baseline", "seed": seed, "budget": "steps:10", "steps": 10,
                  "results": {"stage4": {"garment_linear": garment, "band_hue_ridge_mae": colour}}}
        (tmp_path / f"baseline__steps10__seed{seed}.json").write_text(json.dumps(record))
    groups = aggregate(load_records(str(tmp_path)))
    assert groups[0]["seeds"] == [0, 1]
    table = markdown_table(groups)
    std = np.std([80.0, 84.0], ddof=1)
    assert f"| baseline | steps:10 | 2 | 10 | 82.0 ± {std:.1f} | 32.0 ± {np.std([30.0, 34.0], ddof=1):.1f} |" in table
    assert plot_tradeoff(groups, str(tmp_path / "a.png")) == str(tmp_path / "a.png")
    assert plot_tradeoff(groups, str(tmp_path / "b.png"), colour=("stage4", "body_hue_knn_mae")) is None  # absent


def test_plot_names_every_row_in_its_legend(tmp_path, monkeypatch):
    """The plot's points are named in a legend: one entry per (row, budget), the budget written
    once in the title when every row shares it, beside each row when they differ."""
    def group(row, budget):
        return {"row": row, "budget": budget, "seeds": [0],
                "values": {("stage4", "garment_linear"): [0.8], ("stage4", "body_hue_knn_mae"): [12.0]}}

    same = [group("random_init", "init"), group("uniform", "images:8"), group("hierarchy_paper", "images:8")]
    assert point_labels(same) == (["random_init", "uniform", "hierarchy_paper"], "images:8")
    assert point_labels([group("random_init", "init")]) == (["random_init"], "")
    mixed = [group("baseline", "steps:214"), group("hierarchy_paper", "flops:3.1e13")]
    assert point_labels(mixed) == (["baseline (steps:214)", "hierarchy_paper (flops:3.1e13)"], "")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    captured = {}
    original_savefig = plt.Figure.savefig

    def savefig(fig, *args, **kwargs):  # read the real figure as it is written
        ax = fig.axes[0]
        handles, labels = ax.get_legend_handles_labels()
        captured.update(labels=labels, title=ax.get_title(),
                        colours={tuple(h.lines[0].get_color()) for h in handles})
        return original_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", savefig)
    assert plot_tradeoff([group(f"row{i}", "images:8") for i in range(12)], str(tmp_path / "legend.png"))
    assert captured["labels"] == [f"row{i} (n=1)" for i in range(12)]
    assert captured["title"].endswith("budget images:8")
    assert len(captured["colours"]) == 12  # no two rows share a colour
    assert os.path.getsize(tmp_path / "legend.png") > 1000
