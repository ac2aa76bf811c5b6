"""A dry run over an image folder: its detected layout, classes, images per split and class, bad files.

`summarize_image_folder` scans every split of the layout with the same validation the data
pipeline uses (each file is decoded once, at most ``max_side`` px, so big photos stay cheap) and
`format_folder_summary` renders the report that ``tools/prepare_data.py --dataset=image_folder``
prints. Nothing is written.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from hac_tf.data.folder_layout import LABELS_AUTO, FolderLayout, detect_layout
from hac_tf.data.image_folder import scan_image_folder

__all__ = ["SplitSummary", "FolderSummary", "summarize_image_folder", "format_folder_summary"]

#: Decode size of the dry run: large enough for every decoder path, small enough to be quick.
SCAN_MAX_SIDE = 64


@dataclasses.dataclass(frozen=True)
class SplitSummary:
    """One split: its name, the folder(s) it reads, usable images per class (label-id order)."""

    split: str
    folders: tuple[str, ...]
    num_images: int
    per_class: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class FolderSummary:
    """The dry-run result: layout, splits and every file that would be skipped (``{path: reason}``)."""

    layout: FolderLayout
    splits: tuple[SplitSummary, ...]
    skipped: dict[str, str]


def _report_splits(layout: FolderLayout) -> list[str]:
    """The splits to report: train/test, plus split folders reachable only by name (each folder once)."""
    if layout.hash_splits:
        return ["train", "test"]
    seen: set[str] = set()
    names = []
    for split in layout.splits:
        folders = layout.folders_of(split)
        if split != "all" and folders and not set(folders) & seen:
            seen.update(folders)
            names.append(split)
    return names


def summarize_image_folder(root: str | os.PathLike[str], labels: str = LABELS_AUTO, test_fraction: float = 0.2,
                           *, max_side: int = SCAN_MAX_SIDE, num_workers: int | None = None) -> FolderSummary:
    """Scans every split of an image folder (see the module docstring).

    Raises:
      What `hac_tf.data.image_folder.scan_image_folder` raises (layout errors, no decodable image...).
    """
    layout = detect_layout(root, labels)
    splits, skipped = [], {}
    for split in _report_splits(layout):
        scan = scan_image_folder(layout.root, split, labels=labels, test_fraction=test_fraction, max_side=max_side,
                                 num_workers=num_workers, report=False)
        skipped.update(scan.skip_reasons)
        counts = np.bincount(scan.labels, minlength=len(layout.class_names)) if layout.labelled else ()
        folders = () if layout.hash_splits else layout.folders_of(split)
        splits.append(SplitSummary(split, folders, len(scan.files), tuple(int(c) for c in counts)))
    return FolderSummary(layout, tuple(splits), dict(sorted(skipped.items())))


def format_folder_summary(summary: FolderSummary, test_fraction: float = 0.2) -> str:
    """The printable report (one line per split, the classes, each skipped file with its reason)."""
    layout = summary.layout
    lines = [f"image folder {layout.root}", f"  layout: {layout.description}"]
    if layout.labelled:
        lines.append(f"  classes ({len(layout.class_names)}): {', '.join(layout.class_names)}")
    for s in summary.splits:
        where = (f"{', '.join(f + '/' for f in s.folders)}" if s.folders
                 else f"hash split, test_fraction={test_fraction}")
        line = f"  split {s.split!r} ({where}): {s.num_images} images"
        if layout.labelled:
            line += " -- " + ", ".join(f"{c} {n}" for c, n in zip(layout.class_names, s.per_class))
        lines.append(line)
    lines += [f"  warning: {w}" for w in layout.warnings]
    if summary.skipped:
        lines.append(f"  skipped {len(summary.skipped)} file(s) (not used by training or evaluation):")
        lines += [f"    {path}: {reason}" for path, reason in summary.skipped.items()]
    else:
        lines.append("  skipped files: none")
    return "\n".join(lines)
