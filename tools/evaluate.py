"""Evaluate a pretraining run: kNN and per-stage multi-task linear probes on frozen features,
next to a random-init backbone of the same architecture.

  python tools/evaluate.py --model_dir=runs/quickstart
  python tools/evaluate.py --model_dir=runs/quickstart --params_override=eval.probe_max_train=60000

Reads ``model_dir/config.yaml`` (written by tools/train.py), restores the latest checkpoint,
extracts features once per split and trains the probes on them. Writes
``model_dir/eval/results.json``, ``results.png`` and prints the table.
"""

from __future__ import annotations

import os
import sys
from typing import List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A training run directory (with config.yaml and checkpoints/).")
flags.DEFINE_multi_string("params_override", [], "Overrides of the run's config (e.g. eval.*).")
flags.DEFINE_bool("export", False, "Also export the backbone after evaluating.")
flags.mark_flag_as_required("model_dir")


def main(argv: List[str]) -> int:
    del argv
    from hac_tf.training.config import ConfigError, load_config

    cfg = os.path.join(FLAGS.model_dir, "config.yaml")
    if not os.path.isfile(cfg):
        print(f"error: {cfg} not found -- is {FLAGS.model_dir!r} a training run directory?", file=sys.stderr)
        return 2
    try:
        config = load_config(cfg, list(FLAGS.params_override) + [f"export.enabled={str(FLAGS.export).lower()}"])
    except ConfigError as e:
        print(f"ConfigError: {e}", file=sys.stderr)
        return 2
    if not os.path.isdir(os.path.join(FLAGS.model_dir, "checkpoints")):
        print(f"error: no checkpoints/ in {FLAGS.model_dir!r}", file=sys.stderr)
        return 2
    from hac_tf.training.run import run_experiment

    run_experiment(config, FLAGS.model_dir, mode="eval")
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
