"""Export a training run's backbone: the same as the console script ``hac-export``
(hac_tf/cli/export.py), kept so existing commands work. See ``python tools/export.py --help``.
The library functions live in hac_tf/export/from_run.py (re-exported here for scripts that
import this file)."""

from hac_tf.cli.export import run
from hac_tf.export.from_run import RunExportError as ExportToolError  # noqa: F401
from hac_tf.export.from_run import export_run, restore_model  # noqa: F401

if __name__ == "__main__":
    run()
