"""Image-folder layouts: which files of a folder belong to which split and which class.

`detect_layout(root, labels)` looks at the top two levels of a folder (never decodes anything) and
returns a `FolderLayout`; `FolderLayout.candidates(split)` lists the files of a split with their
label ids. Decoding and bad-file handling live in `hac_tf/data/image_folder.py`.

Layouts::

    class folders (labels="auto")      split folders (labels="auto")      unlabelled (labels="none")
    root/                              root/                              root/
      cat/ a.jpg, x/b.png, ...           train/ cat/..., dog/...            a.jpg
      dog/ ...                           val/   cat/..., dog/...            trip/2019/b.png, ...
                                         test/  cat/..., dog/...

* **class folders** ``root/<class>/**/<image>``: one class per top-level folder (class names sorted
  -> label ids 0, 1, ...; images at any depth below a class folder). Splits ``train``/``test`` by a
  SHA-1 hash of each file's path relative to ``root`` (`split_of`), ``all`` = every file.
* **split folders** ``root/{train, val | validation, test}/<class>/**/<image>``: the top level holds
  ONLY split-named folders (names compared case-insensitively) and one of them is ``train``. Split
  ``train`` reads ``train/``; split ``test`` reads ``test/``, or ``val/``/``validation/`` when there
  is no ``test/`` folder (the detected-layout line says which); ``val``/``validation`` can also be
  asked for by name; ``all`` reads every split folder. The class list is the sorted UNION of the
  class folder names of all split folders, so label ids agree across splits; a class missing from
  one split folder is a warning, not an error.
* **unlabelled** (``labels="none"``): every file under ``root`` at any depth, with hash splits; or,
  when the top level is split folders, every file at any depth under each split folder. Elements
  carry an EMPTY labels dict ``{}`` (there is no label an evaluation could misuse).

Non-image files (by extension) are never an error: top-level files of a labelled folder (and loose
files in a split folder) are reported as "not inside a class folder", files below a class folder (or
anywhere in an unlabelled folder) as bad files (see image_folder.py). Hidden folders (name starting
with ``.``) are ignored at every level, hidden files at the top level and in split folders too;
hidden files inside class folders are reported like any other non-image file.

Ambiguous layouts are errors (`LayoutError`) whose message shows the two readings and what to
change for each; nothing is guessed:

1. split-named folders next to other folders at the top level (``root/{train, val, cats}``):
   split folders with a stray folder, or class folders of which some are named like splits;
2. a split folder holding image files directly AND sub-folders (labels="auto"): classes with stray
   images, or unlabelled images at any depth;
3. a class folder holding split-named sub-folders (``root/cat/{train, test}``, labels="auto"):
   classes with all images below them (nested split names ignored), or per-class splits (not a
   supported layout: move to ``root/train/<class>``);
4. image files at the top level next to class or split folders (labels="auto", or split folders
   with labels="none"): images outside every class/split, or an unlabelled folder;
5. two folders for the same split (``val/`` and ``validation/`` without ``test/``, or ``Train/``
   and ``train/``).

Other unusable layouts are clear errors naming the folder: no folder at all with labels="auto"
(images directly under root -> suggests labels="none"), split folders without ``train/``, a split
folder with neither class folders nor files, a split folder holding only images with
labels="auto", a split that the layout does not have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping

__all__ = [
    "IMAGE_EXTENSIONS",
    "LABELS_AUTO",
    "LABELS_NONE",
    "SPLIT_FOLDER_NAMES",
    "LayoutError",
    "FolderLayout",
    "detect_layout",
    "split_of",
    "list_files",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
LABELS_AUTO = "auto"
LABELS_NONE = "none"
LABEL_MODES = (LABELS_AUTO, LABELS_NONE)
#: Folder names (lower case) read as splits when they make up the whole top level.
SPLIT_FOLDER_NAMES: tuple[str, ...] = ("train", "val", "validation", "test")
#: Folders that stand for the "test" split, in order of preference.
_TEST_FOLDERS = ("test", "val", "validation")

CLASS_FOLDERS = "class folders"
SPLIT_FOLDERS = "split folders"


class LayoutError(ValueError):
    """The folder's layout is ambiguous or unusable; the message names the folder and the fix."""


