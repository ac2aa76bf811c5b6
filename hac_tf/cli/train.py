"""Pretrain a backbone (TF Model Garden-style flags).

  hac-train --config_file=cfmnist_simsiam_hierarchical --model_dir=runs/hier
  hac-train --config_file=configs/cfmnist_simsiam_hierarchical.yaml --model_dir=runs/hier
  hac-train --config_file=... --params_override="train.epochs=2,data.batch_size=128"
  hac-train --config_file=... --strategy=mirrored --num_logical_cpus=2
  TF_CONFIG='{...}' hac-train --config_file=... --strategy=multi_worker

--config_file takes a YAML path or the name of a shipped config (hac_tf/configs/, with or
without .yaml). Restarting the same command after an interruption resumes from the last
checkpoint in --model_dir. --mode=train_and_eval (default) evaluates (kNN + per-stage multi-task
linear probe, with a random-init reference) and exports the backbone when training ends.
The first line names the devices, the strategy, the replicas and the precision; TensorFlow's
own log lines are hidden unless --verbose.

Exit codes: 0 done; 1 bad/missing data or an I/O error (one line, no traceback); 2 bad config
(nothing created); 3 NaN/Inf loss or gradient (names the step and the intact last checkpoint);
4 a checkpoint could not be written, e.g. disk full (partial files removed, previous checkpoint
intact: free space and re-run the same command); 5 preempted: SIGTERM arrived, the current step
was finished and checkpointed (re-run the same command to resume; train.preemption_grace_seconds);
6 a worker of a multi-worker job was lost (restart every worker with the same command).
A damaged checkpoint is named and skipped (the newest intact one is restored); if every
checkpoint is damaged: exit 1 (hac_tf/training/checkpoint_integrity.py).
"""

from __future__ import annotations

import sys
from typing import List

from absl import flags, logging

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-train (same as tools/train.py)."""
    fv = flag_values
    flags.DEFINE_string("config_file", None, "YAML experiment config: a path or a shipped config name "
                        "(see hac_tf/configs/).", flag_values=fv)
    flags.DEFINE_multi_string("params_override", [], "Overrides: 'a.b=v,c.d=w' or a YAML string; repeatable.",
                              flag_values=fv)
    flags.DEFINE_string("model_dir", None, "Directory for checkpoints, logs, metrics and evaluation.",
                        flag_values=fv)
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                      "tf.distribute strategy.", flag_values=fv)
    flags.DEFINE_string("tpu", "", "TPU name or address (with --strategy=tpu).", flag_values=fv)
    flags.DEFINE_integer("num_logical_cpus", 0, "Split the CPU into this many replicas (CPU-only machines).",
                         flag_values=fv)
    flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval"], "What to run.",
                      flag_values=fv)
    define_verbose_flag(fv)
    flags.mark_flag_as_required("model_dir", flag_values=fv)


def main(argv: List[str]) -> int:
    """Runs the experiment of the parsed flags; returns the exit code (see the module docstring)."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.training.config import ConfigError, load_config

    try:
        config = load_config(f.config_file, f.params_override)
    except ConfigError as e:
        print(f"ConfigError: {e}", file=sys.stderr)
        return 2

    from hac_tf.training.builders import describe_source
    from hac_tf.training.devices import describe_run, gpu_unused_warning
    from hac_tf.training.run import run_experiment
    from hac_tf.training.strategy import build_strategy
    from hac_tf.training.threads import configure_cpu_threads_for
    from hac_tf.training.preemption import PREEMPTED_EXIT_CODE, TrainingPreempted
    from hac_tf.training.trainer import CheckpointWriteError, LostWorkerError, NonFiniteLossError

    configure_cpu_threads_for(config)
    try:
        strategy = build_strategy(f.strategy, f.tpu, f.num_logical_cpus)
    except ValueError as e:  # e.g. multi_worker without TF_CONFIG
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(describe_run(strategy, config.train.mixed_precision), flush=True)
    warning = gpu_unused_warning()
    if warning:
        logging.warning("%s", warning)
    try:
        print(describe_source(config), flush=True)
        run_experiment(config, f.model_dir, strategy, f.mode)
    except ConfigError as e:  # found once the config meets the data (e.g. an unlabelled eval split)
        print(f"ConfigError: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 3
    except CheckpointWriteError as e:  # disk full and the like: previous checkpoint intact
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 4
    except TrainingPreempted as e:  # SIGTERM: step finished and checkpointed
        print(str(e), file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except LostWorkerError as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 6
    except (ValueError, OSError) as e:  # bad/missing data and the like: one clear line, no traceback
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Console script ``hac-train``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
