"""Export a training run's backbone: the same as the console script ``hac-export``
(hac_tf/cli/export.py; the library side: hac_tf/training/run_export.py), kept so existing commands
work. See ``python tools/export.py --help``."""

from hac_tf.cli.export import run

if __name__ == "__main__":
    run()
