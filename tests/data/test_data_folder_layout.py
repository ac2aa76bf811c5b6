"""Folder layouts: detection, the files of each split, every ambiguity rule and unusable layout."""

from __future__ import annotations

import logging
import os

import pytest
from hacdata_helpers import write_photo

from hac_tf.data import image_folder
from hac_tf.data.folder_layout import LayoutError, detect_layout


def make(root, *rels: str) -> None:
    """Creates small real images (by extension) or text files at the given relative paths."""
    for i, rel in enumerate(rels):
        path = os.path.join(root, *rel.split("/"))
        if rel.endswith("/"):
            os.makedirs(path, exist_ok=True)
        elif rel.lower().endswith((".jpg", ".png")):
            write_photo(path, 40 + 7 * i, 40 + 3 * (i % 5), seed=i)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("notes\n")


def rel_files(layout, split, fraction=0.5):
    files, _ = layout.candidates(split, fraction)
    return sorted((os.path.relpath(p, layout.root).replace(os.sep, "/"), label) for p, label in files)


def test_class_folders_with_hash_splits(tmp_path):
    make(tmp_path, "cat/a.jpg", "cat/deep/er/b.png", "dog/c.jpg", "dog/d.png", "README.txt")
    layout = detect_layout(tmp_path)
    assert layout.kind == "class folders" and layout.labelled and layout.hash_splits
    assert layout.class_names == ("cat", "dog") and layout.splits == ("all", "train", "test")
    assert rel_files(layout, "all") == [("cat/a.jpg", 0), ("cat/deep/er/b.png", 0), ("dog/c.jpg", 1),
                                        ("dog/d.png", 1)]
    train, test = rel_files(layout, "train"), rel_files(layout, "test")
    assert sorted(train + test) == rel_files(layout, "all") and not set(train) & set(test)
    _, unused = layout.candidates("all", 0.5)
    assert unused == {str(tmp_path / "README.txt"): "not inside a class folder"}
    assert "class folders root/<class>/**, 2 classes (cat, dog)" in layout.description


@pytest.mark.parametrize("test_name", ["val", "validation", "Val", "test"])
def test_split_folders(tmp_path, test_name):
    make(tmp_path, "train/cat/a.jpg", "train/dog/b.jpg", f"{test_name}/cat/c.png", f"{test_name}/dog/d.png")
    layout = detect_layout(tmp_path)
    assert layout.kind == "split folders" and not layout.hash_splits
    assert layout.class_names == ("cat", "dog") and layout.test_folder == test_name
    assert rel_files(layout, "train") == [("train/cat/a.jpg", 0), ("train/dog/b.jpg", 1)]
    assert rel_files(layout, "test") == [(f"{test_name}/cat/c.png", 0), (f"{test_name}/dog/d.png", 1)]
    assert len(rel_files(layout, "all")) == 4
    expected = f"{test_name}/ -> 'test'" + ("" if test_name == "test" else " (no test/ folder)")
    assert expected in layout.description and "train/ -> 'train'" in layout.description


def test_split_folders_test_preferred_and_val_by_name(tmp_path):
    make(tmp_path, "train/a/x.jpg", "val/a/y.jpg", "test/a/z.jpg")
    layout = detect_layout(tmp_path)
    assert layout.splits == ("all", "train", "test", "val")
    assert rel_files(layout, "test") == [("test/a/z.jpg", 0)]
    assert rel_files(layout, "val") == [("val/a/y.jpg", 0)]
    assert "val/ by name only" in layout.description


