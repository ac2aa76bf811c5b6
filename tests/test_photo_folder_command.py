"""The README's "your own photos" command, run as documented on a folder of real JPEGs.

The folder has the ``train/`` + ``val/`` layout, photos from 40 to 600 px with mixed aspect ratios
and a few broken files (``tests/fixtures/photo_folder.py``). The command is read from README.md
and run unchanged, from a directory holding ``photos/``, with size-only overrides appended
(``--params_override`` is repeatable).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
from photo_folder import BROKEN_FILES, PHOTO_CLASSES, write_photo_folder  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_NAME = "folder_simsiam_hierarchical_r18"
TINY = [
    "data.batch_size=8", "data.image_size=32", "data.shuffle_buffer=32", "model.width_multiplier=0.0625",
    "model.embed_dim=16", "model.projector_hidden_dim=32", "model.projector_out_dim=16",
    "model.predictor_hidden_dim=16", "model.predictor_out_dim=16", "train.max_steps=2", "train.steps_per_epoch=2",
    "train.knn_every_steps=2", "eval.probe_max_train=32", "eval.probe_max_test=16", "eval.knn_max_train=32",
    "eval.knn_max_test=16",
]


def readme_photo_command() -> list[str]:
    """argv of the README's training command for the photo-folder config (continuation lines joined)."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()
             if line.strip().startswith("hac-train") and f"--config_file={CONFIG_NAME}" in line]
    assert lines, f"README.md has no 'hac-train --config_file={CONFIG_NAME} ...' command"
    return shlex.split(lines[0].split("#", 1)[0])


@pytest.mark.long(45)
def test_readme_photo_folder_command_trains_evaluates_on_the_classes_and_exports(tmp_path):
    write_photo_folder(tmp_path / "photos")
    argv = readme_photo_command()
    assert "--params_override=data.data_dir=photos" in argv, argv
    script = shutil.which("hac-train", path=os.path.dirname(sys.executable))
    entry = [script] if script else [sys.executable, "-m", "hac_tf.cli.train"]
    argv = entry + argv[1:] + [f"--params_override={o}" for o in TINY]
    env = dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err[-3000:]
    # the split folders are the splits, and the classes are the class folders (not "train"/"val")
    assert "split folders (train/ -> 'train'; val/ -> 'test'" in out, out
    assert f"{len(PHOTO_CLASSES)} classes ({', '.join(PHOTO_CLASSES)})" in out, out
    for broken in BROKEN_FILES:
        assert os.path.basename(broken) in err, err[-3000:]
    assert "pretrained" in out and "random-init" in out, out
    export = tmp_path / "saved_models" / "photos" / "1"
    assert (export / "saved_model.pb").is_file(), out
    assert (tmp_path / "runs" / "photos" / "eval" / "results.json").is_file()
