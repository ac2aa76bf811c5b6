"""Preparing TFDS datasets: ``download_and_prepare`` on request, and the errors that say how.

A TFDS dataset must be *prepared* (downloaded and written as TFRecords under ``data_dir``) before
`hac_tf.data.tfds_source` can read it. Nothing is downloaded unless asked for (``download=True``,
config ``data.download: true``, or ``tools/prepare_data.py``). When a dataset is not prepared and
downloading is off, `DatasetNotPreparedError` names the exact commands to run::

    python tools/prepare_data.py --dataset=tfds:<name> [--data_dir=<data_dir>]
    tfds build <name> [--data_dir=<data_dir>]

Datasets that TFDS cannot download (``MANUAL_DOWNLOAD_INSTRUCTIONS`` set, e.g. ``imagenet2012``)
get a message that says so, quotes TFDS's instructions and names the folder to put the files in:
``--manual_dir`` when given, else TFDS's default ``<data_dir>/downloads/manual``.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from absl import logging

from hac_tf.data._tfds_compat import import_tfds

__all__ = [
    "DatasetNotPreparedError",
    "needs_manual_download",
    "manual_dir_of",
    "prepare_commands",
    "not_prepared_message",
    "prepare_tfds_dataset",
]


class DatasetNotPreparedError(FileNotFoundError):
    """A TFDS dataset is not prepared (and downloading is off, or its manual files are missing)."""


def needs_manual_download(builder: Any) -> bool:
    """True for datasets whose files the user must download by hand (TFDS ``MANUAL_DOWNLOAD_INSTRUCTIONS``)."""
    return bool((getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) or "").strip())


def manual_dir_of(builder: Any, manual_dir: str | os.PathLike[str] | None = None) -> str:
    """The folder TFDS reads manually downloaded files from: ``manual_dir`` or ``<data_dir>/downloads/manual``."""
    if manual_dir is not None:
        return os.fspath(manual_dir)
    return os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")


def _has_files(directory: str) -> bool:
    return os.path.isdir(directory) and any(not e.startswith(".") for e in os.listdir(directory))


def prepare_commands(name: str, data_dir: str | os.PathLike[str] | None = None,
                     manual_dir: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """``(our command, TFDS's command)`` that prepare ``name`` in ``data_dir`` (None: the TFDS default)."""
    extra = ""
    if data_dir is not None:
        extra += f" --data_dir={shlex.quote(os.fspath(data_dir))}"
    if manual_dir is not None:
        extra += f" --manual_dir={shlex.quote(os.fspath(manual_dir))}"
    return (f"python tools/prepare_data.py --dataset=tfds:{shlex.quote(name)}{extra}",
            f"tfds build {shlex.quote(name)}{extra}")


def not_prepared_message(builder: Any, name: str, data_dir: str | os.PathLike[str] | None,
                         manual_dir: str | os.PathLike[str] | None = None, *, download: bool = False) -> str:
    """The error text for a dataset that is not prepared (see the module docstring)."""
    where = os.fspath(builder.data_dir)
    if needs_manual_download(builder):
        folder = manual_dir_of(builder, manual_dir)
        state = "is missing or empty" if not _has_files(folder) else "holds files"
        ours, theirs = prepare_commands(name, data_dir, manual_dir)
        instructions = "\n".join("    " + line.strip() for line in
                                 builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip().splitlines())
        return (f"TFDS dataset {name!r} is not prepared in {where!r} and needs a MANUAL download: TFDS cannot "
                f"fetch its files. TFDS's instructions:\n{instructions}\n"
                f"Put those files in {folder!r} (that folder {state}), then prepare the dataset once with\n"
                f"  {ours}\nor TFDS's own command\n  {theirs}\n"
                "(with the files in place, data.download=true / download=True also prepares it).")
    ours, theirs = prepare_commands(name, data_dir)
    off = "" if download else " and downloading is off (data.download=false)"
    return (f"TFDS dataset {name!r} is not prepared in {where!r}{off}. Prepare it once, with network access:\n"
            f"  {ours}\nor with TFDS's own command\n  {theirs}\n"
            "or set data.download=true (download=True in Python) to download and prepare it when the run "
            "starts, or point data.data_dir at a prepared copy.")


def prepare_tfds_dataset(builder: Any, name: str, data_dir: str | os.PathLike[str] | None = None,
                         manual_dir: str | os.PathLike[str] | None = None) -> Any:
    """Runs ``builder.download_and_prepare`` (downloads unless the dataset needs manual files).

    Args:
      builder: a TFDS builder (``tfds.builder(name, data_dir=data_dir)``).
      name, data_dir: as the user gave them (used in messages only).
      manual_dir: folder with the manually downloaded files (None: TFDS's default, see
        `manual_dir_of`).

    Returns:
      ``builder``, now prepared.

    Raises:
      DatasetNotPreparedError: the dataset needs manual files and their folder is missing or empty.
    """
    if needs_manual_download(builder) and not _has_files(manual_dir_of(builder, manual_dir)):
        raise DatasetNotPreparedError(not_prepared_message(builder, name, data_dir, manual_dir, download=True))
    tfds = import_tfds()
    config = tfds.download.DownloadConfig(manual_dir=None if manual_dir is None else os.fspath(manual_dir))
    logging.info("Preparing TFDS dataset %r in %s (may download)", name, builder.data_dir)
    builder.download_and_prepare(download_config=config)
    return builder
