"""Probe reports: a fixed-width text table, ``results.json`` and a grouped bar chart.

``results`` is ``{row_name: {feature_name: {label_key: accuracy in [0, 1]}}}``: rows are models
(e.g. ``"pretrained"``, ``"random-init"``), i.e. one `multi_task_probe` result per row. Columns are
the union of (feature, label) pairs over all rows, in first-seen order; missing cells show ``-``.

The chart has one panel per label; inside a panel, groups of bars along x are features (stages)
and bars within a group are rows (models), so the same stage of different models sits side by
side. Rendering uses a bare `matplotlib.figure.Figure` (Agg canvas), never pyplot, so it does
not touch the process-wide backend and is safe in headless jobs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

__all__ = ["ReportPaths", "format_table", "save_report", "load_report", "plot_results"]

Results = Mapping[str, Mapping[str, Mapping[str, float]]]


class ReportPaths(NamedTuple):
    json: str  # results.json
    png: str  # bar chart
    text: str  # the table as plain text
    table: str  # the table string itself


def _columns(results: Results) -> list[tuple[str, list[str]]]:
    """``[(feature, [labels...]), ...]`` in first-seen order over all rows."""
    order: dict[str, dict[str, None]] = {}
    for row in results.values():
        for feature, per_label in row.items():
            labels = order.setdefault(feature, {})
            for label in per_label:
                labels.setdefault(label, None)
    return [(feature, list(labels)) for feature, labels in order.items()]


def _cell(value, percent: bool, digits: int) -> str:
    if value is None:
        return "-"
    value = float(value)
    if math.isnan(value):
        return "nan"
    return f"{value * 100 if percent else value:.{digits}f}"


def format_table(results: Results, title: str | None = None, percent: bool = True,
                 digits: int = 2) -> str:
    """A readable fixed-width table: one line per row (model), columns grouped by feature.

    Values are shown as percentages (``percent=True``) with ``digits`` decimals.
    """
    columns = _columns(results)
    row_names = [str(r) for r in results]
    name_w = max([len("model")] + [len(r) for r in row_names])
    cells = {r: {(f, l): _cell(results[r].get(f, {}).get(l), percent, digits)
                 for f, labels in columns for l in labels} for r in results}
    widths = {}
    for f, labels in columns:
        for l in labels:
            widths[(f, l)] = max([len(l), 5] + [len(cells[r][(f, l)]) for r in results])
    group_w = []
    for f, labels in columns:
        inner = sum(widths[(f, l)] for l in labels) + 2 * (len(labels) - 1)
        if len(f) > inner:  # widen the last column so the feature name fits
            widths[(f, labels[-1])] += len(f) - inner
            inner = len(f)
        group_w.append(inner)

    sep = " | "
    lines = []
    if title:
        lines.append(title)
    unit = "accuracy %" if percent else "accuracy"
    lines.append(f"({unit})")
    head1 = [" " * name_w] + [f.center(w) for (f, _), w in zip(columns, group_w)]
    head2 = ["model".ljust(name_w)] + [
        "  ".join(l.rjust(widths[(f, l)]) for l in labels) for f, labels in columns]
    rule = ["-" * name_w] + ["-" * w for w in group_w]
    lines += [sep.join(head1).rstrip(), sep.join(head2), "-+-".join(rule)]
    for r, name in zip(results, row_names):
        parts = [name.ljust(name_w)] + [
            "  ".join(cells[r][(f, l)].rjust(widths[(f, l)]) for l in labels)
            for f, labels in columns]
        lines.append(sep.join(parts))
    return "\n".join(lines) + "\n"


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _default_figsize(n_features: int, n_rows: int, n_panels: int) -> tuple[float, float]:
    panel_w = max(3.8, 1.0 + n_features * (0.32 * n_rows + 0.35))
    return (min(panel_w * n_panels + 0.6, 40.0), 4.6)


def plot_results(results: Results, title: str = "", chance: Mapping[str, float] | None = None,
                 figsize: tuple[float, float] | None = None, dpi: int = 120,
                 annotate: bool | None = None):
    """Build the grouped bar chart and return the `matplotlib.figure.Figure`."""
    from matplotlib.figure import Figure

    columns = _columns(results)
    features = [f for f, _ in columns]
    labels: dict[str, None] = {}
    for _, ls in columns:
        for l in ls:
            labels.setdefault(l, None)
    labels_list = list(labels) or [""]
    rows = list(results)
    if figsize is None:
        figsize = _default_figsize(len(features), len(rows), len(labels_list))
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(labels_list), sharey=True, squeeze=False)[0]
    colours = [f"C{i % 10}" for i in range(len(rows))]
    n_bars = max(1, len(rows))
    width = 0.8 / n_bars
    x = np.arange(len(features))
    if annotate is None:
        annotate = len(features) * len(rows) <= 24
    for ax, label in zip(axes, labels_list):
        for i, row in enumerate(rows):
            vals = [results[row].get(f, {}).get(label) for f in features]
            heights = np.array([np.nan if v is None else 100.0 * float(v) for v in vals])
            offs = x - 0.4 + width * (i + 0.5)
            bars = ax.bar(offs, np.nan_to_num(heights, nan=0.0), width * 0.92, color=colours[i],
                          label=str(row))
            for bar, h in zip(bars, heights):
                centre = bar.get_x() + bar.get_width() / 2
                if not np.isfinite(h):  # missing cell: say so rather than draw a zero-height bar
                    ax.annotate("n/a", (centre, 0), xytext=(0, 2), textcoords="offset points",
                                ha="center", va="bottom", fontsize=7, color="0.4", rotation=90)
                elif annotate:
                    ax.annotate(f"{h:.1f}", (centre, h), xytext=(0, 2), textcoords="offset points",
                                ha="center", va="bottom", fontsize=7,
                                rotation=90 if n_bars > 2 else 0)
        if chance and label in chance:
            ax.axhline(100.0 * float(chance[label]), color="0.35", linestyle="--", linewidth=1,
                       label="chance")
        ax.set_title(label)
        ax.set_xticks(x, features, rotation=30 if len(features) > 4 else 0)
        ax.set_xlabel("feature (stage)")
        ax.set_ylim(0, 109 if annotate else 100)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_ylabel("test accuracy (%)")
    handles, names = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # a chance line may exist only in later panels
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        fig.legend(handles, names, loc="outside upper right", ncols=min(len(names), 4),
                   title="model", fontsize=9, title_fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=12, x=0.02, ha="left")
    return fig


def save_report(results: Results, out_dir: str, title: str = "",
                chance: Mapping[str, float] | None = None, metadata: Mapping | None = None,
                figsize: tuple[float, float] | None = None, dpi: int = 120,
                basename: str = "results") -> ReportPaths:
    """Write ``<basename>.json``, ``<basename>.png`` and ``<basename>.txt`` into ``out_dir``.

    The JSON is ``{"title", "results", "metadata"}``; `load_report` reads it back. ``chance`` maps
    label -> chance accuracy (drawn as a dashed line). Returns `ReportPaths` (paths + table).
    """
    os.makedirs(out_dir, exist_ok=True)
    table = format_table(results, title=title or None)
    json_path = os.path.join(out_dir, f"{basename}.json")
    png_path = os.path.join(out_dir, f"{basename}.png")
    text_path = os.path.join(out_dir, f"{basename}.txt")
    payload = {"title": title, "results": _jsonable(results), "metadata": _jsonable(metadata or {})}
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=False)
        f.write("\n")
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(table)
    fig = plot_results(results, title=title, chance=chance, figsize=figsize, dpi=dpi)
    fig.savefig(png_path, dpi=dpi)
    return ReportPaths(json=json_path, png=png_path, text=text_path, table=table)


def load_report(path: str) -> dict:
    """Read a report JSON (a file path or the directory holding ``results.json``)."""
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
