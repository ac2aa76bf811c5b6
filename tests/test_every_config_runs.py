"""Every shipped config runs train -> evaluate -> export, at tiny size, on data standing in for its dataset.

The configs are used as shipped; the overrides below only shrink sizes (batch, image side, widths,
head and queue sizes, example counts, number of steps) and point ``data.data_dir`` at a fixture:

- coloured Fashion-MNIST / the overlay set: the committed Fashion-MNIST IDX fixture;
- ``image_folder``: a photo folder in the ``train/`` + ``val/`` layout with JPEGs from 40 to 600 px
  of mixed aspect ratios and a few broken files (``tests/fixtures/photo_folder.py``);
- ``tfds:imagenet2012``, ``tfds:stl10``, ``tfds:cifar10``: local TFDS datasets written under the
  registered builder's name and feature spec (``tests/fixtures/tfds_standins.py``): JPEGs from 40
  to 600 px of mixed aspect ratios for imagenet2012, a labelled and an unlabelled (label -1) split
  for STL-10.

The list of configs is read from disk, so a new config is tested automatically, and a config whose
``data.source`` has no stand-in here fails with a message saying so (in the suite itself:
``test_every_config_has_a_stand_in_dataset``).

The end-to-end runs (about 20 s each, 35 configs) are marked ``config_sweep`` and are not part of
the default suite (``bash scripts/test.sh``, which must stay under 15 minutes on 2 cores);
``.ci/run`` runs them right after it: ``bash scripts/test.sh -m config_sweep tests/test_every_config_runs.py``.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import tfds_standins  # noqa: E402
from photo_folder import write_photo_folder  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST_FIXTURE = os.path.join(REPO, "tests", "fixtures", "fashion_mnist")
TFDS_STANDINS = {
    "tfds:imagenet2012": tfds_standins.store_imagenet2012,
    "tfds:stl10": tfds_standins.store_stl10,
    "tfds:cifar10": tfds_standins.store_cifar10,
}
IDX_SOURCES = ("coloured_fashion_mnist", "fashion_mnist", "fashion_mnist_overlay", "banded_hue_fashion_mnist")


def shipped_configs() -> list[str]:
    """Paths of every shipped YAML config."""
    from hac_tf.training.shipped_configs import shipped_config_dir

    return sorted(glob.glob(os.path.join(shipped_config_dir(), "*.yaml")))


def size_overrides(config) -> list[str]:
    """Overrides that only shrink sizes (and counts of steps and examples) of a loaded config."""
    c = config
    out = [
        "data.batch_size=8", "data.shuffle_buffer=32", "data.image_size=32",
        "model.width_multiplier=0.0625", "model.embed_dim=16",
        "model.projector_hidden_dim=32", "model.projector_out_dim=16",
        "train.max_steps=2", "train.steps_per_epoch=2", "train.log_every_steps=1", "train.checkpoint_every_steps=2",
        "eval.probe_max_train=32", "eval.probe_max_test=16", "eval.knn_max_train=32", "eval.knn_max_test=16",
    ]
    if c.model.method in ("byol", "simsiam"):
        out += ["model.predictor_hidden_dim=16", "model.predictor_out_dim=16"]
    if c.model.method == "moco":
        out.append("model.moco_queue_size=32")
    if c.train.knn_every_steps:
        out.append("train.knn_every_steps=2")
    p = c.plugins
    if p.mochi.enabled:
        out += ["plugins.mochi.num_hardest=16", "plugins.mochi.num_mixed=8", "plugins.mochi.num_query_mixed=4",
                "plugins.mochi.start_epoch=0.0"]
    if p.equimod.enabled:
        out += ["plugins.equimod.hidden_dim=32", "plugins.equimod.out_dim=16", "plugins.equimod.param_dim=16",
                "plugins.equimod.std_samples=64"]
    if p.augself.enabled:
        out.append("plugins.augself.hidden_dim=16")
    if p.viewmaker.enabled:
        out += ["plugins.viewmaker.base_channels=4", "plugins.viewmaker.num_res_blocks=1"]
    return out


@pytest.fixture(scope="module")
def tfds_data_dir(tmp_path_factory) -> str:
    data_dir = str(tmp_path_factory.mktemp("tfds_standins"))
    for store in TFDS_STANDINS.values():
        store(data_dir)
    return data_dir


@pytest.fixture
def fresh_keras_state():
    """Each run builds its models from a clean Keras state and leaves float32 behind."""
    import keras

    keras.backend.clear_session()
    yield
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()


def test_every_config_is_found():
    names = [os.path.basename(p) for p in shipped_configs()]
    assert "cfmnist_simsiam_hierarchical.yaml" in names and len(names) >= 30, names


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: os.path.basename(p)[: -len(".yaml")])
def test_every_config_has_a_stand_in_dataset(path):
    from hac_tf.training.config import load_config

    source = load_config(path).data.source
    assert source in IDX_SOURCES or source in TFDS_STANDINS or source == "image_folder", (
        f"{os.path.basename(path)}: no stand-in dataset for data.source={source!r}; add one to "
        "tests/fixtures/ and to this file so the config sweep can run it")


@pytest.mark.config_sweep
@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: os.path.basename(p)[: -len(".yaml")])
def test_shipped_config_trains_evaluates_and_exports(path, tmp_path, tfds_data_dir, fresh_keras_state):
    from hac_tf.training.config import load_config
    from hac_tf.training.run import run_experiment

    shipped = load_config(path)
    source = shipped.data.source
    if source in IDX_SOURCES:
        data_dir = FASHION_MNIST_FIXTURE
    elif source in TFDS_STANDINS:
        data_dir = tfds_data_dir
    elif source == "image_folder":
        data_dir = write_photo_folder(tmp_path / "photos")
    else:
        pytest.fail(f"{os.path.basename(path)}: no stand-in dataset for data.source={source!r}; add one to "
                    "tests/fixtures/tfds_standins.py and TFDS_STANDINS in this file")
    overrides = size_overrides(shipped) + [f"data.data_dir={data_dir}", f"export.base_dir={tmp_path / 'export'}"]
    config = load_config(path, overrides)
    model_dir = str(tmp_path / "run")
    summary = run_experiment(config, model_dir)

    assert summary["train"]["step"] == 2
    metrics = [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"), encoding="utf-8")]
    assert [m["step"] for m in metrics][-1] == 2
    if config.train.knn_every_steps:
        assert any(k.startswith("knn/") for k in metrics[-1]), metrics[-1]
    pretrained = summary["eval"]["pretrained"]
    for label in config.data.label_keys:
        assert 0.0 <= pretrained["stage4"][label] <= 1.0, pretrained
    assert config.data.knn_label in pretrained["knn"]
    export = summary["export"]
    assert os.path.isfile(os.path.join(export, "saved_model.pb")), export
    with open(os.path.join(export, "hac_tf_metadata.json"), encoding="utf-8") as f:
        assert json.load(f)["step"] == 2
