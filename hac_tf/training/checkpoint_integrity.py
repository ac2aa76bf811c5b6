"""Checkpoint integrity: sha256 sidecars written at save time, a verified restore with fallback.

A checkpoint ``<dir>/ckpt-<step>`` is the index file ``ckpt-<step>.index`` and the data shards
``ckpt-<step>.data-<i>-of-<n>``. When the data and index are written (before the ``checkpoint``
state file names the new checkpoint) :func:`write_checksums` records the size and sha256 of each
file in ``ckpt-<step>.sha256.json``.

:func:`restore_newest_intact` restores the newest checkpoint that passes :func:`verify_checkpoint`
and that TensorFlow restores without error. Candidates are the checkpoints the state file lists
plus every ``ckpt-<step>`` with an index, data or checksum file in the directory, newest first,
so a state file naming a missing prefix, a missing index, a truncated or bit-flipped shard are
each detected and skipped. A damaged checkpoint is named in the log and on stderr and (on the
chief, once an intact one is restored) moved to ``<dir>/damaged/``; the state file is rewritten
to list the intact ones. When checkpoints exist but none is intact, nothing is moved and
:class:`DamagedCheckpointError` is raised: training never starts over silently and never
continues from a damaged checkpoint.

Checkpoints without a sidecar (written before this module existed) are verified by reading
every tensor: TensorFlow checks each tensor's crc32c stored in the index.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf
from absl import logging

SIDECAR_SUFFIX = ".sha256.json"
DAMAGED_DIR = "damaged"
_STEP = re.compile(r"^(?P<prefix>.+-(?P<step>\d+))(?:\.index|\.data-\d{5}-of-(?P<shards>\d{5})|"
                   + re.escape(SIDECAR_SUFFIX) + r")$")
_CHUNK = 1 << 20


class DamagedCheckpointError(OSError):
    """Checkpoints exist but none is intact; nothing was restored (never trains from garbage)."""


@dataclasses.dataclass(frozen=True)
class DamagedCheckpoint:
    """A checkpoint prefix that failed verification and why (one line)."""

    prefix: str
    reason: str


def _sha256(path: str) -> Tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def checkpoint_files(prefix: str) -> List[str]:
    """The index and data files present for ``prefix`` (sorted; the sidecar excluded)."""
    files = tf.io.gfile.glob(prefix + ".data-?????-of-?????")
    if tf.io.gfile.exists(prefix + ".index"):
        files.append(prefix + ".index")
    return sorted(files)


def sidecar_path(prefix: str) -> str:
    return prefix + SIDECAR_SUFFIX


def write_checksums(prefix: str) -> str:
    """Writes ``<prefix>.sha256.json``: ``{"files": {basename: {"sha256", "bytes"}}}`` of the
    index and data files, atomically (temp file + rename). Returns its path."""
    files = {}
    for path in checkpoint_files(prefix):
        digest, size = _sha256(path)
        files[os.path.basename(path)] = {"sha256": digest, "bytes": size}
    target = sidecar_path(prefix)
    tmp = target + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps({"files": files}, indent=1, sort_keys=True))
    tf.io.gfile.rename(tmp, target, overwrite=True)
    return target


def verify_checkpoint(prefix: str) -> Optional[str]:
    """None if checkpoint ``prefix`` is intact, else a one-line reason.

    With a sidecar: every listed file must exist with its size and sha256 (and the index must
    be listed). Without: the index and every data shard must exist and every tensor must read
    back (TensorFlow verifies each tensor's crc32c).
    """
    name = os.path.basename(prefix)
    if not tf.io.gfile.exists(prefix + ".index"):
        return f"index file {name}.index is missing"
    shards = tf.io.gfile.glob(prefix + ".data-?????-of-?????")
    if not shards:
        return f"no data file {name}.data-*"
    expected = int(shards[0].rsplit("-of-", 1)[1])
    if len(shards) != expected:
        return f"{len(shards)} of {expected} data shards present"
    sidecar = sidecar_path(prefix)
    if tf.io.gfile.exists(sidecar):
        try:
            with tf.io.gfile.GFile(sidecar, "r") as f:
                listed: Dict[str, Dict] = json.load(f)["files"]
        except (ValueError, KeyError, TypeError) as e:
            return f"checksum file {os.path.basename(sidecar)} unreadable ({e})"
        if name + ".index" not in listed:
            return f"checksum file {os.path.basename(sidecar)} does not list {name}.index"
        for base, want in sorted(listed.items()):
            path = os.path.join(os.path.dirname(prefix), base)
            if not tf.io.gfile.exists(path):
                return f"{base} is missing"
            digest, size = _sha256(path)
            if size != want["bytes"]:
                return f"{base} has {size} bytes, {want['bytes']} were written (truncated or extended)"
            if digest != want["sha256"]:
                return f"{base} does not match its sha256 (bytes changed on disk)"
        return None
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except (tf.errors.OpError, ValueError, IndexError) as e:  # IndexError: a truncated shard
        return f"unreadable ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})"
    return None


def candidate_prefixes(directory: str) -> List[Tuple[int, str]]:
    """``(step, prefix)`` of every checkpoint the state file lists or whose files exist, newest
    first. A state file that cannot be parsed is reported and ignored."""
    found: Dict[str, int] = {}
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, ValueError) as e:  # a damaged text proto
        _report(f"checkpoint state file in {directory} is unreadable ({type(e).__name__}); "
                f"looking for checkpoint files instead")
        state = None
    listed = []
    if state is not None:
        listed = list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]
    for path in listed + tf.io.gfile.glob(os.path.join(directory, "*")):
        m = _STEP.match(path) or _STEP.match(path + ".index")
        if not m:
            continue
        prefix = m.group("prefix")
        if not os.path.isabs(prefix) and "://" not in prefix:
            prefix = os.path.join(directory, prefix)
        found[prefix] = int(m.group("step"))
    return sorted(((step, prefix) for prefix, step in found.items()), reverse=True)


def _state_latest(directory: str) -> Optional[str]:
    try:
        return tf.train.latest_checkpoint(directory)
    except (tf.errors.OpError, ValueError):
        return None


def _report(message: str) -> None:
    logging.warning("%s", message)
    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


def quarantine(prefix: str) -> str:
    """Moves the files of ``prefix`` (index, data, sidecar) into ``<dir>/damaged/``; returns it."""
    directory = os.path.dirname(prefix)
    target = os.path.join(directory, DAMAGED_DIR)
    tf.io.gfile.makedirs(target)
    for path in tf.io.gfile.glob(prefix + ".*"):
        if tf.io.gfile.isdir(path):
            continue
        tf.io.gfile.rename(path, os.path.join(target, os.path.basename(path)), overwrite=True)
    return target


def rewrite_state(directory: str, intact: List[str]) -> None:
    """Makes the ``checkpoint`` state file list ``intact`` (oldest first); removes it if empty."""
    state_file = os.path.join(directory, "checkpoint")
    if not intact:
        if tf.io.gfile.exists(state_file):
            tf.io.gfile.remove(state_file)
        return
    tf.compat.v1.train.update_checkpoint_state(directory, intact[-1], all_model_checkpoint_paths=intact)


def remove_orphan_sidecars(directory: str, keep: List[str]) -> None:
    """Removes ``*.sha256.json`` of checkpoints no longer kept (pruned by the manager)."""
    keep_set = set(keep)
    for path in tf.io.gfile.glob(os.path.join(directory, "*" + SIDECAR_SUFFIX)):
        prefix = path[: -len(SIDECAR_SUFFIX)]
        if prefix not in keep_set and not tf.io.gfile.exists(prefix + ".index"):
            try:
                tf.io.gfile.remove(path)
            except (OSError, tf.errors.OpError):
                logging.warning("could not remove %s", path)


def restore_newest_intact(checkpoint: tf.train.Checkpoint, directory: str, repair: bool = True,
                          verify: Callable[[str], Optional[str]] = verify_checkpoint
                          ) -> Tuple[Optional[str], List[DamagedCheckpoint]]:
    """Restores the newest intact checkpoint of ``directory`` into ``checkpoint``.

    Args:
      checkpoint: the run's ``tf.train.Checkpoint`` (every object must match, else AssertionError:
        a checkpoint of another model is a configuration error, not damage).
      directory: the checkpoint directory (the ``tf.train.CheckpointManager`` directory).
      repair: once an intact checkpoint is restored, move the damaged ones to ``<dir>/damaged/``
        and rewrite the state file (the chief); False only reads (other workers).
      verify: the check of one prefix (default :func:`verify_checkpoint`).

    Returns:
      ``(restored prefix or None when there is no checkpoint at all, damaged checkpoints)``.

    Raises:
      DamagedCheckpointError: checkpoints exist but none is intact (each one named).
    """
    candidates = candidate_prefixes(directory) if tf.io.gfile.isdir(directory) else []
    damaged: List[DamagedCheckpoint] = []
    restored = None
    for _, prefix in candidates:
        reason = verify(prefix)
        if reason is None:
            try:
                checkpoint.restore(prefix).assert_existing_objects_matched()
                restored = prefix
            except tf.errors.OpError as e:  # damage that verification could not see
                reason = f"restore failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        if restored:
            break
        damaged.append(DamagedCheckpoint(prefix, reason))
        _report(f"checkpoint {prefix} is damaged: {reason}; trying the next older one")
    if damaged and restored and repair:  # (all damaged: left in place, so the error repeats until handled)
        for d in damaged:
            quarantine(d.prefix)
        _report(f"damaged checkpoint(s) {', '.join(os.path.basename(d.prefix) for d in damaged)} moved to "
                f"{os.path.join(directory, DAMAGED_DIR)}")
    if repair and restored and (damaged or restored != _state_latest(directory)):
        # the state file lists exactly the intact checkpoints up to the restored one (a complete
        # checkpoint written just before a kill, which the state file did not name yet, included)
        bad = {d.prefix for d in damaged}
        newest = [step for step, p in candidates if p == restored]
        intact = [p for step, p in reversed(candidates) if p not in bad and (not newest or step <= newest[0])]
        rewrite_state(directory, intact)
    if damaged and restored:
        _report(f"resuming from {restored}, the newest intact checkpoint ({len(damaged)} damaged one(s) skipped)")
    if damaged and not restored:
        raise DamagedCheckpointError(
            errno.EIO,
            f"every checkpoint in {directory} is damaged ("
            + "; ".join(f"{os.path.basename(d.prefix)}: {d.reason}" for d in damaged)
            + "); nothing was restored. Move the checkpoint directory away to start the run over")
    return restored, damaged


def newest_intact_checkpoint(directory: str,
                             verify: Callable[[str], Optional[str]] = verify_checkpoint) -> Optional[str]:
    """The newest checkpoint prefix of ``directory`` that verifies, without restoring or moving
    anything (for readers such as the export of a run); damaged newer ones are reported.

    Returns None when ``directory`` holds no checkpoint at all; raises DamagedCheckpointError
    when checkpoints exist but none is intact (each one named).
    """
    candidates = candidate_prefixes(directory) if tf.io.gfile.isdir(directory) else []
    damaged: List[DamagedCheckpoint] = []
    for _, prefix in candidates:
        reason = verify(prefix)
        if reason is None:
            return prefix
        damaged.append(DamagedCheckpoint(prefix, reason))
        _report(f"checkpoint {prefix} is damaged: {reason}; trying the next older one")
    if damaged:
        raise DamagedCheckpointError(
            errno.EIO,
            f"every checkpoint in {directory} is damaged ("
            + "; ".join(f"{os.path.basename(d.prefix)}: {d.reason}" for d in damaged) + ")")
    return None
