"""The data config reaches the sources: data.labels / max_source_side for image folders, data.download
for TFDS, and the cross-checks on data.labels, data.download and data.eval_data_dir."""

import os

import numpy as np
import pytest
from PIL import Image

from hac_tf.data.image_folder import scan_image_folder
from hac_tf.training import builders
from hac_tf.training.config import ConfigError, load_config


def _folder(root, sizes):
    for i, (w, h) in enumerate(sizes):
        path = root / ("nested" if i % 2 else "") / f"p{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((h, w, 3), 20 * i, np.uint8)).save(path)
    return root


def test_source_kwargs(tmp_path):
    c = load_config(None, ["data.source=image_folder", f"data.data_dir={tmp_path}", "data.labels=none",
                           "data.image_size=48"])
    assert builders.source_kwargs(c) == {"root": str(tmp_path), "labels": "none", "max_side": 96}
    c = load_config(None, ["data.source=image_folder", f"data.data_dir={tmp_path}", "data.max_source_side=200"])
    assert builders.source_kwargs(c) == {"root": str(tmp_path), "labels": "auto", "max_side": 200}
    c = load_config(None, ["data.source=tfds:cifar10", f"data.data_dir={tmp_path}", "data.download=true"])
    assert builders.source_kwargs(c) == {"data_dir": str(tmp_path), "download": True}
    assert builders.source_kwargs(load_config(None, ["data.source=tfds:cifar10"])) == {"download": False}
    assert "download" not in builders.source_kwargs(load_config(None, []))  # coloured Fashion-MNIST unchanged


@pytest.mark.parametrize("overrides, message", [
    (["data.labels=none"], "data.labels='none' (unlabelled images) needs data.source='image_folder', "
                           "not 'coloured_fashion_mnist'"),
    (["data.download=true", "data.source=fashion_mnist"], "data.download=true applies to tfds:<builder name> "
                                                          "sources only, not data.source='fashion_mnist'"),
    (["data.eval_data_dir=/surely/not/here"], "data.eval_data_dir='/surely/not/here' is not a directory"),
])
def test_cross_checks(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unlabelled_folder_trains_and_eval_data_dir_evaluates(tmp_path):
    photos = _folder(tmp_path / "photos", [(24, 24)] * 8)
    labelled = tmp_path / "labelled"
    for cls in ("a", "b"):
        _folder(labelled / cls, [(30, 20), (20, 30), (24, 24), (40, 10)])
    c = load_config(None, ["data.source=image_folder", f"data.data_dir={photos}", "data.labels=none",
                           "data.image_size=16", "data.batch_size=4", "data.shuffle_buffer=8",
                           f"data.eval_data_dir={labelled}", "data.label_keys=[label]", "data.knn_label=label",
                           "augment.num_levels=2", "model.level_depths=[1,2]"])
    views, n = builders.train_views(c, builders.view_policy(c))
    batch = next(iter(views))
    expected = scan_image_folder(photos, "train", labels="none").files  # the hash split's train files
    assert n == len(expected) >= 4 and batch["level_1"]["view_a"].shape == (4, 16, 16, 3)
    ds, info = builders.eval_source(c, "train")
    assert info.label_names == {"label": ("a", "b")}
    assert all(labels["label"] in (0, 1) for _, labels in ds.as_numpy_iterator())
