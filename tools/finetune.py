"""Linear probe or fine-tune an exported backbone: the same as the console script
``hac-finetune`` (hac_tf/cli/finetune.py), kept so existing commands work.
See ``python tools/finetune.py --help``."""

from hac_tf.cli.finetune import run

if __name__ == "__main__":
    run()
