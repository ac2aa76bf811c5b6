"""End to end: training (and evaluation) on an image folder full of bad files completes, and
every bad file is reported once by name; good files in every odd format are used."""

import io
import os
import re
import struct
import zlib

import numpy as np
from PIL import Image

from tiny import run_train, tiny_overrides



def _png_claiming_size(width: int, height: int) -> bytes:
    """A valid PNG header whose IHDR claims ``width x height`` (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _make_folder(root, rng):
    """Two classes of coloured blobs in every odd format, plus one of each kind of bad file."""
    good, bad = [], []
    for c, name in enumerate(["circles", "squares"]):
        d = root / name
        d.mkdir(parents=True)
        for i in range(24):
            rgb = np.zeros((40, 40, 3), np.uint8)
            rgb[...] = rng.integers(0, 80, 3)
            if c == 0:
                yy, xx = np.mgrid[:40, :40]
                rgb[(yy - 20) ** 2 + (xx - 20) ** 2 < 150] = rng.integers(120, 256, 3)
            else:
                rgb[10:30, 10:30] = rng.integers(120, 256, 3)
            kind = i % 6
            im = Image.fromarray(rgb)
            if kind == 0:
                path = d / f"g{i}.jpg"; im.save(path, quality=90)
            elif kind == 1:
                path = d / f"g{i}_gray.png"; im.convert("L").save(path)
            elif kind == 2:
                path = d / f"g{i}_rgba.png"; im.convert("RGBA").save(path)
            elif kind == 3:
                path = d / f"g{i}_16bit.png"
                Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(path)
            elif kind == 4:
                path = d / f"g{i}_cmyk.jpg"; im.convert("CMYK").save(path)
            else:
                path = d / f"g{i}.png"; im.save(path)
            good.append(path)
        big = d / "huge_photo.jpg"  # 12 MP: decoded and resized, not skipped
        Image.fromarray(np.full((3000, 4000, 3), 90, np.uint8)).save(big, quality=50)
        good.append(big)
    d = root / "circles"
    jpg = io.BytesIO(); Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpg, "JPEG")
    (d / "truncated.jpg").write_bytes(jpg.getvalue()[: len(jpg.getvalue()) // 3]); bad.append(d / "truncated.jpg")
    (d / "zero.png").write_bytes(b""); bad.append(d / "zero.png")
    (d / "not_an_image.jpg").write_text("this is text, not a JPEG\n" * 20); bad.append(d / "not_an_image.jpg")
    (d / "bomb.png").write_bytes(_png_claiming_size(30000, 30000)); bad.append(d / "bomb.png")
    d = root / "squares"
    (d / "random_bytes.png").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    bad.append(d / "random_bytes.png")
    (root / "empty_class").mkdir()
    return good, bad


def test_training_and_eval_on_a_folder_of_bad_files(tmp_path):
    root = tmp_path / "images"
    good, bad = _make_folder(root, np.random.default_rng(0))
    model_dir = tmp_path / "run"
    overrides = tiny_overrides("model.method=simclr", "train.max_steps=3", "data.source=image_folder",
                               f"data.data_dir={root}", "data.label_keys=[label]", "data.knn_label=label",
                               "data.batch_size=8", "train.checkpoint_every_steps=3")
    r = run_train(model_dir, overrides, mode="train_and_eval")
    assert r.returncode == 0, r.stderr[-4000:]
    log = r.stdout + r.stderr
    assert "Traceback" not in log
    for path in bad:
        n = len(re.findall(re.escape(str(path)) + r":", log))
        assert n == 1, f"{path.name} reported {n} times"
    for path in good:
        assert str(path) + ":" not in log, f"good file {path.name} was reported as bad"
    assert "bomb.png: DecompressionBombError" in log
    assert "empty_class" in log  # the empty class folder is named in a warning
    assert os.path.exists(model_dir / "eval" / "results.json")
