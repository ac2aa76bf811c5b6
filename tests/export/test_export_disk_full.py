"""An export that fails for lack of space (real ENOSPC on a small tmpfs, or EFBIG past
RLIMIT_FSIZE) raises ExportWriteError naming the cause, publishes nothing, leaves no temp dir
and leaves the previous version byte-for-byte intact and loadable."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from disk_space import can_mount_tmpfs, fill, limited_file_size, small_tmpfs, tree_sizes
from hac_tf.export import ExportWriteError, export_backbone, list_versions
from hac_tf.models import build_resnet

CONFIG = {"model": {"depth": 18, "width_multiplier": 0.125}, "data": {"image_size": 32}}


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(3)
    return build_resnet(18, "cifar", width_multiplier=0.125, zero_init_residual=False)


def _assert_failed_export_kept_previous(base, err, before, images, expected):
    assert "export of version 2" in str(err) and "nothing was published" in str(err)
    assert "[1] are intact" in str(err)
    assert list_versions(base) == [1]
    assert [n for n in os.listdir(base) if n.startswith(".tmp")] == []
    assert tree_sizes(os.path.join(base, "1")) == before
    served = tf.saved_model.load(os.path.join(base, "1")).signatures["serving_default"]
    out = served(images=tf.constant(images))
    np.testing.assert_allclose(list(out.values())[0].numpy(), expected, rtol=1e-6)


def _first_export(backbone, base, images):
    path = export_backbone(backbone, CONFIG, base, step=1, image_size=32)
    served = tf.saved_model.load(path).signatures["serving_default"]
    return tree_sizes(path), list(served(images=tf.constant(images)).values())[0].numpy()


def test_export_on_a_full_disk_publishes_nothing(backbone, tmp_path):
    if not can_mount_tmpfs(str(tmp_path / "probe")):
        pytest.skip("cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN); the RLIMIT_FSIZE test covers it")
    images = np.full((2, 32, 32, 3), 200, np.uint8)
    with small_tmpfs(str(tmp_path / "disk"), size_mb=32) as disk:
        base = os.path.join(disk, "saved_models", "tiny")
        before, expected = _first_export(backbone, base, images)
        filler = fill(disk, slack=128 * 1024)
        with pytest.raises(ExportWriteError) as info:
            export_backbone(backbone, CONFIG, base, step=2, image_size=32)
        assert "No space left on device" in str(info.value)
        _assert_failed_export_kept_previous(base, info.value, before, images, expected)
        os.remove(filler)
        assert export_backbone(backbone, CONFIG, base, step=2, image_size=32).endswith("/2")


def test_export_past_the_file_size_limit_publishes_nothing(backbone, tmp_path):
    images = np.zeros((2, 32, 32, 3), np.uint8)
    base = str(tmp_path / "saved_models" / "tiny")
    before, expected = _first_export(backbone, base, images)
    with limited_file_size(64 * 1024):  # saved_model.pb / variables are larger
        with pytest.raises(ExportWriteError) as info:
            export_backbone(backbone, CONFIG, base, step=2, image_size=32)
    _assert_failed_export_kept_previous(base, info.value, before, images, expected)
    assert export_backbone(backbone, CONFIG, base, step=2, image_size=32).endswith("/2")
