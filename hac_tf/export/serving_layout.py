"""TF Serving directory layout: numeric versions, atomic publish, ``models.config``, warmup records.

Layout written by :func:`hac_tf.export.export_backbone`::

    <base_dir>/                       e.g. saved_models/
      models.config                   model_config_list over every model dir in <base_dir>, with
                                      base_paths as the server sees them (/models/<name> by default)
      models.host.config              the same with absolute host paths (server run on this host)
      <name>/                         base_path of one model (TF Serving "model")
        1/                            a version: a complete SavedModel
          saved_model.pb  variables/  assets/
          assets.extra/tf_serving_warmup_requests
          hac_tf_metadata.json
        2/ ...
        .tmp-3-<host>-<pid>/          an export in progress (or left behind by a crash)

Publishing is atomic: a version is written completely into a hidden temporary sibling
(``.tmp-<version>-<host>-<pid>``), every file and directory is fsync'ed, then the directory is
renamed to ``<version>`` in one ``os.rename``. TF Serving's file-system poller only considers
directories whose names are integers, so it never sees a half-written version, and neither do
:func:`list_versions` / :func:`latest_version` / :func:`resolve_version_dir` (the one resolver of
a model base path or version dir to the version to load, used by loading, the downstream tools
and the oneDNN guard). A crash leaves only the temporary directory, which the
next export into the same base path removes (when the owning process is gone).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from hac_tf.io_errors import describe, is_io_error

MODELS_CONFIG = "models.config"
#: models.config with absolute host paths, for a TF Serving binary run on the exporting machine
HOST_MODELS_CONFIG = "models.host.config"
#: where the README's ``docker run -v "$PWD/saved_models:/models"`` mounts the export dir
DEFAULT_SERVING_ROOT = "/models"
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
SAVED_MODEL_PB = "saved_model.pb"
TMP_PREFIX = ".tmp-"
_LOCK_FILE = ".models.config.lock"
_NUMERIC = re.compile(r"^[0-9]+$")
_TMP_RE = re.compile(r"^\.tmp-(?P<version>[0-9]+)-(?P<host>.+)-(?P<pid>[0-9]+)$")
# A temp dir written by another host cannot be checked for a live owner; remove it after this.
STALE_FOREIGN_TMP_SECONDS = 24 * 3600


class VersionExistsError(FileExistsError):
    """The requested version directory already exists; versions are never overwritten."""


class ExportNotFoundError(FileNotFoundError):
    """A path holds no exported model: neither a saved_model.pb nor a published numeric version."""


class ExportWriteError(OSError):
    """Writing a version failed (disk full, permissions, I/O error); nothing was published.

    The message names the cause and the versions that already exist (left untouched).
    """


# ----------------------------------------------------------------------------- versions
def _numeric_dirs(base_path: str) -> List[int]:
    if not os.path.isdir(base_path):
        return []
    out = []
    for name in os.listdir(base_path):
        if _NUMERIC.match(name) and os.path.isdir(os.path.join(base_path, name)):
            out.append(int(name))
    return sorted(out)


def list_versions(base_path: str) -> List[int]:
    """Published versions under ``base_path`` (numeric dirs holding a saved_model.pb), ascending.

    Temporary (``.tmp-*``) and other non-numeric directories are ignored, as TF Serving does.
    """
    return [v for v in _numeric_dirs(base_path)
            if os.path.isfile(os.path.join(base_path, str(v), SAVED_MODEL_PB))]


def latest_version(base_path: str) -> Optional[int]:
    """The largest published version under ``base_path`` or None."""
    versions = list_versions(base_path)
    return versions[-1] if versions else None


def resolve_version_dir(path: Union[str, os.PathLike, None]) -> str:
    """The version directory (holding saved_model.pb) that ``path`` names, as an absolute path.

    ``path`` is a version directory (``saved_models/<name>/3``) or a model base path
    (``saved_models/<name>``), which resolves to its largest published numeric version
    (:func:`list_versions`: temporary and incomplete versions are ignored). TensorFlow-free, so
    tools can report a bad path before importing it.

    Raises:
      ExportNotFoundError: ``path`` is empty, does not exist, is a numeric version without a
        saved_model.pb, or is a directory without any published version.
    """
    hint = ("Expected a SavedModel version directory (with saved_model.pb) or a model base path "
            "holding numeric versions, as hac-export and hac_tf.export.export_backbone write them.")
    if path is None or not os.fspath(path):
        raise ExportNotFoundError(f"no export path given. {hint}")
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(os.path.join(path, SAVED_MODEL_PB)):
        return path
    if not os.path.isdir(path):
        raise ExportNotFoundError(f"no exported model at {path}: no such directory. {hint}")
    parent, name = os.path.split(path)
    if _NUMERIC.match(name):
        raise ExportNotFoundError(
            f"no exported model at {path}: version {name} has no {SAVED_MODEL_PB} (an export in progress "
            f"or one that failed); published versions of {parent}: {list_versions(parent) or 'none'}")
    latest = latest_version(path)
    if latest is None:
        raise ExportNotFoundError(
            f"no exported model at {path}: it holds neither a {SAVED_MODEL_PB} nor a numeric version "
            f"directory with one. {hint}")
    return os.path.join(path, str(latest))


def next_version(base_path: str) -> int:
    """1 + the largest numeric directory name under ``base_path`` (1 when there is none).

    Every numeric directory counts, even one without a saved_model.pb, so a new export never
    reuses a name TF Serving may already have seen.
    """
    dirs = _numeric_dirs(base_path)
    return dirs[-1] + 1 if dirs else 1


def validate_version(version) -> int:
    """A TF Serving version: a non-negative int (a numeric string is accepted)."""
    if isinstance(version, bool):
        raise ValueError(f"version must be a non-negative integer, got {version!r}")
    if isinstance(version, str) and _NUMERIC.match(version):
        version = int(version)
    if isinstance(version, (int, np.integer)) and int(version) >= 0:
        return int(version)
    raise ValueError(f"version must be a non-negative integer, got {version!r}")


# ----------------------------------------------------------------------------- temp dirs
def temp_dir_name(version: int) -> str:
    """``.tmp-<version>-<host>-<pid>``: hidden and non-numeric, so no scanner treats it as a version."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
    return f"{TMP_PREFIX}{int(version)}-{host}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def cleanup_stale_temp_dirs(base_path: str, now: Optional[float] = None) -> List[str]:
    """Removes temp dirs left by crashed exports; returns the removed paths.

    A temp dir of this host is stale when its process id is no longer alive (and is not this
    process); one of another host when it is older than ``STALE_FOREIGN_TMP_SECONDS``.
    Exports still running elsewhere are left alone.
    """
    if not os.path.isdir(base_path):
        return []
    now = time.time() if now is None else now
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
    removed = []
    for name in os.listdir(base_path):
        if not name.startswith(TMP_PREFIX):
            continue
        path = os.path.join(base_path, name)
        m = _TMP_RE.match(name)
        stale = False
        if m and m.group("host") == host:
            pid = int(m.group("pid"))
            stale = pid != os.getpid() and not _pid_alive(pid)
        else:
            try:
                stale = now - os.path.getmtime(path) > STALE_FOREIGN_TMP_SECONDS
            except OSError:
                continue
        if stale:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)
            removed.append(path)
    return removed


