"""This process's resident memory, read from Linux's ``/proc/self/status``, with a resettable peak.

The training-step benchmark separates what a step itself needs from what was resident before it
(TensorFlow, the model, the dataset cache, the input pipeline): it reads the resident set just
before the first step, resets the kernel's high-water mark (``/proc/self/clear_refs`` with ``5``,
Linux 4.0 and newer), runs the steps and reads the high-water mark again. The peer's harness
measures its own step the same way, so the two figures compare.

Off Linux (no ``/proc``) every reading is ``nan`` and :func:`reset_peak` returns ``False``.
"""

from __future__ import annotations

import math

__all__ = ["peak_resident_gb", "reset_peak", "resident_gb"]

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