def split_of(relative_path: str, test_fraction: float) -> str:
    """``"test"`` or ``"train"`` for a file, from a SHA-1 hash of its ``/``-separated relative path."""
    digest = hashlib.sha1(relative_path.replace(os.sep, "/").encode("utf-8")).digest()
    unit = int.from_bytes(digest[:8], "big") / float(1 << 64)
    return "test" if unit < test_fraction else "train"


def list_files(directory: str) -> list[str]:
    """Every file below ``directory`` (any depth, symlinks followed, hidden folders skipped), sorted walk order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    return found


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _entries(directory: str) -> tuple[list[str], list[str]]:
    """(sorted sub-folder names, sorted file names) of a directory, hidden entries left out."""
    dirs, files = [], []
    for name in sorted(os.listdir(directory)):
        if name.startswith("."):
            continue
        (dirs if os.path.isdir(os.path.join(directory, name)) else files).append(name)
    return dirs, files


def _names(items: list[str] | tuple[str, ...], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


@dataclasses.dataclass(frozen=True)
class FolderLayout:
    """The detected layout of an image folder.

    Attributes:
      root: absolute root directory.
      kind: ``"class folders"`` or ``"split folders"``.
      labelled: False for ``labels="none"`` (elements then carry an empty labels dict).
      class_names: sorted class names, label id = position; ``()`` when unlabelled.
      split_folders: split-folder layout only: ``{lower-case split name: folder name on disk}``.
      stray_files: absolute paths of top-level files that belong to no class or split (non-images).
      warnings: problems that do not stop reading (e.g. a class missing from one split folder).
    """

    root: str
    kind: str
    labelled: bool
    class_names: tuple[str, ...] = ()
    split_folders: Mapping[str, str] = dataclasses.field(default_factory=dict)
    stray_files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def hash_splits(self) -> bool:
        """True when train/test are assigned by hash (no split folders)."""
        return self.kind != SPLIT_FOLDERS

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names this layout accepts."""
        if self.hash_splits:
            return ("all", "train", "test")
        extra = tuple(s for s in ("val", "validation") if s in self.split_folders)
        return ("all", "train", "test", *extra) if self.test_folder else ("all", "train", *extra)

    @property
    def test_folder(self) -> str | None:
        """Split-folder layout: the folder name read for split ``"test"`` (None: there is none)."""
        for name in _TEST_FOLDERS:
            if name in self.split_folders:
                return self.split_folders[name]
        return None

    def folders_of(self, split: str) -> tuple[str, ...]:
        """Split-folder layout: the folder names (on disk) read for ``split``."""
        if split == "all":
            return tuple(self.split_folders[s] for s in SPLIT_FOLDER_NAMES if s in self.split_folders)
        if split == "test":
            return (self.test_folder,) if self.test_folder else ()
        return (self.split_folders[split],) if split in self.split_folders else ()

    @property
    def description(self) -> str:
        """One line naming the layout, its splits and classes."""
        label = f"{len(self.class_names)} classes ({_names(list(self.class_names), 6)})" if self.labelled \
            else "unlabelled (labels='none': empty labels dict)"
        if self.hash_splits:
            where = "root/<class>/**" if self.labelled else "root/** (any depth)"
            return f"image_folder({self.root!r}): {self.kind} {where}, {label}, train/test by file-path hash"
        parts = [f"{self.split_folders['train']}/ -> 'train'"]
        if self.test_folder:
            why = "" if self.test_folder.lower() == "test" else " (no test/ folder)"
            parts.append(f"{self.test_folder}/ -> 'test'{why}")
        else:
            parts.append("no test/, val/ or validation/ folder: no 'test' split")
        other = [f"{self.split_folders[s]}/" for s in SPLIT_FOLDER_NAMES
                 if s in self.split_folders and self.split_folders[s] not in (self.split_folders["train"],
                                                                              self.test_folder)]
        if other:
            parts.append(f"{', '.join(other)} by name only")
        return f"image_folder({self.root!r}): {self.kind} ({'; '.join(parts)}), {label}"

    def check_split(self, split: str) -> None:
        """Raises `LayoutError` (a ValueError) for a split this layout does not have."""
        if split in self.splits:
            return
        if not self.hash_splits and split == "test":
            raise LayoutError(f"image_folder root {self.root!r} has split folders but no test/, val/ or "
                              f"validation/ folder, so there is no 'test' split; add one, or use a folder "
                              f"without split folders (train/test are then assigned by file-path hash)")
        raise LayoutError(f"image_folder split must be None or one of {self.splits} for {self.root!r} "
                          f"({self.kind}), got {split!r}")

    def candidates(self, split: str, test_fraction: float) -> tuple[list[tuple[str, int]], dict[str, str]]:
        """Files of ``split`` with their label ids (-1 when unlabelled), and files to report as unused.

        Returns:
          ``([(absolute path, label id)], {absolute path: reason})``; every file below a class folder
          (or below root / a split folder when unlabelled) is a candidate, whatever its extension
          (the decoder reports non-images); top-level and split-level stray files are the unused ones.

        Raises:
          LayoutError: unknown split; no file at all in the split's folders (naming them).
        """
        self.check_split(split)
        unused = {path: "not inside a class folder" for path in self.stray_files}
        files: list[tuple[str, int]] = []
        if self.hash_splits:
            tops = [os.path.join(self.root, c) for c in self.class_names] if self.labelled else [self.root]
            labels = range(len(tops)) if self.labelled else [-1]
            for top, label in zip(tops, labels):
                files.extend((path, label) for path in list_files(top))
            if not files:
                where = f"every class folder is empty ({_names(list(self.class_names))})" if self.labelled \
                    else "there is no file below it"
                raise LayoutError(f"image_folder root {self.root!r}: {where}")
            if split != "all":
                files = [(p, lab) for p, lab in files if split_of(os.path.relpath(p, self.root), test_fraction) == split]
            return files, unused
        for folder in self.folders_of(split):
            base = os.path.join(self.root, folder)
            before = len(files)
            if self.labelled:
                dirs, loose = _entries(base)
                unused.update({os.path.join(base, f): "not inside a class folder" for f in loose})
                index = {c: i for i, c in enumerate(self.class_names)}
                for c in dirs:
                    files.extend((path, index[c]) for path in list_files(os.path.join(base, c)))
            else:
                files.extend((path, -1) for path in list_files(base))
            if len(files) == before:
                raise LayoutError(f"image_folder split {split!r}: the split folder {base!r} holds no file"
                                  + (" in its class folders" if self.labelled else ""))
        return files, unused


