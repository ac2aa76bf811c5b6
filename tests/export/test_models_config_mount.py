"""models.config as the README's Docker command sees it: base_paths under the mount point
(``export.serving_root``, default ``/models``), models.host.config with host paths, and
``served_model_dirs`` mapping a mount back to the host -- on real exports of a tiny backbone."""

import os

import keras
import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from hac_tf.export import export_backbone, served_model_dirs
from hac_tf.models import build_resnet
from hac_tf.training.config import ConfigError, load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILE = os.path.join(REPO, "configs", "cfmnist_simsiam_hierarchical.yaml")


def _parse(path):
    with open(path, encoding="utf-8") as f:
        return text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())


def _resolve_in_mount(base_path, container_root, host_root):
    """The host directory behind ``base_path`` for ``docker run -v <host_root>:<container_root>``."""
    assert base_path.startswith(container_root.rstrip("/") + "/"), (base_path, container_root)
    return os.path.join(host_root, base_path[len(container_root.rstrip("/")) + 1:])


def _assert_servable(host_dir):
    versions = [n for n in os.listdir(host_dir) if n.isdigit()]
    assert versions, f"{host_dir} has no numeric version"
    assert all(os.path.isfile(os.path.join(host_dir, v, "saved_model.pb")) for v in versions)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two models exported into one saved_models dir with the shipped config (serving_root default)."""
    keras.utils.set_random_seed(3)
    backbone = build_resnet(18, "cifar", width_multiplier=0.125, zero_init_residual=False)
    base_dir = str(tmp_path_factory.mktemp("saved_models"))
    config = load_config(CONFIG_FILE, ["data.image_size=16"])
    for name in ("quickstart", "other"):
        export_backbone(backbone, config, os.path.join(base_dir, name), warmup=False)
    return {"backbone": backbone, "base_dir": base_dir}


def test_default_models_config_resolves_inside_the_readme_mount(exports):
    base_dir = exports["base_dir"]
    config = _parse(os.path.join(base_dir, "models.config"))
    entries = {c.name: c.base_path for c in config.model_config_list.config}
    assert entries == {"other": "/models/other", "quickstart": "/models/quickstart"}
    for entry in config.model_config_list.config:
        assert entry.model_platform == "tensorflow"
        # docker run -v "$PWD/saved_models:/models" ... --model_config_file=/models/models.config
        _assert_servable(_resolve_in_mount(entry.base_path, "/models", base_dir))
    assert served_model_dirs(os.path.join(base_dir, "models.config"), {"/models": base_dir}) == {
        "other": os.path.join(base_dir, "other"), "quickstart": os.path.join(base_dir, "quickstart")}


def test_host_config_has_absolute_host_paths(exports):
    base_dir = exports["base_dir"]
    host = _parse(os.path.join(base_dir, "models.host.config"))
    for entry in host.model_config_list.config:
        assert os.path.isabs(entry.base_path) and entry.base_path == os.path.join(base_dir, entry.name)
        _assert_servable(entry.base_path)
    assert sorted(served_model_dirs(os.path.join(base_dir, "models.host.config"))) == ["other", "quickstart"]


def test_served_model_dirs_names_what_is_wrong(exports, tmp_path):
    config_file = os.path.join(exports["base_dir"], "models.config")
    with pytest.raises(ValueError, match=r"model 'other' base_path '/models/other' is not under any mounted"):
        served_model_dirs(config_file, {"/srv": exports["base_dir"]})
    with pytest.raises(ValueError, match=r"-> .*/other is not a directory"):
        served_model_dirs(config_file, {"/models": str(tmp_path)})
    (tmp_path / "other" / "1").mkdir(parents=True)  # a numeric dir without saved_model.pb
    with pytest.raises(ValueError, match="holds no published version"):
        served_model_dirs(config_file, {"/models": str(tmp_path)})
    with pytest.raises(ValueError, match="is not a directory"):  # no mount = paths used as they are
        served_model_dirs(config_file)


@pytest.mark.parametrize("override, argument, expected", [
    ("export.serving_root=/srv/tf/", None, "/srv/tf/m"),
    ("export.serving_root=''", None, None),  # None: the absolute host path
    ("export.serving_root=/srv/tf/", "/x", "/x/m"),  # the argument (tools/export.py --serving_root) wins
])
def test_serving_root_from_the_config(exports, tmp_path, override, argument, expected):
    config = load_config(CONFIG_FILE, ["data.image_size=16", override])
    export_backbone(exports["backbone"], config, str(tmp_path / "m"), warmup=False, serving_root=argument)
    (entry,) = _parse(str(tmp_path / "models.config")).model_config_list.config
    assert entry.base_path == (expected or str(tmp_path / "m"))


def test_bad_serving_root_is_rejected_before_anything_is_written(exports, tmp_path):
    with pytest.raises(ConfigError, match="export.serving_root='models' must be an absolute path"):
        load_config(CONFIG_FILE, ["export.serving_root=models"])
    with pytest.raises(ValueError, match="serving_root='models' must be an absolute path"):
        export_backbone(exports["backbone"], None, str(tmp_path / "m"), serving_root="models")
    assert not os.path.exists(tmp_path / "m")