def test_split_folders_take_the_union_of_classes(tmp_path):
    make(tmp_path, "train/cat/a.jpg", "train/dog/b.jpg", "val/cat/c.jpg", "val/emu/d.jpg", "train/notes.txt")
    layout = detect_layout(tmp_path)
    assert layout.class_names == ("cat", "dog", "emu")
    assert rel_files(layout, "test") == [("val/cat/c.jpg", 0), ("val/emu/d.jpg", 2)]
    assert rel_files(layout, "train") == [("train/cat/a.jpg", 0), ("train/dog/b.jpg", 1)]
    assert len(layout.warnings) == 2
    assert any("train/ has no folder for class(es) emu" in w for w in layout.warnings)
    assert any("val/ has no folder for class(es) dog" in w for w in layout.warnings)
    _, unused = layout.candidates("train", 0.5)
    assert unused == {str(tmp_path / "train" / "notes.txt"): "not inside a class folder"}


def test_split_folders_through_image_folder(tmp_path, caplog):
    make(tmp_path, "train/cat/a.jpg", "train/dog/b.jpg", "train/dog/c.png", "val/cat/c.png", "val/emu/d.jpg")
    caplog.set_level(logging.INFO, logger="absl")
    ds, info = image_folder(tmp_path, "test", max_side=64, with_info=True)
    assert info.split == "test" and info.num_examples == 2
    assert info.label_names == {"label": ("cat", "dog", "emu")} and info.num_classes == {"label": 3}
    assert [int(labels["label"]) for _, labels in ds.as_numpy_iterator()] == [0, 2]
    _, train_info = image_folder(tmp_path, "train", max_side=64, with_info=True)
    assert train_info.num_examples == 3 and train_info.label_names == info.label_names
    messages = [r.getMessage() for r in caplog.records if r.name == "absl"]
    layout_lines = [m for m in messages if "split folders (train/ -> 'train'; val/ -> 'test' (no test/ folder)" in m]
    assert len(layout_lines) == 1, messages  # once per process, although two splits were read
    assert sum("has no folder for class(es) emu" in m for m in messages) == 1


def test_unlabelled_flat_nested_and_split_folders(tmp_path):
    flat = tmp_path / "flat"
    make(flat, "a.jpg", "b.png", "trip/2019/c.jpg", "trip/d.png")
    layout = detect_layout(flat, "none")
    assert not layout.labelled and layout.class_names == () and layout.hash_splits
    assert rel_files(layout, "all") == [("a.jpg", -1), ("b.png", -1), ("trip/2019/c.jpg", -1), ("trip/d.png", -1)]
    assert "unlabelled" in layout.description
    ds, info = image_folder(flat, labels="none", with_info=True)
    assert ds.element_spec[1] == {} and info.label_keys == () and info.num_examples == 4
    split = tmp_path / "split"
    make(split, "train/x/a.jpg", "train/b.jpg", "test/c.png")
    layout = detect_layout(split, "none")
    assert layout.kind == "split folders" and not layout.labelled
    assert rel_files(layout, "train") == [("train/b.jpg", -1), ("train/x/a.jpg", -1)]
    assert rel_files(layout, "test") == [("test/c.png", -1)]


def _assert_two_readings(err, *names):
    message = str(err.value)
    assert "is ambiguous" in message and "Reading 1:" in message and "Reading 2:" in message, message
    for name in names:
        assert name in message, (name, message)


def test_ambiguous_split_folders_next_to_other_folders(tmp_path):
    make(tmp_path, "train/cat/a.jpg", "val/cat/b.jpg", "cats/c.jpg")
    for labels in ("auto", "none"):
        with pytest.raises(LayoutError) as err:
            detect_layout(tmp_path, labels)
        _assert_two_readings(err, "split folders", "class folders", "cats")


def test_ambiguous_split_folder_with_images_and_sub_folders(tmp_path):
    make(tmp_path, "train/cat/a.jpg", "train/loose.jpg", "val/cat/b.jpg")
    with pytest.raises(LayoutError) as err:
        detect_layout(tmp_path)
    _assert_two_readings(err, "train/", "loose.jpg", "labels='none'")
    assert rel_files(detect_layout(tmp_path, "none"), "train") == [("train/cat/a.jpg", -1), ("train/loose.jpg", -1)]


