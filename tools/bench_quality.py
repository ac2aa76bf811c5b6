"""Quality benchmark: baseline vs hierarchical pretraining at the same budget and seed.

For each method, trains the baseline (one depth, classical two views, no embedding) and the
hierarchical variant (add-one views, 4 depths, colour embeddings) from configs/cfmnist_*.yaml,
then prints garment and colour linear-probe accuracy per stage and kNN accuracy, next to a
random-init backbone of the same architecture. This is an experiment, not a test: the configs,
data and probe are the shipped ones, untuned for this comparison.

  python tools/bench_quality.py                                   # simclr + simsiam, ~10 min per run
  python tools/bench_quality.py --methods=simclr --params_override=train.max_steps=100   # quick look
"""

from __future__ import annotations

import json
import os
import sys
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("methods", ["simclr", "simsiam"], "Base methods to compare.")
flags.DEFINE_list("variants", ["baseline", "hierarchical"], "Config variants.")
flags.DEFINE_string("out_dir", "runs/bench_quality", "Where runs and the summary go (runs resume).")
flags.DEFINE_multi_string("params_override", [], "Overrides applied to every run (same budget for all).")


def _row(name: str, res: Dict[str, Dict[str, float]]) -> str:
    cells = []
    for stage in ("stage1", "stage2", "stage3", "stage4"):
        r = res.get(stage, {})
        cells.append(f"{r.get('garment', float('nan')) * 100:5.1f} {r.get('colour', float('nan')) * 100:5.1f}")
    knn = res.get("knn", {}).get("garment", float("nan")) * 100
    return f"{name:<28} | " + " | ".join(cells) + f" | {knn:5.1f}"


def main(argv: List[str]) -> None:
    del argv
    from hac_tf.training.config import load_config
    from hac_tf.training.run import run_experiment

    summary: Dict[str, Dict] = {}
    for method in FLAGS.methods:
        for variant in FLAGS.variants:
            cfg_file = f"configs/cfmnist_{method}_{variant}.yaml"
            overrides = list(FLAGS.params_override) + ["export.enabled=false"]
            config = load_config(cfg_file, overrides)
            model_dir = os.path.join(FLAGS.out_dir, f"{method}_{variant}")
            print(f"=== {method} {variant}: {cfg_file} -> {model_dir}", flush=True)
            result = run_experiment(config, model_dir, mode="train_and_eval", progress_stream=sys.stderr)
            summary[f"{method}/{variant}"] = result["eval"]
    header = (f"{'model':<28} | " + " | ".join(f"{s:^11}" for s in ("stage1", "stage2", "stage3", "stage4"))
              + " | kNN")
    sub = f"{'':<28} | " + " | ".join("garm.  col." for _ in range(4)) + " | garm."
    lines = [header, sub, "-" * len(header)]
    for key, evals in summary.items():
        lines.append(_row(f"{key} pretrained", evals["pretrained"]))
        if "random-init" in evals:
            lines.append(_row(f"{key} random-init", evals["random-init"]))
    table = "\n".join(lines)
    print(table)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(FLAGS.out_dir, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    app.run(main)
