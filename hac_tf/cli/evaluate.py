"""Evaluate a pretraining run: kNN and per-stage multi-task linear probes on frozen features,
next to a random-init backbone of the same architecture.

  hac-evaluate --model_dir=runs/quickstart
  hac-evaluate --model_dir=runs/quickstart --params_override=eval.probe_max_train=60000

Reads model_dir/config.yaml (written by hac-train), restores the latest checkpoint, extracts
features once per split and trains the probes on them. Writes model_dir/eval/results.json,
results.png and prints the table. Exit codes: 0 done; 2 not a run directory or a bad config.
"""

from __future__ import annotations

import os
import sys
from typing import List

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-evaluate (same as tools/evaluate.py)."""
    fv = flag_values
    flags.DEFINE_string("model_dir", None, "A training run directory (with config.yaml and checkpoints/).",
                        flag_values=fv)
    flags.DEFINE_multi_string("params_override", [], "Overrides of the run's config (e.g. eval.*).", flag_values=fv)
    flags.DEFINE_bool("export", False, "Also export the backbone after evaluating.", flag_values=fv)
    define_verbose_flag(fv)
    flags.mark_flag_as_required("model_dir", flag_values=fv)


def main(argv: List[str]) -> int:
    """Evaluates the run of the parsed flags; returns the exit code."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.training.config import ConfigError, load_config

    cfg = os.path.join(f.model_dir, "config.yaml")
    if not os.path.isfile(cfg):
        print(f"error: {cfg} not found -- is {f.model_dir!r} a training run directory?", file=sys.stderr)
        return 2
    try:
        config = load_config(cfg, list(f.params_override) + [f"export.enabled={str(f.export).lower()}"])
    except ConfigError as e:
        print(f"ConfigError: {e}", file=sys.stderr)
        return 2
    if not os.path.isdir(os.path.join(f.model_dir, "checkpoints")):
        print(f"error: no checkpoints/ in {f.model_dir!r}", file=sys.stderr)
        return 2
    from hac_tf.training.run import run_experiment

    run_experiment(config, f.model_dir, mode="eval")
    return 0


def run() -> None:
    """Console script ``hac-evaluate``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
