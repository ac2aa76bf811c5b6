"""The benchmark's table (markdown, mean +- std over seeds) and plot (garment accuracy vs colour error)."""

from __future__ import annotations

import glob
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["COLUMNS", "PRIMARY_COLOUR", "PRIMARY_GARMENT", "aggregate", "load_records", "markdown_table",
           "plot_tradeoff", "point_labels", "write_summary"]

#: the budget column of a row that does not train (random init; its records have no budget)
UNTRAINED_BUDGET = "init"
#: file names of the summary in the output directory: <stem>.md (the table) and <stem>.png (the plot)
SUMMARY_STEM = "summary"
#: (column title, feature, measure key, shown in percent)
COLUMNS: Tuple[Tuple[str, str, str, bool], ...] = (
    ("garment lin. s4 %", "stage4", "garment_linear", True),
    ("garment kNN s4 %", "stage4", "garment_knn_weighted", True),  # hac_tf.evaluation's kNN (k 200, T 0.1)
    ("band hue ridge s4 deg", "stage4", "band_hue_ridge_mae", False),
    ("band hue kNN s4 deg", "stage4", "band_hue_knn_mae", False),
    ("body hue kNN s4 deg", "stage4", "body_hue_knn_mae", False),
    ("hue diff. ridge s4 deg", "stage4", "hue_difference_ridge_mae", False),
    ("colour ridge s4 deg", "stage4", "colour_ridge_mae", False),
    ("colour kNN s4 deg", "stage4", "colour_knn_mae", False),
    ("shift R2 s4", "stage4", "shift_r2", False),
    ("inv. gap s4", "stage4", "invariance_gap", False),
    ("band hue ridge proj. deg", "projector", "band_hue_ridge_mae", False),
)
#: the plot's axes: (feature, measure) of the colour error (first one present) and of the garment
#: accuracy; the body hue's kNN error first: the measure the gate chose (docs/RESULTS.md), since
#: the band's hue is at chance for every row, random init included
PRIMARY_COLOUR: Tuple[Tuple[str, str], ...] = (("stage4", "body_hue_knn_mae"), ("stage4", "band_hue_ridge_mae"),
                                               ("stage4", "colour_ridge_mae"))
PRIMARY_GARMENT: Tuple[str, str] = ("stage4", "garment_linear")


def load_records(out_dir: str) -> List[dict]:
    """Every cell JSON in ``out_dir`` (sorted by file name)."""
    records = []
    for path in sorted(glob.glob(os.path.join(out_dir, "*__seed*.json"))):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        record["_file"] = os.path.basename(path)
        records.append(record)
    return records


def _value(record: dict, feature: str, measure: str) -> Optional[float]:
    value = record.get("results", {}).get(feature, {}).get(measure)
    return None if value is None else float(value)


def aggregate(records: Sequence[dict], row_order: Sequence[str] = ()) -> List[dict]:
    """One entry per (row, budget): ``{"row", "budget", "seeds", "steps", "values": {(feature,
    measure): [per-seed values]}}``, rows in ``row_order`` first, then by name."""
    groups: Dict[Tuple[str, str], List[dict]] = {}
    for r in records:
        groups.setdefault((r["row"], r.get("budget") or UNTRAINED_BUDGET), []).append(r)
    order = {name: i for i, name in enumerate(row_order)}
    out = []
    for (row, budget), members in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0])):
        members = sorted(members, key=lambda r: r["seed"])
        values: Dict[Tuple[str, str], List[float]] = {}
        for r in members:
            for feature, measures in r.get("results", {}).items():
                for measure, v in measures.items():
                    values.setdefault((feature, measure), []).append(float(v))
        out.append({"row": row, "budget": budget, "seeds": [r["seed"] for r in members],
                    "steps": sorted({int(r.get("steps", 0)) for r in members}), "values": values})
    return out


