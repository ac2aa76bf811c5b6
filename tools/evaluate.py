"""Evaluate a pretraining run: the same as the console script ``hac-evaluate``
(hac_tf/cli/evaluate.py), kept so existing commands work. See ``python tools/evaluate.py --help``."""

from hac_tf.cli.evaluate import run

if __name__ == "__main__":
    run()