def test_ambiguous_class_folders_holding_split_folders(tmp_path):
    make(tmp_path, "cat/train/a.jpg", "cat/test/b.jpg", "dog/train/c.jpg")
    with pytest.raises(LayoutError) as err:
        detect_layout(tmp_path)
    _assert_two_readings(err, "cat/", "root/train/<class>/")


@pytest.mark.parametrize("tops", [("cat/a.jpg", "dog/b.jpg"), ("train/cat/a.jpg", "val/cat/b.jpg")])
def test_ambiguous_images_at_the_top_level(tmp_path, tops):
    make(tmp_path, "stray.png", *tops)
    with pytest.raises(LayoutError) as err:
        detect_layout(tmp_path)
    _assert_two_readings(err, "stray.png")
    if tops[0].startswith("train/"):
        with pytest.raises(LayoutError, match="Reading 2"):
            detect_layout(tmp_path, "none")
    else:  # unlabelled: every image at any depth, nothing ambiguous
        assert len(rel_files(detect_layout(tmp_path, "none"), "all")) == 3


def test_ambiguous_val_and_validation(tmp_path):
    make(tmp_path, "train/a/x.jpg", "val/a/y.jpg", "validation/a/z.jpg")
    with pytest.raises(LayoutError) as err:
        detect_layout(tmp_path)
    _assert_two_readings(err, "val/", "validation/")
    make(tmp_path, "test/a/w.jpg")  # with a test/ folder the choice is clear
    assert detect_layout(tmp_path).test_folder == "test"


def test_two_folders_for_one_split(tmp_path):
    make(tmp_path, "train/a/x.jpg", "Train/a/y.jpg")
    if len(os.listdir(tmp_path)) < 2:
        pytest.skip("case-insensitive file system")
    with pytest.raises(LayoutError, match="several folders for one split: Train, train"):
        detect_layout(tmp_path)


@pytest.mark.parametrize(
    "files, labels, message",
    [
        (("a.jpg", "b.png"), "auto", "no class folders but 2 image file(s) directly under it: for unlabelled "
                                     "images set labels='none'"),
        ((), "auto", "contains no class folders (expected root/<class>/<image files>)"),
        (("val/cat/a.jpg", "test/cat/b.jpg"), "auto", "has split folder(s) test, val but no train/ folder"),
        (("train/cat/a.jpg", "val/"), "auto", "split folder '{root}/val' is empty"),
        (("train/cat/a.jpg", "val/a.jpg"), "auto", "split folder '{root}/val' holds 1 file(s) but no class folders"),
        (("train/cat/a.jpg",), "sometimes", "labels must be one of ('auto', 'none')"),
    ],
)
def test_unusable_layouts(tmp_path, files, labels, message):
    make(tmp_path, *files)
    with pytest.raises(LayoutError) as err:
        detect_layout(tmp_path, labels)
    assert message.format(root=tmp_path) in str(err.value)


def test_split_errors_name_the_folder(tmp_path):
    make(tmp_path, "train/cat/a.jpg", "val/cat/", "val/dog/")
    layout = detect_layout(tmp_path)
    with pytest.raises(LayoutError, match=f"split folder '{tmp_path}/val' holds no file in its class folders"):
        layout.candidates("test", 0.2)
    only_train = tmp_path / "only_train"
    make(only_train, "train/cat/a.jpg")
    with pytest.raises(ValueError, match="no test/, val/ or validation/ folder, so there is no 'test' split"):
        image_folder(only_train, "test")
    with pytest.raises(ValueError, match="split must be None or one of"):
        image_folder(only_train, "validation")
    empty_unlabelled = tmp_path / "nothing"
    make(empty_unlabelled, "sub/")
    with pytest.raises(LayoutError, match="there is no file below it"):
        image_folder(empty_unlabelled, labels="none")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        detect_layout(tmp_path / "missing")
