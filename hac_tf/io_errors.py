"""Turning file-system failures (OSError or TensorFlow's tf.errors.OpError) into one clear line.

TensorFlow reports ENOSPC/EFBIG from its own writers (checkpoints, SavedModels) as an
``OpError`` whose message embeds the strerror text after a long path; :func:`describe` keeps
the beginning and the end of it and recovers the errno so callers can raise an ``OSError``.
"""

from __future__ import annotations

import errno
import os
from typing import Tuple

_MAX_CHARS = 400


def is_io_error(e: BaseException) -> bool:
    """OSError, or a TensorFlow error raised by a file-system operation."""
    if isinstance(e, OSError):
        return True
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, tf.errors.OpError) and not isinstance(e, tf.errors.InvalidArgumentError)


def describe(e: BaseException) -> Tuple[int, str]:
    """``(errno, one-line reason)``; errno is guessed from the strerror text for TF errors (EIO
    when unknown). Long messages keep their start and end (where TF puts the strerror)."""
    code = getattr(e, "errno", None)
    text = " ".join((getattr(e, "message", None) or str(e)).split())
    if not code:
        code = next((c for c in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES)
                     if os.strerror(c) in text), errno.EIO)
    if len(text) > _MAX_CHARS:
        text = text[: _MAX_CHARS // 3] + " ... " + text[-(2 * _MAX_CHARS) // 3:]
    return code, text