def _ambiguous(root: str, what: str, reading_1: str, reading_2: str) -> LayoutError:
    return LayoutError(f"image_folder root {root!r} is ambiguous: {what}.\n"
                       f"  Reading 1: {reading_1}\n  Reading 2: {reading_2}\n"
                       "Change the folder so that only one reading fits (nothing is guessed).")


def _split_folder_map(root: str, dirs: list[str]) -> dict[str, str]:
    """``{lower-case split name: folder}`` of the split-named top-level folders (rule 5 checked)."""
    found: dict[str, list[str]] = {}
    for d in dirs:
        if d.lower() in SPLIT_FOLDER_NAMES:
            found.setdefault(d.lower(), []).append(d)
    twins = [v for v in found.values() if len(v) > 1]
    if twins:
        raise LayoutError(f"image_folder root {root!r} has several folders for one split: {_names(twins[0])} "
                          "(names are compared case-insensitively); keep one")
    mapping = {k: v[0] for k, v in found.items()}
    if "test" not in mapping and "val" in mapping and "validation" in mapping:
        raise _ambiguous(root, f"it has both {mapping['val']}/ and {mapping['validation']}/ and no test/ folder",
                         f"{mapping['val']}/ is the test split (then rename or remove {mapping['validation']}/)",
                         f"{mapping['validation']}/ is the test split (then rename or remove {mapping['val']}/)")
    return mapping


