"""Pretrain a backbone: the same as the console script ``hac-train`` (hac_tf/cli/train.py),
kept so existing commands work. See ``python tools/train.py --help``."""

from hac_tf.cli.train import run

if __name__ == "__main__":
    run()
