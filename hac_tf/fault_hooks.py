"""Phase-triggered faults for drills and tests: ``HAC_FAULT_AT=<phase>:<n>[:<signal>][,...]``.

A fault point is a named place in the code (:data:`PHASES`). When the environment variable
``HAC_FAULT_AT`` asks for it, the process sends itself a real signal (default ``KILL``, i.e.
``kill -9``) the ``n``-th time it reaches that point -- counted from 1 within this process, so a
restarted run counts afresh. Unset (the normal case), :func:`fault_point` returns at once.

Phases and where they fire:

* ``step``: at the start of every training step, before the step runs (``step:5`` in a fresh
  run fires before step 5, after step 4 and its checkpoint, if one was due).
* ``checkpoint``: inside every checkpoint write, after the data and index files (and their
  checksums) are written, before the ``checkpoint`` state file names the new checkpoint.
* ``export``: inside every SavedModel export, after the version is written into its temp
  directory, before the rename that publishes it.

Examples::

  HAC_FAULT_AT=step:7            # kill -9 before the 7th step this process runs
  HAC_FAULT_AT=checkpoint:2      # kill -9 inside the 2nd checkpoint write
  HAC_FAULT_AT=step:3:TERM       # a preemption notice (SIGTERM) before the 3rd step
  HAC_FAULT_AT=step:4:STOP       # freeze (SIGSTOP) before the 4th step: a worker gone silent
  HAC_FAULT_AT=step:9,export:1   # several points, comma-separated

Used by ``hac_tf/cli/fault_drill.py`` (``hac-fault-drill``) and the tests; nothing else sets it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
from typing import Dict, Tuple

ENV_VAR = "HAC_FAULT_AT"
PHASES = ("step", "checkpoint", "export")
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT, "STOP": signal.SIGSTOP}


@dataclasses.dataclass(frozen=True)
class FaultSpec:
    """Send ``signal`` to this process the ``count``-th time ``phase`` is reached."""

    phase: str
    count: int
    signal: int = signal.SIGKILL

    def render(self) -> str:
        """The spec as written in ``HAC_FAULT_AT`` (inverse of :func:`parse_fault_specs`)."""
        name = next(k for k, v in SIGNALS.items() if v == self.signal)
        return f"{self.phase}:{self.count}" + ("" if name == "KILL" else f":{name}")


def parse_fault_specs(text: str) -> Tuple[FaultSpec, ...]:
    """Parses ``"<phase>:<n>[:<signal>][,...]"``; ``""`` gives ``()``.

    Raises:
      ValueError: naming the bad item and what is allowed.
    """
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        fields = item.split(":")
        if len(fields) not in (2, 3) or fields[0] not in PHASES:
            raise ValueError(f"{ENV_VAR}: bad item {item!r}; expected <phase>:<n>[:<signal>] with phase one of "
                             f"{', '.join(PHASES)}")
        try:
            count = int(fields[1])
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"{ENV_VAR}: bad count in {item!r}; expected an integer >= 1")
        sig = fields[2].upper() if len(fields) == 3 else "KILL"
        if sig not in SIGNALS:
            raise ValueError(f"{ENV_VAR}: bad signal in {item!r}; allowed: {', '.join(SIGNALS)}")
        specs.append(FaultSpec(fields[0], count, SIGNALS[sig]))
    return tuple(specs)


_SPECS: Tuple[FaultSpec, ...] = parse_fault_specs(os.environ.get(ENV_VAR, ""))
_REACHED: Dict[str, int] = collections.Counter()


def fault_point(phase: str) -> None:
    """Marks one arrival at ``phase``; signals this process if ``HAC_FAULT_AT`` asks for it."""
    if not _SPECS:
        return
    _REACHED[phase] += 1
    for spec in _SPECS:
        if spec.phase == phase and spec.count == _REACHED[phase]:
            os.kill(os.getpid(), spec.signal)
