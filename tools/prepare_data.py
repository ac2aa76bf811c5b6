"""Prepare a dataset (TFDS download_and_prepare, or an image-folder dry run): the same as the
console script ``hac-prepare-data`` (hac_tf/cli/prepare_data.py). See ``python tools/prepare_data.py --help``."""

from hac_tf.cli.prepare_data import run

if __name__ == "__main__":
    run()
