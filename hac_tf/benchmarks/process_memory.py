"""This process's resident memory, read from Linux's ``/proc/self/status``, with a resettable peak.

The training-step benchmark separates what a step itself needs from what was resident before it
(TensorFlow, the model, the dataset cache, the input pipeline): it reads the resident set just
before the first step, resets the kernel's high-water mark (``/proc/self/clear_refs`` with ``5``,
Linux 4.0 and newer), runs the steps and reads the high-water mark again. The peer's harness
measures its own step the same way, so the two figures compare.

Freed memory that the C allocator keeps (glibc's free lists) still counts as resident, and a step
can reuse it without raising the high-water mark: :func:`release_free_heap` hands it back to the
system (``malloc_trim``) first, so that "resident before the step" is what is live then.

Off Linux (no ``/proc``) every reading is ``nan``, :func:`reset_peak` and
:func:`release_free_heap` return ``False``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
from typing import Callable

__all__ = ["peak_resident_gb", "release_free_heap", "reset_peak", "resident_gb"]

_STATUS = "/proc/self/status"


def _status_gib(key: str) -> float:
    """The ``key`` line of /proc/self/status (in kB there) in GiB, or nan when unavailable."""
    try:
        with open(_STATUS, encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        return math.nan
    return math.nan


def resident_gb() -> float:
    """This process's resident set now (``VmRSS``), in GiB."""
    return _status_gib("VmRSS")


def peak_resident_gb() -> float:
    """This process's resident-set high-water mark (``VmHWM``) since start or since the last
    :func:`reset_peak`, in GiB."""
    return _status_gib("VmHWM")


def reset_peak() -> bool:
    """Resets the high-water mark to the current resident set; returns whether it could."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def release_free_heap() -> bool:
    """Returns the C heap's free memory to the system (glibc ``malloc_trim(0)``); whether it could."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def call_peak_gb(call: Callable[[], object]) -> float:
    """GiB one call of ``call`` needs on top of the resident set just before it.

    Garbage is collected and the C heap's free memory handed back first (:func:`release_free_heap`),
    then the high-water mark is reset, so memory freed by earlier work and still held by the heap
    is not counted and the call's own peak is; returns the peak during the call minus the resident
    set before it (NaN without ``/proc``).
    """
    gc.collect()
    release_free_heap()
    before = resident_gb()
    reset_peak()
    call()
    return peak_resident_gb() - before
