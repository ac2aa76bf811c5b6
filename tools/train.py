"""Pretrain a backbone (TF Model Garden-style flags).

  python tools/train.py --config_file=configs/cfmnist_simsiam_hierarchical.yaml --model_dir=runs/hier
  python tools/train.py --config_file=... --params_override="train.epochs=2,data.batch_size=128"
  python tools/train.py --config_file=... --strategy=mirrored --num_logical_cpus=2
  TF_CONFIG='{...}' python tools/train.py --config_file=... --strategy=multi_worker

Restarting the same command after an interruption resumes from the last checkpoint in
--model_dir. --mode=train_and_eval (default) evaluates (kNN + per-stage multi-task linear probe,
with a random-init reference) and exports the backbone when training ends.

Exit codes: 0 done; 1 bad/missing data or an I/O error (one line, no traceback); 2 bad config
(nothing created); 3 NaN/Inf loss or gradient (names the step and the intact last checkpoint);
4 a checkpoint could not be written, e.g. disk full (partial files removed, previous checkpoint
intact: free space and re-run the same command).
"""

from __future__ import annotations

import os
import sys
from typing import List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("config_file", None, "YAML experiment config (see configs/).")
flags.DEFINE_multi_string("params_override", [], "Overrides: 'a.b=v,c.d=w' or a YAML string; repeatable.")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, logs, metrics and evaluation.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"], "tf.distribute strategy.")
flags.DEFINE_string("tpu", "", "TPU name or address (with --strategy=tpu).")
flags.DEFINE_integer("num_logical_cpus", 0, "Split the CPU into this many replicas (CPU-only machines).")
flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval"], "What to run.")
flags.mark_flag_as_required("model_dir")


def main(argv: List[str]) -> int:
    del argv
    from hac_tf.training.config import ConfigError, load_config

    try:
        config = load_config(FLAGS.config_file, FLAGS.params_override)
    except ConfigError as e:
        print(f"ConfigError: {e}", file=sys.stderr)
        return 2

    from hac_tf.training.run import run_experiment
    from hac_tf.training.strategy import build_strategy
    from hac_tf.training.threads import configure_cpu_threads_for
    from hac_tf.training.trainer import CheckpointWriteError, NonFiniteLossError

    configure_cpu_threads_for(config)
    strategy = build_strategy(FLAGS.strategy, FLAGS.tpu, FLAGS.num_logical_cpus)
    try:
        run_experiment(config, FLAGS.model_dir, strategy, FLAGS.mode)
    except NonFiniteLossError as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 3
    except CheckpointWriteError as e:  # disk full and the like: previous checkpoint intact
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 4
    except (ValueError, OSError) as e:  # bad/missing data and the like: one clear line, no traceback
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
