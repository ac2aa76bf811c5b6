"""Quality benchmark: baseline vs hierarchical pretraining at the same budget and seed.

For each base method, trains the shipped configs ``cfmnist_<method>_<variant>`` (the baseline:
one depth, classical two views, no embedding; the hierarchical variant: add-one views, 4 depths,
colour embeddings) with the same overrides, and tabulates garment and colour linear-probe
accuracy per stage and kNN accuracy, next to a random-init backbone of the same architecture.
This is an experiment, not a test: the configs, data and probe are the shipped ones, untuned for
this comparison.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Dict, Mapping, Sequence, TextIO

__all__ = ["STAGES", "quality_table", "run_quality_benchmark", "variant_config"]

STAGES = ("stage1", "stage2", "stage3", "stage4")


def variant_config(method: str, variant: str) -> str:
    """The shipped config of one benchmark cell, e.g. ``cfmnist_simclr_hierarchical``."""
    return f"cfmnist_{method}_{variant}"


def _row(name: str, res: Mapping[str, Mapping[str, float]]) -> str:
    cells = []
    for stage in STAGES:
        r = res.get(stage, {})
        cells.append(f"{r.get('garment', float('nan')) * 100:5.1f} {r.get('colour', float('nan')) * 100:5.1f}")
    knn = res.get("knn", {}).get("garment", float("nan")) * 100
    return f"{name:<28} | " + " | ".join(cells) + f" | {knn:5.1f}"


def quality_table(summary: Mapping[str, Mapping[str, Mapping]]) -> str:
    """The text table of ``{"<method>/<variant>": evaluation results}``: per stage the garment and
    colour linear-probe accuracy (%), then kNN garment accuracy (%); a ``random-init`` line under
    each pretrained one when the evaluation has it."""
    header = (f"{'model':<28} | " + " | ".join(f"{s:^11}" for s in STAGES) + " | kNN")
    sub = f"{'':<28} | " + " | ".join("garm.  col." for _ in STAGES) + " | garm."
    lines = [header, sub, "-" * len(header)]
    for key, evals in summary.items():
        lines.append(_row(f"{key} pretrained", evals["pretrained"]))
        if "random-init" in evals:
            lines.append(_row(f"{key} random-init", evals["random-init"]))
    return "\n".join(lines)


def run_quality_benchmark(methods: Sequence[str], variants: Sequence[str], out_dir: str,
                          overrides: Sequence[str] = (), progress_stream: TextIO = sys.stderr) -> Dict[str, Dict]:
    """Trains and evaluates every (method, variant) into ``<out_dir>/<method>_<variant>`` (runs
    resume), writes ``<out_dir>/summary.json`` and ``summary.txt`` (the :func:`quality_table`) and
    returns the summary. Every config is loaded (and checked) before anything trains.

    Raises:
      hac_tf.training.config.ConfigError: an unknown method/variant or a bad override.
    """
    from hac_tf.training.config import load_config
    from hac_tf.training.run import run_experiment

    cells = [(method, variant) for method in methods for variant in variants]
    configs = {cell: load_config(variant_config(*cell), list(overrides) + ["export.enabled=false"]) for cell in cells}
    summary: Dict[str, Dict] = {}
    for method, variant in cells:
        model_dir = os.path.join(out_dir, f"{method}_{variant}")
        print(f"=== {method} {variant}: {variant_config(method, variant)} -> {model_dir}", file=progress_stream,
              flush=True)
        result = run_experiment(configs[(method, variant)], model_dir, mode="train_and_eval",
                                progress_stream=progress_stream)
        summary[f"{method}/{variant}"] = result["eval"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out_dir, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(quality_table(summary) + "\n")
    return summary
