"""Detection and segmentation transfer of an exported backbone: the same as the console script
``hac-finetune-dense`` (hac_tf/cli/finetune_dense.py), kept so existing commands work.
See ``python tools/finetune_dense.py --help``."""

from hac_tf.cli.finetune_dense import run

if __name__ == "__main__":
    run()
