"""Shipped configs (hac_tf/configs, package data): a bare name resolves, an unknown one errors
with the list of names, and the repository's configs/ is the same directory."""

import os

import pytest

from hac_tf.training.config import ConfigError, load_config
from hac_tf.training.shipped_configs import shipped_config_dir, shipped_config_names, shipped_config_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shipped_names_are_the_package_yaml_files():
    names = shipped_config_names()
    assert "cfmnist_simsiam_hierarchical" in names and len(names) >= 10
    assert os.path.samefile(shipped_config_dir(), os.path.join(REPO, "hac_tf", "configs"))
    assert os.path.samefile(os.path.join(REPO, "configs"), shipped_config_dir())  # the symlink


def test_bare_name_resolves_with_or_without_suffix():
    by_path = load_config(os.path.join(REPO, "configs", "cfmnist_simclr_baseline.yaml")).as_dict()
    assert load_config("cfmnist_simclr_baseline").as_dict() == by_path
    assert load_config("cfmnist_simclr_baseline.yaml").as_dict() == by_path
    assert shipped_config_path("sub/cfmnist_simclr_baseline") is None  # names only, not paths


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="'cfmnist_nope' does not exist and is not the name of a shipped config") as e:
        load_config("cfmnist_nope")
    assert "cfmnist_simsiam_hierarchical" in str(e.value)


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfmnist_simclr_baseline.yaml").write_text("train:\n  epochs: 7\n")
    assert load_config("cfmnist_simclr_baseline.yaml").train.epochs == 7
