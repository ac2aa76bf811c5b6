"""Real "disk full" conditions for the reliability tests.

Two ways to make writes fail, both real kernel behaviour (no mocks):

* :func:`small_tmpfs` mounts a tmpfs of a few MiB (needs root or CAP_SYS_ADMIN, as in the CI
  containers) and :func:`fill` takes all but ``slack`` bytes of it, so the next large write gets
  ``ENOSPC`` ("No space left on device").
* :func:`file_size_limit` is a ``preexec_fn`` that sets ``RLIMIT_FSIZE`` in a child process
  (works for any user): writing past the limit fails with ``EFBIG``, through the same code paths.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from typing import Callable, Iterator, Optional


def can_mount_tmpfs(probe_dir: str) -> bool:
    os.makedirs(probe_dir, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe_dir],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", probe_dir], capture_output=True)
    return ok


@contextlib.contextmanager
def small_tmpfs(path: str, size_mb: int = 64) -> Iterator[str]:
    """Mounts a ``size_mb`` MiB tmpfs at ``path`` for the duration of the block."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


def free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: str, slack: int = 32 * 1024) -> str:
    """Allocates a filler file so only about ``slack`` bytes stay free on ``path``'s file system."""
    filler = os.path.join(path, "filler.bin")
    size = max(0, free_bytes(path) - slack)
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, size)
    return filler


def file_size_limit(limit_bytes: int) -> Callable[[], None]:
    """``preexec_fn``: files written by the child may not grow past ``limit_bytes`` (EFBIG)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def tree_sizes(root: str, skip: Optional[str] = None) -> dict:
    """{relative path: size} of every file under root (to prove nothing changed)."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if skip and os.path.abspath(p) == os.path.abspath(skip):
                continue
            out[os.path.relpath(p, root)] = os.path.getsize(p)
    return out


@contextlib.contextmanager
def limited_file_size(limit_bytes: int) -> Iterator[None]:
    """In this process: files may not grow past ``limit_bytes`` (EFBIG) inside the block.

    Only the soft limit is lowered, so it can be restored afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
