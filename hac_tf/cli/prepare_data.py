"""Prepare a dataset before training: download and prepare a TFDS dataset, or dry-run an image folder.

  hac-prepare-data --dataset=tfds:cifar10 --data_dir=~/tensorflow_datasets
  hac-prepare-data --dataset=tfds:imagenet2012 --data_dir=/data/tfds --manual_dir=/data/imagenet_tars
  hac-prepare-data --dataset=image_folder --data_dir=/photos [--labels=none] [--test_fraction=0.2]

(``python tools/prepare_data.py ...`` is the same command.)

tfds:<name>: runs TFDS's download_and_prepare into --data_dir (TFDS's default when unset), so later
runs with ``data.download: false`` find it prepared. Datasets that need a manual download
(imagenet2012) read their files from --manual_dir (default <data_dir>/downloads/manual); the
error names that folder and quotes TFDS's instructions. Already prepared: nothing is done.

image_folder: nothing is written; prints the detected layout (class folders, split folders or
unlabelled images), the classes, the images per split and class, and every file that training
would skip, with its reason. Layout errors (ambiguous folders) are printed the same way training
would raise them.

Exit codes: 0 done; 1 the dataset could not be prepared or scanned (one message, no traceback);
2 bad flags.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested

TFDS_PREFIX = "tfds:"
IMAGE_FOLDER = "image_folder"


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-prepare-data (same as tools/prepare_data.py)."""
    fv = flag_values
    flags.DEFINE_string("dataset", None, "'tfds:<builder name>' (optionally name/config:version) or 'image_folder'.",
                        flag_values=fv)
    flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: TFDS's), or the image folder's root.",
                        flag_values=fv)
    flags.DEFINE_string("manual_dir", None, "TFDS: folder with manually downloaded files "
                        "(default <data_dir>/downloads/manual).", flag_values=fv)
    flags.DEFINE_enum("labels", "auto", ["auto", "none"], "image_folder: 'auto' = class folders give labels, "
                      "'none' = unlabelled images (config data.labels).", flag_values=fv)
    flags.DEFINE_float("test_fraction", 0.2, "image_folder: share of the hash 'test' split (folders without "
                       "split folders).", flag_values=fv)
    define_verbose_flag(fv)
    flags.mark_flag_as_required("dataset", flag_values=fv)


def prepare_tfds(name: str, data_dir: Optional[str], manual_dir: Optional[str]) -> str:
    """Prepares ``name`` in ``data_dir`` (no-op when prepared); returns the report line.

    Raises:
      DatasetNotPreparedError: manual files missing. ValueError: unknown dataset.
    """
    from hac_tf.data._tfds_compat import import_tfds
    from hac_tf.data.tfds_prepare import prepare_tfds_dataset

    tfds = import_tfds()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"unknown TFDS dataset {name!r}: {e}") from e
    state = "already prepared"
    if not builder.is_prepared():
        prepare_tfds_dataset(builder, name, data_dir, manual_dir)
        state = "prepared"
    splits = ", ".join(f"{split} {info.num_examples}" for split, info in sorted(builder.info.splits.items()))
    return f"TFDS dataset {name} {state} in {os.fspath(builder.data_dir)}: {splits} examples"


def prepare(dataset: str, data_dir: Optional[str] = None, manual_dir: Optional[str] = None, labels: str = "auto",
            test_fraction: float = 0.2) -> int:
    """Does what the flags ask (see the module docstring), printing the report; returns the exit code."""
    if dataset.startswith(TFDS_PREFIX) and dataset[len(TFDS_PREFIX):]:
        try:
            print(prepare_tfds(dataset[len(TFDS_PREFIX):], data_dir, manual_dir))
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    if dataset != IMAGE_FOLDER:
        print(f"error: --dataset must be 'tfds:<builder name>' or '{IMAGE_FOLDER}', got {dataset!r}", file=sys.stderr)
        return 2
    if not data_dir:
        print("error: --dataset=image_folder needs --data_dir=<the folder's root>", file=sys.stderr)
        return 2
    from hac_tf.data.folder_report import format_folder_summary, summarize_image_folder

    try:
        summary = summarize_image_folder(data_dir, labels, test_fraction)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_folder_summary(summary, test_fraction))
    return 0


def main(argv: List[str]) -> int:
    """Runs `prepare` with the parsed flags; returns the exit code."""
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    return prepare(f.dataset, f.data_dir, f.manual_dir, f.labels, f.test_fraction)


def run() -> None:
    """Console script ``hac-prepare-data``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