def detect_layout(root: str | os.PathLike[str], labels: str = LABELS_AUTO) -> FolderLayout:
    """Detects the layout of an image folder (rules in the module docstring).

    Args:
      root: the folder.
      labels: ``"auto"`` (class folders give labels) or ``"none"`` (unlabelled images).

    Raises:
      FileNotFoundError: ``root`` is not a directory.
      LayoutError (a ValueError): ambiguous or unusable layout; bad ``labels``.
    """
    root = os.path.abspath(os.fspath(root))
    if labels not in LABEL_MODES:
        raise LayoutError(f"image_folder labels must be one of {LABEL_MODES}, got {labels!r}")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image_folder root {root!r} is not a directory")
    labelled = labels == LABELS_AUTO
    dirs, files = _entries(root)
    root_images = [f for f in files if _is_image_name(f)]
    splits = _split_folder_map(root, dirs)
    others = [d for d in dirs if d.lower() not in SPLIT_FOLDER_NAMES]

    if splits:
        if others:  # rule 1
            raise _ambiguous(
                root, f"its top level holds split folders ({_names([splits[s] for s in splits])}) and other "
                      f"folders ({_names(others)})",
                f"split folders root/{{{','.join(splits.values())}}}/<class>/... -- then move or remove "
                f"{_names(others)}",
                f"class folders, one class per top-level folder ({_names(dirs)}) with hash splits -- then "
                f"rename the folders named like splits ({', '.join(splits.values())})")
        if root_images:  # rule 4
            raise _ambiguous(
                root, f"{len(root_images)} image file(s) lie at the top level ({_names(root_images, 3)}) next to "
                      f"the split folders {', '.join(splits.values())}",
                "the top-level images belong to no split and are ignored -- then move them away",
                "the whole folder is one unlabelled set -- then move the split folders' images together")
        if "train" not in splits:
            raise LayoutError(
                f"image_folder root {root!r} has split folder(s) {', '.join(splits.values())} but no train/ "
                "folder; add root/train/<class>/..., or rename the split-named folder(s) if they are classes")
        return _split_layout(root, splits, labelled, [os.path.join(root, f) for f in files])

    if labelled:
        if not dirs:
            hint = (f" but {len(root_images)} image file(s) directly under it: for unlabelled images set "
                    "labels='none' (config: data.labels: none), or move them into root/<class>/") if root_images \
                else " (expected root/<class>/<image files>)"
            raise LayoutError(f"image_folder root {root!r} contains no class folders{hint}")
        if root_images:  # rule 4
            raise _ambiguous(
                root, f"{len(root_images)} image file(s) lie at the top level ({_names(root_images, 3)}) next to "
                      f"the class folders ({_names(dirs)})",
                "class folders, the top-level images are in no class -- then move them into a class folder "
                "or away",
                "an unlabelled folder, images at any depth -- then set labels='none' (config: data.labels: none)")
        for d in dirs:  # rule 3
            nested = [s for s in _entries(os.path.join(root, d))[0] if s.lower() in SPLIT_FOLDER_NAMES]
            if nested:
                raise _ambiguous(
                    root, f"the class folder {d}/ holds split-named folder(s) {', '.join(nested)}",
                    f"class folders ({_names(dirs)}) with every image below them, the inner "
                    f"{', '.join(nested)} folders ignored as splits -- then rename those inner folders",
                    "per-class splits root/<class>/{train,test}/ -- not a supported layout: move the files to "
                    "root/train/<class>/ and root/test/<class>/")
        return FolderLayout(root, CLASS_FOLDERS, True, tuple(dirs),
                            stray_files=tuple(os.path.join(root, f) for f in files))
    return FolderLayout(root, CLASS_FOLDERS, False)


def _split_layout(root: str, splits: dict[str, str], labelled: bool, stray: list[str]) -> FolderLayout:
    classes_per_split: dict[str, list[str]] = {}
    for name in splits.values():
        base = os.path.join(root, name)
        dirs, files = _entries(base)
        images = [f for f in files if _is_image_name(f)]
        if not dirs and not files:
            raise LayoutError(f"image_folder split folder {base!r} is empty")
        if not labelled:
            continue
        if not dirs:
            raise LayoutError(f"image_folder split folder {base!r} holds {len(files)} file(s) but no class "
                              "folders (expected <split>/<class>/<image files>); for unlabelled images set "
                              "labels='none' (config: data.labels: none)")
        if images:  # rule 2
            raise _ambiguous(
                root, f"the split folder {name}/ holds {len(images)} image file(s) directly "
                      f"({_names(images, 3)}) and sub-folders ({_names(dirs)})",
                f"the sub-folders of {name}/ are classes and its loose images are in no class -- then move "
                "them into a class folder or away",
                f"{name}/ is a set of unlabelled images at any depth -- then set labels='none' "
                "(config: data.labels: none)")
        classes_per_split[name] = dirs
    class_names: tuple[str, ...] = ()
    warnings: list[str] = []
    if labelled:
        class_names = tuple(sorted(set().union(*classes_per_split.values())))
        for name, present in classes_per_split.items():
            missing = [c for c in class_names if c not in present]
            if missing:
                warnings.append(f"image_folder({root!r}): the split folder {name}/ has no folder for class(es) "
                                f"{_names(missing)} (their label ids stay reserved)")
    return FolderLayout(root, SPLIT_FOLDERS, labelled, class_names, dict(splits), tuple(stray), tuple(warnings))
