"""Peer throughput figures for ``hac-bench-train --peer_json``: read, checked, matched.

A ratio against another implementation (the "peer", e.g. the paper's official PyTorch code) is
only meaningful when both were measured on the same machine in the same window, so the benchmark
prints an "x peer" column only when it is given a file written by the peer's harness for this
run. Format: a JSON list, one object per measured point::

    [{"batch": 64, "px": 32, "precision": "float32", "variant": "hierarchical", "img_per_s": 50.5},
     {"batch": 64, "px": 32, "precision": "float32", "variant": "baseline", "img_per_s": 186.0}]

``batch`` source images per step (int > 0), ``px`` view side (int > 0), ``precision`` one of
:data:`PRECISIONS`, ``variant`` one of :data:`VARIANTS` (``hierarchical``: the add-one views at
four depths; ``baseline``: one level, two views), ``img_per_s`` source images per second
(number > 0). Optional, each adding a memory comparison, in GiB measured the way hac_tf's benchmark
measures its own (hac_tf/benchmarks/process_memory.py): ``step_peak_gb``, the training steps'
memory (the process's resident high-water mark over the steps minus its resident set just before
the first step), and ``call_peak_gb``, one step's (the high-water mark of one call over the resident
set just before it, the C heap trimmed first, with the step's gradients not held from the previous
step: PyTorch's ``.grad`` freed with ``zero_grad(set_to_none=True)``, as TensorFlow's gradients are
temporaries of its step). Other keys are allowed and ignored; a (batch, px, precision, variant)
point may appear once.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from typing import Dict, List, Optional, Tuple

PRECISIONS = ("float32", "mixed_bfloat16")
VARIANTS = ("hierarchical", "baseline")
#: optional memory figures of a point (GiB; module docstring)
MEMORY_FIELDS = ("step_peak_gb", "call_peak_gb")
#: a peer file older than this is flagged: it was probably not measured in the same window
STALE_AFTER_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True)
class PeerPoint:
    """One measured point of the peer: source images/s at (batch, px, precision, variant)."""

    batch: int
    px: int
    precision: str
    variant: str
    img_per_s: float
    step_peak_gb: Optional[float] = None
    call_peak_gb: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class PeerFigures:
    """The points of one peer file, with where they came from."""

    path: str
    written: datetime.datetime  # the file's modification time (UTC)
    points: Dict[Tuple[int, int, str, str], PeerPoint]

    def match(self, batch: int, px: int, variant: str, precision: str) -> Optional[PeerPoint]:
        """The peer point for our (batch, px, variant, precision): the same precision when the
        peer measured it, else the peer's float32 point (the caller shows its precision), else None."""
        return (self.points.get((batch, px, precision, variant))
                or self.points.get((batch, px, "float32", variant)))

    def describe(self, now: Optional[datetime.datetime] = None) -> str:
        """One line naming the file, its number of points, when it was written and how long ago."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        age_h = (now - self.written).total_seconds() / 3600
        line = (f"peer figures: {self.path} ({len(self.points)} points, written "
                f"{self.written.strftime('%Y-%m-%d %H:%M UTC')}, {age_h:.1f} h before this run)")
        if age_h * 3600 > STALE_AFTER_SECONDS:
            line += " -- WARNING: older than a day, probably not measured in this run's window"
        return line


def _field(entry: dict, key: str, where: str):
    if key not in entry:
        raise ValueError(f"{where} has no {key!r} (needs batch, px, precision, variant, img_per_s)")
    return entry[key]


def _positive_int(value, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: {key}={value!r} must be a positive integer")
    return value


def _optional_gb(entry: dict, key: str, where: str) -> Optional[float]:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: {key}={value!r} must be a positive number (GiB)")
    return float(value)


def load_peer_figures(path: str) -> PeerFigures:
    """Reads and checks a peer file (format in the module docstring).

    Raises:
      ValueError: the file is missing, not JSON, not a list, or an entry is malformed; the
        message names the file and the entry's index.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        written = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    except OSError as e:
        raise ValueError(f"cannot read peer figures {path}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"peer figures {path} are not valid JSON: {e}") from e
    if not isinstance(data, list) or not data:
        raise ValueError(f"peer figures {path} must be a non-empty JSON list of "
                         f"{{batch, px, precision, variant, img_per_s}} objects")
    points: Dict[Tuple[int, int, str, str], PeerPoint] = {}
    for i, entry in enumerate(data):
        where = f"{path} entry {i}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be an object, got {type(entry).__name__}")
        batch = _positive_int(_field(entry, "batch", where), where, "batch")
        px = _positive_int(_field(entry, "px", where), where, "px")
        precision = _field(entry, "precision", where)
        if precision not in PRECISIONS:
            raise ValueError(f"{where}: precision={precision!r} is not one of {list(PRECISIONS)}")
        variant = _field(entry, "variant", where)
        if variant not in VARIANTS:
            raise ValueError(f"{where}: variant={variant!r} is not one of {list(VARIANTS)}")
        rate = _field(entry, "img_per_s", where)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"{where}: img_per_s={rate!r} must be a positive number")
        memory = {name: _optional_gb(entry, name, where) for name in MEMORY_FIELDS}
        key = (batch, px, precision, variant)
        if key in points:
            raise ValueError(f"{where} repeats batch={batch} px={px} precision={precision} variant={variant}")
        points[key] = PeerPoint(batch, px, precision, variant, float(rate), **memory)
    return PeerFigures(path, written, points)


def peer_columns(figures: Optional[PeerFigures], comparable: bool, batch: int, px: int, variant: str,
                 precision: str, img_per_s: float) -> List[str]:
    """The ``[peer img/s, peer precision, x peer]`` cells of one benchmark row ('' where there is
    no comparable peer point); ``[]`` when no peer file was given (no peer columns at all)."""
    if figures is None:
        return []
    point = figures.match(batch, px, variant, precision) if comparable else None
    if point is None:
        return ["", "", ""]
    short = {"float32": "fp32", "mixed_bfloat16": "bf16"}[point.precision]
    return [f"{point.img_per_s:.1f}", short, f"{img_per_s / point.img_per_s:.2f}"]


def peer_memory_columns(figures: Optional[PeerFigures], comparable: bool, batch: int, px: int, variant: str,
                        precision: str, ours_gb: float, field: str = "step_peak_gb") -> List[str]:
    """The ``[peer GB, x peer]`` memory cells of one row for ``field`` (one of
    :data:`MEMORY_FIELDS`): the peer's figure at the point :meth:`PeerFigures.match` picks and
    ``ours_gb`` / the peer's ('' where the peer gave none); ``[]`` when no peer file was given or no
    point of the file has that figure."""
    if field not in MEMORY_FIELDS:
        raise ValueError(f"unknown memory field {field!r}; one of {list(MEMORY_FIELDS)}")
    if figures is None or all(getattr(p, field) is None for p in figures.points.values()):
        return []
    point = figures.match(batch, px, variant, precision) if comparable else None
    if point is None or getattr(point, field) is None:
        return ["", ""]
    return [f"{getattr(point, field):.2f}", f"{ours_gb / getattr(point, field):.2f}"]
