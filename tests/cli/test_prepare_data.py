"""hac-prepare-data (hac_tf/cli/prepare_data.py, run through tools/prepare_data.py): TFDS datasets
prepared offline by local builders (one that needs manual files), and the image-folder dry run."""

import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from hac_tf.cli.prepare_data import prepare
from hac_tf.data._tfds_compat import import_tfds

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
sys.path.insert(0, FIXTURES)
import tfds_local_builders  # noqa: E402  (registers local_garments and local_manual_garments)

tfds = import_tfds()


def test_tfds_dataset_is_prepared_once(tmp_path, capsys):
    data_dir = str(tmp_path / "tfds")
    assert prepare("tfds:local_garments", data_dir) == 0
    out = capsys.readouterr().out
    assert f"TFDS dataset local_garments prepared in {os.path.join(data_dir, 'local_garments', '1.0.0')}" in out
    assert tfds.builder("local_garments", data_dir=data_dir).is_prepared()
    assert prepare("tfds:local_garments", data_dir) == 0
    assert "already prepared" in capsys.readouterr().out


def test_manual_dataset_reads_manual_dir(tmp_path, capsys):
    data_dir, manual = str(tmp_path / "tfds"), tmp_path / "my_downloads"
    assert prepare("tfds:local_manual_garments", data_dir, manual_dir=str(manual)) == 1
    err = capsys.readouterr().err
    assert f"Put those files in '{manual}' (that folder is missing or empty)" in err
    assert f"--data_dir={data_dir} --manual_dir={manual}" in err
    for split in ("train", "test"):
        for rel in ("ankle_boot/i000.png", "sandal/i009.bmp", "tshirt/i002.png"):
            (manual / split / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(tfds_local_builders.FOLDER_FIXTURE, rel), manual / split / rel)
    assert prepare("tfds:local_manual_garments", data_dir, manual_dir=str(manual)) == 0
    assert "test 3, train 3 examples" in capsys.readouterr().out


def test_bad_dataset_names(tmp_path, capsys):
    assert prepare("cifar10", str(tmp_path)) == 2
    assert "--dataset must be 'tfds:<builder name>' or 'image_folder'" in capsys.readouterr().err
    assert prepare("image_folder", None) == 2
    assert prepare("tfds:surely_not_a_dataset_xyz", str(tmp_path)) == 1
    assert "unknown TFDS dataset 'surely_not_a_dataset_xyz'" in capsys.readouterr().err


def _photo(path, width, height, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)


def test_image_folder_dry_run(tmp_path, capsys):
    root = tmp_path / "photos"
    for i in range(3):
        _photo(root / "train" / "cat" / f"c{i}.jpg", 300 + 40 * i, 200, 30 * i)
        _photo(root / "train" / "dog" / f"d{i}.png", 80, 120 + i, 50)
    _photo(root / "val" / "cat" / "c.jpg", 50, 60, 10)
    (root / "val" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert prepare("image_folder", str(root)) == 0
    out = capsys.readouterr().out
    assert "split folders (train/ -> 'train'; val/ -> 'test' (no test/ folder)), 2 classes (cat, dog)" in out
    assert "split 'train' (train/): 6 images -- cat 3, dog 3" in out
    assert "split 'test' (val/): 1 images -- cat 1, dog 0" in out
    assert "val/ has no folder for class(es) dog" in out
    assert f"skipped 1 file(s) (not used by training or evaluation):\n    {root / 'val' / 'cat' / 'broken.jpg'}: " in out
    assert prepare("image_folder", str(root), labels="none") == 0
    assert "split 'train' (train/): 6 images\n" in capsys.readouterr().out
    _photo(root / "extra" / "x.png", 20, 20, 0)  # now ambiguous
    assert prepare("image_folder", str(root)) == 1
    assert "Reading 1:" in capsys.readouterr().err


def test_tool_wrapper_runs(tmp_path):
    root = tmp_path / "flat"
    for i in range(4):
        _photo(root / f"p{i}.png", 30 + i, 20, 40 * i)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "prepare_data.py"), "--dataset=image_folder",
                           f"--data_dir={root}", "--labels=none", "--test_fraction=0.5"],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "unlabelled" in proc.stdout and "hash split, test_fraction=0.5" in proc.stdout
    counts = [int(line.split(": ")[1].split()[0]) for line in proc.stdout.splitlines() if "  split '" in line]
    assert sum(counts) == 4 and len(counts) == 2