# ----------------------------------------------------------------------------- durability
def fsync_dir(path: str) -> None:
    """fsync a directory entry (makes renames/creations inside it durable). No-op on Windows."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str) -> None:
    """fsync every regular file and directory under ``root`` (bottom-up)."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(dirpath)


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` via a temp file + fsync + ``os.replace`` (readers see old or new)."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)


# ----------------------------------------------------------------------------- publishing
def publish_version(
    base_path: str,
    write_fn: Callable[[str], None],
    version: Optional[int] = None,
) -> Tuple[int, str]:
    """Writes a version with ``write_fn(temp_dir)`` and publishes it atomically.

    Args:
      base_path: the model's TF Serving base path (created if missing).
      write_fn: writes the complete version into the (not yet existing) directory it is given.
      version: the version number; None = :func:`next_version`.

    Returns:
      ``(version, version_dir)``.

    Raises:
      VersionExistsError: ``version`` was given and ``base_path/<version>`` already exists
        (checked before anything is written, and again at rename time).
      ExportWriteError: ``write_fn`` (or the fsync/rename) failed with an I/O error such as
        ENOSPC; the temp dir is removed, nothing is published, existing versions are untouched.
      Whatever else ``write_fn`` raises; the temp dir is then removed and nothing is published.

    If the process dies before the rename, only the temp dir remains; it is removed by the next
    call for the same ``base_path`` (see :func:`cleanup_stale_temp_dirs`). With ``version=None`` a
    concurrent export that takes the same number first makes this one move to the next number.
    """
    base_path = os.path.abspath(base_path)
    os.makedirs(base_path, exist_ok=True)
    cleanup_stale_temp_dirs(base_path)
    explicit = version is not None
    if explicit:
        version = validate_version(version)
        final = os.path.join(base_path, str(version))
        if os.path.lexists(final):
            raise VersionExistsError(
                f"version {version} already exists at {final}; versions are never overwritten "
                f"(omit the version to use {next_version(base_path)}, or delete it first)")
    else:
        version = next_version(base_path)
    tmp = os.path.join(base_path, temp_dir_name(version))
    if os.path.lexists(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_fn(tmp)
        if not os.path.isfile(os.path.join(tmp, SAVED_MODEL_PB)):
            raise RuntimeError(f"export wrote no {SAVED_MODEL_PB} into {tmp}")
        fsync_tree(tmp)
        while True:
            final = os.path.join(base_path, str(version))
            if os.path.lexists(final):
                if explicit:
                    raise VersionExistsError(
                        f"version {version} appeared at {final} while exporting; not overwritten")
                version += 1
                continue
            try:
                os.rename(tmp, final)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if explicit:
                    raise VersionExistsError(
                        f"version {version} appeared at {final} while exporting; not overwritten"
                    ) from e
                version += 1
                continue
            break
        fsync_dir(base_path)
    except VersionExistsError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_io_error(e):
            kept = list_versions(base_path)
            code, reason = describe(e)
            raise ExportWriteError(
                code,
                f"export of version {version} to {base_path} failed while writing ({reason}); "
                f"nothing was published and the partial files were removed; existing versions "
                f"{kept or '(none)'} are intact") from e
        raise
    return version, final



# ----------------------------------------------------------------------------- models.config
def _is_model_dir(path: str) -> bool:
    return os.path.isdir(path) and bool(list_versions(path))


def list_model_dirs(base_dir: str) -> List[str]:
    """Names of the sub-directories of ``base_dir`` that hold at least one published version."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(name for name in os.listdir(base_dir)
                  if not name.startswith(".") and _is_model_dir(os.path.join(base_dir, name)))


def render_models_config(models: Sequence[Tuple[str, str]]) -> str:
    """Text-format ``ModelServerConfig`` for ``[(name, base_path), ...]`` (platform tensorflow)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name, base_path in models:
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = base_path
        entry.model_platform = "tensorflow"
    return text_format.MessageToString(config)


@contextlib.contextmanager
def _locked(base_dir: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(os.path.join(base_dir, _LOCK_FILE), "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def validate_serving_root(serving_root: Optional[str]) -> Optional[str]:
    """Returns ``serving_root`` if it is None, ``""`` or an absolute POSIX path; else ValueError."""
    if serving_root and not serving_root.startswith("/"):
        raise ValueError(f"serving_root={serving_root!r} must be an absolute path as the server sees it "
                         f"(e.g. {DEFAULT_SERVING_ROOT!r}), or '' for the absolute host path of the export dir")
    return serving_root


def _model_base_path(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def write_models_config(base_dir: str, serving_root: Optional[str] = None) -> str:
    """(Re)writes ``<base_dir>/models.config`` and ``<base_dir>/models.host.config``.

    Both list every model directory in ``base_dir`` as ``name: <dir name>``,
    ``base_path: <root>/<dir name>``, ``model_platform: "tensorflow"``; they differ in the root:

    * ``models.config``: ``root = serving_root``, where the server sees ``base_dir``. With
      :data:`DEFAULT_SERVING_ROOT` (``/models``) it is the file for the container started as
      ``docker run -v "$PWD/saved_models:/models" tensorflow/serving
      --model_config_file=/models/models.config``. None or ``""`` = the absolute host path.
    * ``models.host.config``: always the absolute host path of ``base_dir``, for a
      ``tensorflow_model_server --model_config_file=<abs base_dir>/models.host.config`` run on
      this machine.

    ``serving_root`` must be None, ``""`` or an absolute POSIX path (``/``-separated, as the
    server sees it). The directory scan and the writes happen under a file lock and each file is
    replaced atomically, so concurrent exports of different models cannot drop each other's
    entries. Returns the path of ``models.config``.
    """
    validate_serving_root(serving_root)
    base_dir = os.path.abspath(base_dir)
    os.makedirs(base_dir, exist_ok=True)
    root = serving_root or base_dir
    path = os.path.join(base_dir, MODELS_CONFIG)
    with _locked(base_dir):
        names = list_model_dirs(base_dir)
        write_text_atomic(path, render_models_config([(n, _model_base_path(root, n)) for n in names]))
        write_text_atomic(os.path.join(base_dir, HOST_MODELS_CONFIG),
                          render_models_config([(n, _model_base_path(base_dir, n)) for n in names]))
    return path


def parse_models_config(path: str):
    """Parses a models.config text proto into a ``ModelServerConfig`` message."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(path, encoding="utf-8") as f:
        return text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())


def served_model_dirs(config_file: str, mounts: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Checks that a server reading ``config_file`` finds every model; returns {name: host dir}.

    ``mounts`` maps directories as the server sees them to host directories, as in
    ``docker run -v <host>:<container>`` (``{"/models": "/home/me/saved_models"}``); None or
    ``{}`` = the server runs on this host (paths used as they are). Each ``base_path`` is mapped
    through the longest matching mount and must then be a directory holding at least one
    published version (a numeric directory with a ``saved_model.pb``), as TF Serving requires.

    Raises:
      ValueError: naming the config file, the model, its ``base_path`` and what is wrong (not
        under any mount, missing directory, no published version).
    """
    mounts = {k.rstrip("/") or "/": v for k, v in (mounts or {}).items()}
    out: Dict[str, str] = {}
    for entry in parse_models_config(config_file).model_config_list.config:
        path = entry.base_path
        host = path if not mounts else None
        for container in sorted(mounts, key=len, reverse=True):
            prefix = container if container.endswith("/") else container + "/"
            if path == container or path.startswith(prefix):
                host = os.path.join(mounts[container], path[len(prefix):]) if path != container else mounts[container]
                break
        where = f"{config_file}: model {entry.name!r} base_path {path!r}"
        if host is None:
            raise ValueError(f"{where} is not under any mounted directory {sorted(mounts)}")
        if not os.path.isdir(host):
            raise ValueError(f"{where} -> {host} is not a directory")
        if not list_versions(host):
            raise ValueError(f"{where} -> {host} holds no published version (numeric dir with {SAVED_MODEL_PB})")
        out[entry.name] = host
    return out


# ----------------------------------------------------------------------------- warmup
def warmup_images(batch_size: int = 2, image_size: int = 32) -> np.ndarray:
    """A deterministic uint8 batch ``[batch_size, image_size, image_size, 3]`` (gradients)."""
    ramp = np.linspace(0, 255, image_size, dtype=np.float32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    base = np.stack([yy, xx, 255.0 - yy], axis=-1)
    batch = [np.roll(base, shift=i * max(image_size // 4, 1), axis=1) for i in range(batch_size)]
    return np.clip(np.stack(batch), 0, 255).astype(np.uint8)


def warmup_log(model_name: str, images: np.ndarray, signature_name: str = "serving_default",
               input_key: str = "images"):
    """One ``PredictionLog`` holding a ``PredictRequest`` for ``signature_name``."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs[input_key].CopyFrom(tf.make_tensor_proto(np.asarray(images)))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))


def write_warmup_records(
    version_dir: str,
    model_name: str,
    image_size: int,
    batch_size: int = 2,
    signature_names: Sequence[str] = ("serving_default",),
) -> str:
    """Writes ``assets.extra/tf_serving_warmup_requests`` (TFRecord of PredictionLog protos).

    One small uint8 request per signature; TF Serving replays them when it loads the version, so
    the first real request does not pay for graph initialisation. Returns the file path.
    """
    import tensorflow as tf

    directory = os.path.join(version_dir, ASSETS_EXTRA)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, WARMUP_FILE)
    images = warmup_images(batch_size, image_size)
    with tf.io.TFRecordWriter(path) as writer:
        for name in signature_names:
            writer.write(warmup_log(model_name, images, name).SerializeToString())
    return path


def read_warmup_records(path: str) -> list:
    """Parses a warmup file (or a version dir) into a list of ``PredictionLog`` messages."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    if os.path.isdir(path):
        path = os.path.join(path, ASSETS_EXTRA, WARMUP_FILE)
    logs = []
    for record in tf.data.TFRecordDataset(path):
        logs.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
    return logs
