"""TF Serving layout: version numbering, resolving a base path or version dir, atomic publish
(failed rename, hard crash of a subprocess), refusal to overwrite, temp-dir cleanup, models.config."""

import hashlib
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from hac_tf.export import (
    ExportNotFoundError,
    VersionExistsError,
    cleanup_stale_temp_dirs,
    export_backbone,
    latest_version,
    list_versions,
    next_version,
    parse_models_config,
    resolve_version_dir,
    write_models_config,
)
from hac_tf.export import serving_layout as layout
from hac_tf.models import build_resnet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fake_write(marker="x"):
    def write(tmp):
        os.makedirs(tmp)
        with open(os.path.join(tmp, "saved_model.pb"), "w") as f:
            f.write(marker)
    return write


def _tree_digest(path):
    h = hashlib.sha256()
    for dirpath, dirnames, files in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            h.update(os.path.relpath(full, path).encode())
            with open(full, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _tmp_dirs(base):
    return sorted(n for n in os.listdir(base) if n.startswith(".tmp-"))


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------- no TensorFlow export
def test_version_numbering_and_scanning(tmp_path):
    base = str(tmp_path / "m")
    assert next_version(base) == 1 and latest_version(base) is None
    assert layout.publish_version(base, _fake_write()) == (1, os.path.join(base, "1"))
    assert layout.publish_version(base, _fake_write())[0] == 2
    assert layout.publish_version(base, _fake_write(), version=7)[0] == 7
    os.makedirs(os.path.join(base, "9"))  # numeric but empty: counts for numbering only
    os.makedirs(os.path.join(base, ".tmp-12-otherhost-1"))
    os.makedirs(os.path.join(base, "notes"))
    assert list_versions(base) == [1, 2, 7] and latest_version(base) == 7
    assert next_version(base) == 10
    assert layout.publish_version(base, _fake_write())[0] == 10


def test_resolve_version_dir_cases(tmp_path, monkeypatch):
    base = tmp_path / "m"
    layout.publish_version(str(base), _fake_write(), version=2)
    layout.publish_version(str(base), _fake_write(), version=10)  # numeric, not lexicographic order
    os.makedirs(base / "11")  # numeric without saved_model.pb: not published
    os.makedirs(base / ".tmp-12-otherhost-1")
    assert resolve_version_dir(str(base)) == str(base / "10")
    assert resolve_version_dir(base / "2") == str(base / "2")  # an explicit version, os.PathLike
    monkeypatch.chdir(tmp_path)
    assert resolve_version_dir("m") == str(base / "10")  # relative -> absolute


@pytest.mark.parametrize("case, match", [
    ("none", "no export path given"),
    ("empty", "no export path given"),
    ("missing", "no such directory"),
    ("empty_dir", "holds neither a saved_model.pb nor a numeric version"),
    ("only_unpublished", "holds neither a saved_model.pb nor a numeric version"),
    ("unpublished_version", r"version 3 has no saved_model.pb .*published versions of .*: \[1\]"),
])
def test_resolve_version_dir_errors(tmp_path, case, match):
    base = tmp_path / "m"
    os.makedirs(base)
    path = {"none": None, "empty": "", "missing": str(tmp_path / "absent"), "empty_dir": str(base),
            "only_unpublished": str(base), "unpublished_version": str(base / "3")}[case]
    if case == "only_unpublished":
        os.makedirs(base / "4")
        os.makedirs(base / ".tmp-5-host-1")
        with open(base / ".tmp-5-host-1" / "saved_model.pb", "w") as f:
            f.write("x")
    if case == "unpublished_version":
        layout.publish_version(str(base), _fake_write(), version=1)
        os.makedirs(base / "3")
    with pytest.raises(ExportNotFoundError, match=match) as info:
        resolve_version_dir(path)
    assert isinstance(info.value, FileNotFoundError)  # callers catching FileNotFoundError keep working


def test_existing_version_is_refused(tmp_path):
    base = str(tmp_path / "m")
    layout.publish_version(base, _fake_write("first"), version=3)
    with pytest.raises(VersionExistsError, match="version 3 already exists"):
        layout.publish_version(base, _fake_write("second"), version=3)
    with open(os.path.join(base, "3", "saved_model.pb")) as f:
        assert f.read() == "first"
    with pytest.raises(ValueError, match="non-negative integer"):
        layout.publish_version(base, _fake_write(), version=-1)
    assert _tmp_dirs(base) == []


def test_failed_write_leaves_nothing(tmp_path):
    base = str(tmp_path / "m")

    def broken(tmp):
        os.makedirs(tmp)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        layout.publish_version(base, broken)
    assert os.listdir(base) == []


def test_concurrent_auto_version_moves_on(tmp_path, monkeypatch):
    """Another exporter publishes the same number between scan and rename: take the next one."""
    base = str(tmp_path / "m")
    layout.publish_version(base, _fake_write())

    def write_and_race(tmp):
        _fake_write("mine")(tmp)
        _fake_write("theirs")(os.path.join(base, "2"))

    version, path = layout.publish_version(base, write_and_race)
    assert version == 3 and path.endswith(os.sep + "3")
    with open(os.path.join(base, "2", "saved_model.pb")) as f:
        assert f.read() == "theirs"


def test_cleanup_stale_temp_dirs(tmp_path):
    base = tmp_path / "m"
    host = layout.temp_dir_name(1).split("-", 2)[2].rsplit("-", 1)[0]
    dead = base / f".tmp-4-{host}-{_dead_pid()}"
    mine = base / layout.temp_dir_name(5)
    old_foreign = base / ".tmp-6-some-other-host-123"
    new_foreign = base / ".tmp-7-some-other-host-124"
    for d in (dead, mine, old_foreign, new_foreign):
        os.makedirs(d / "variables")
    past = time.time() - 2 * layout.STALE_FOREIGN_TMP_SECONDS
    os.utime(old_foreign, (past, past))
    removed = cleanup_stale_temp_dirs(str(base))
    assert sorted(removed) == sorted([str(dead), str(old_foreign)])
    assert _tmp_dirs(str(base)) == sorted([mine.name, new_foreign.name])


def test_models_config_lists_every_model(tmp_path):
    root = tmp_path / "saved_models"
    for name in ("beta", "alpha"):
        layout.publish_version(str(root / name), _fake_write())
    os.makedirs(root / "not_a_model" / ".tmp-1-h-1")
    path = write_models_config(str(root))
    assert path == str(root / "models.config")
    entries = [(c.name, c.base_path, c.model_platform)
               for c in parse_models_config(path).model_config_list.config]
    assert entries == [("alpha", str(root / "alpha"), "tensorflow"),
                       ("beta", str(root / "beta"), "tensorflow")]
    host = [(c.name, c.base_path) for c in parse_models_config(str(root / "models.host.config"))
            .model_config_list.config]
    assert host == [(n, p) for n, p, _ in entries]
    write_models_config(str(root), serving_root="/models/")
    text = open(path).read()
    assert 'base_path: "/models/alpha"' in text and 'model_platform: "tensorflow"' in text
    assert text.startswith("model_config_list {")
    assert f'base_path: "{root / "alpha"}"' in open(root / "models.host.config").read()
    assert write_models_config(str(root), serving_root="") == path
    assert f'base_path: "{root / "alpha"}"' in open(path).read()
    with pytest.raises(ValueError, match="serving_root='models'.*absolute path"):
        write_models_config(str(root), serving_root="models")


# ----------------------------------------------------------------------------- real exports
@pytest.fixture(scope="module")
def first_export(tmp_path_factory):
    backbone = build_resnet(18, "cifar", width_multiplier=0.125)
    base = str(tmp_path_factory.mktemp("atomic") / "model")
    path = export_backbone(backbone, None, base, step=1, warmup=False)
    return {"backbone": backbone, "base": base, "path": path, "digest": _tree_digest(path)}


def test_export_refuses_existing_version(first_export):
    assert not os.path.exists(os.path.join(first_export["path"], "assets.extra"))  # warmup=False
    with pytest.raises(VersionExistsError, match="already exists"):
        export_backbone(first_export["backbone"], None, first_export["base"], version=1)
    assert _tree_digest(first_export["path"]) == first_export["digest"]


def test_failed_rename_publishes_nothing(first_export, monkeypatch):
    base = first_export["base"]

    def failing_rename(src, dst):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="simulated"):
        export_backbone(first_export["backbone"], None, base, step=2)
    monkeypatch.undo()
    assert list_versions(base) == [1]
    assert sorted(os.listdir(base)) == ["1"]  # the temp dir was removed too
    assert _tree_digest(first_export["path"]) == first_export["digest"]