def _mean_std(values: Sequence[float], percent: bool) -> str:
    scale = 100.0 if percent else 1.0
    v = np.asarray(values, np.float64) * scale
    if len(v) == 1:
        return f"{v[0]:.1f}"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def markdown_table(groups: Sequence[dict]) -> str:
    """Markdown table: row, budget, seeds, steps, then every column of `COLUMNS` some row has
    (mean ± sample std over seeds; one seed: the value)."""
    columns = [c for c in COLUMNS if any((c[1], c[2]) in g["values"] for g in groups)]
    head = ["row", "budget", "seeds", "steps"] + [c[0] for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g["row"], g["budget"], str(len(g["seeds"])), "/".join(str(s) for s in g["steps"])]
        for _, feature, measure, percent in columns:
            values = g["values"].get((feature, measure))
            cells.append(_mean_std(values, percent) if values else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def point_labels(groups: Sequence[dict]) -> Tuple[List[str], str]:
    """Legend labels of the plot's points, and the budget they share.

    ``(["row", ...], "images:73216")`` when every trained group has the same budget (the budget
    then goes in the title, once; an untrained row's budget, "init", is no budget);
    ``(["row (budget)", ...], "")`` when they differ.
    """
    budgets = {g["budget"] for g in groups if g["budget"] != UNTRAINED_BUDGET}
    if len(budgets) <= 1:
        return [g["row"] for g in groups], next(iter(budgets), "")
    return [f"{g['row']} ({g['budget']})" for g in groups], ""


#: marker shapes cycled with the colours, so that neighbouring points stay distinguishable
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "*", "h")


def plot_tradeoff(groups: Sequence[dict], path: str, title: str = "",
                  colour: Optional[Tuple[str, str]] = None) -> Optional[str]:
    """PNG: garment accuracy (y) against colour error (x), one point per (row, budget) with the
    seed std as error bars, named in a legend beside the axes (rows close together would make
    labels at the points overlap). ``colour``: the x axis as (feature, measure); None: the first
    of `PRIMARY_COLOUR` present. Returns the path, or None when no group has both measures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    candidates = (tuple(colour),) if colour else PRIMARY_COLOUR
    colour_key = next((k for k in candidates if any(k in g["values"] for g in groups)), None)
    points = [g for g in groups if colour_key and colour_key in g["values"] and PRIMARY_GARMENT in g["values"]]
    if not points:
        return None
    labels, shared_budget = point_labels(points)
    palette = plt.get_cmap("tab20").colors  # pairs (dark, light) of 10 hues: rows 0-9 dark, 10-19 light
    fig, ax = plt.subplots(figsize=(9.5, 5.5))
    for i, (g, label) in enumerate(zip(points, labels)):
        x = np.asarray(g["values"][colour_key])
        y = 100.0 * np.asarray(g["values"][PRIMARY_GARMENT])
        xerr = x.std(ddof=1) if len(x) > 1 else 0.0
        yerr = y.std(ddof=1) if len(y) > 1 else 0.0
        ax.errorbar(x.mean(), y.mean(), xerr=xerr, yerr=yerr, fmt=_MARKERS[i % len(_MARKERS)],
                    color=palette[2 * (i % 10) + (i // 10) % 2], capsize=3,
                    markersize=7, label=f"{label} (n={len(x)})")
    ax.set_xlabel(f"colour error: {colour_key[1]} at {colour_key[0]} (degrees, lower keeps more colour)")
    ax.set_ylabel(f"garment accuracy: {PRIMARY_GARMENT[1]} at {PRIMARY_GARMENT[0]} (%)")
    default_title = "garment accuracy vs colour error (mean ± std over seeds)"
    if shared_budget:
        default_title += f", budget {shared_budget}"
    ax.set_title(title or default_title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_summary(out_dir: str, row_order: Sequence[str] = (), title: str = "",
                  colour: Optional[Tuple[str, str]] = None) -> Tuple[str, Optional[str], str]:
    """Writes ``<out_dir>/summary.md`` and ``<out_dir>/summary.png``; returns (md path, png path or None, table)."""
    groups = aggregate(load_records(out_dir), row_order)
    table = markdown_table(groups)
    md = os.path.join(out_dir, SUMMARY_STEM + ".md")
    with open(md, "w", encoding="utf-8") as f:
        f.write((f"# {title}\n\n" if title else "") + table + "\n")
    png = plot_tradeoff(groups, os.path.join(out_dir, SUMMARY_STEM + ".png"), title, colour)
    return md, png, table
