"""Export the backbone of a training run as a TF Serving SavedModel version.

  hac-export --model_dir=runs/hier                      # -> saved_models/hier/<next>
  hac-export --model_dir=runs/hier --export_dir=saved_models/hier_v2 --version=3
  hac-export --model_dir=runs/hier --serving_root=/models   # paths as seen in Docker

Reads <model_dir>/config.yaml, builds a fresh model from it, restores the latest checkpoint of
<model_dir>/checkpoints (or --checkpoint) and exports its backbone (hac_tf/training/run_export.py):
signatures serving_default / feature_maps, warmup requests, hac_tf_metadata.json, published
atomically, and <dirname(export_dir)>/models.config rewritten. Serve with
tensorflow_model_server --model_config_file=saved_models/models.config.
Exit codes: 0 exported; 1 missing config/checkpoint, nothing restored, version exists; 2 bad config.
"""

from __future__ import annotations

import sys
from typing import List

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-export (same as tools/export.py)."""
    fv = flag_values
    flags.DEFINE_string("model_dir", None, "Training run directory (with checkpoints/ and config.yaml).",
                        flag_values=fv)
    flags.DEFINE_string("export_dir", None, "Model base path; default saved_models/<basename of model_dir>.",
                        flag_values=fv)
    flags.DEFINE_integer("version", None, "Version number; default: one more than the largest existing.",
                         flag_values=fv)
    flags.DEFINE_integer("image_size", 0, "Side the serving signatures resize to; 0 = data.image_size of the config.",
                         flag_values=fv)
    flags.DEFINE_string("checkpoint", None, "Checkpoint prefix to restore; default: latest in <model_dir>/checkpoints.",
                        flag_values=fv)
    flags.DEFINE_string("config_file", None, "Config YAML; default <model_dir>/config.yaml.", flag_values=fv)
    flags.DEFINE_multi_string("params_override", [], "Config overrides ('a.b=v'), applied after the YAML.",
                              flag_values=fv)
    flags.DEFINE_string("metrics_file", None,
                        "Evaluation JSON stored in the metadata; default <model_dir>/eval/results.json.",
                        flag_values=fv)
    flags.DEFINE_string("serving_root", None, "Directory of the model base paths as the server sees it "
                        "(models.config); default: export.serving_root of the config (/models).", flag_values=fv)
    flags.DEFINE_integer("max_batch", 1024, "Largest batch the serving signatures accept.", flag_values=fv)
    flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests.", flag_values=fv)
    flags.DEFINE_bool("allow_uninitialized", False, "Export even if the checkpoint restored no backbone weight.",
                      flag_values=fv)
    define_verbose_flag(fv)
    flags.mark_flag_as_required("model_dir", flag_values=fv)


def main(argv: List[str]) -> int:
    """Exports the run of the parsed flags; returns the exit code."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.training.run_export import RunExportError, export_run
    from hac_tf.training.config import ConfigError

    try:
        path = export_run(f.model_dir, f.export_dir, f.version, f.image_size, f.checkpoint,
                          f.config_file, f.params_override, f.metrics_file, f.serving_root,
                          f.max_batch, f.warmup, f.allow_uninitialized)
    except ConfigError as e:
        print(f"ConfigError: {e}", file=sys.stderr)
        return 2
    except RunExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"exported {f.model_dir} to {path}")
    return 0


def run() -> None:
    """Console script ``hac-export``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