def test_hard_crash_then_next_export_cleans_up(first_export):
    """A process SIGKILLed between writing a version and renaming it leaves only its temp dir;
    the next export removes it and publishes normally.

    The subprocess runs the same publish step export_backbone uses (serving_layout, importable
    without TensorFlow) with a copy of a real SavedModel as the payload, and kills itself at the
    rename — a subprocess doing a full TF export would cost ~20 s of imports and tracing.
    """
    base = first_export["base"]
    script = textwrap.dedent(f"""
        import os, shutil, signal, sys
        from hac_tf.export import serving_layout
        assert "tensorflow" not in sys.modules
        real_rename = os.rename
        def killed(src, dst):
            if os.path.basename(src).startswith(".tmp-"):
                os.kill(os.getpid(), signal.SIGKILL)
            real_rename(src, dst)
        os.rename = killed
        serving_layout.publish_version(
            {base!r}, lambda tmp: shutil.copytree({first_export["path"]!r}, tmp))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    leftovers = _tmp_dirs(base)
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-2-")
    assert os.path.isfile(os.path.join(base, leftovers[0], "saved_model.pb"))  # complete, unpublished
    assert list_versions(base) == [1] and not os.path.exists(os.path.join(base, "2"))
    assert _tree_digest(first_export["path"]) == first_export["digest"]

    path = export_backbone(first_export["backbone"], None, base, step=3, warmup=False)
    assert path == os.path.join(base, "2")
    assert _tmp_dirs(base) == [] and list_versions(base) == [1, 2]
    assert _tree_digest(first_export["path"]) == first_export["digest"]
    x = tf.constant(np.full((1, 32, 32, 3), 128, np.uint8))
    out = tf.saved_model.load(path).signatures["serving_default"](images=x)
    assert out["embedding"].shape == (1, first_export["backbone"].feature_dim)
    config = parse_models_config(os.path.join(os.path.dirname(base), "models.config"))
    assert [c.name for c in config.model_config_list.config] == ["model"]
