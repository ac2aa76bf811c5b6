"""Preemption: on SIGTERM, finish the current step, write a checkpoint, exit with code 5.

Cloud and TPU VMs, Kubernetes and Slurm announce a preemption with SIGTERM and kill the process
(SIGKILL) a grace period later (30 s on GCE and in Kubernetes by default). While
:meth:`Trainer.train <hac_tf.training.trainer.Trainer.train>` runs, a :class:`PreemptionWatcher`
replaces the default action of SIGTERM (terminate at once) by:

1. the handler only records the request (a flag; the step that is running is not interrupted);
2. after that step the training loop writes a checkpoint (unless one for this step exists) and
   raises :class:`TrainingPreempted`; ``hac-train`` exits with :data:`PREEMPTED_EXIT_CODE`;
3. if that has not happened ``grace_seconds`` after the signal (a very slow step or checkpoint
   write), a watchdog ends the process with the same code; the checkpoint being written then
   never becomes the latest (the state file is replaced last), so the previous one is used.

Re-running the same command resumes from that checkpoint with the batches an uninterrupted run
would see (the input pipeline is a pure function of (seed, step)), so the final weights are
those of an uninterrupted run (tests/training/test_preemption.py).

Why not ``tf.distribute.experimental.PreemptionCheckpointHandler``: on GCE CPU and TPU VMs it
only logs a warning and never saves (the preemptible-VM case), it restores the checkpoint its
state file names when it is constructed (bypassing the verified restore of
hac_tf/training/checkpoint_integrity.py, which skips damaged checkpoints), it adds its own
counter variable to the checkpoint, and its ``grace_period`` means "keep training until shortly
before the deadline", not a deadline for exiting. A single-process run needs none of its
coordination-service machinery, so this handler is the small equivalent.

Multi-worker runs: each worker handles its own SIGTERM. The preempted worker saves and exits;
the others stop with the lost-worker error at their next collective (exit code 6,
hac_tf/training/trainer.py); restarting every worker resumes from the chief's latest checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable, Optional

from absl import logging

#: exit code of ``hac-train`` after a preemption (SIGTERM) -- re-run the same command to resume
PREEMPTED_EXIT_CODE = 5


class TrainingPreempted(RuntimeError):
    """Training stopped after a SIGTERM; ``checkpoint`` holds step ``step`` (re-run to resume)."""

    def __init__(self, step: int, checkpoint: Optional[str]):
        self.step = step
        self.checkpoint = checkpoint
        super().__init__(f"preempted (SIGTERM): finished step {step}, checkpoint {checkpoint or '(none)'} written; "
                         f"re-run the same command to resume from it")


class PreemptionWatcher:
    """Turns SIGTERM into a request that the training loop polls (:attr:`requested`).

    Args:
      grace_seconds: after the signal, end the process with :data:`PREEMPTED_EXIT_CODE` if it is
        still running this long (the platform's hard kill comes at its grace period: set this a
        little below it). 0 leaves SIGTERM's default action alone (the watcher does nothing).
      latest_checkpoint: returns the newest complete checkpoint (for the watchdog's message).

    Use ``start()`` before the loop and ``stop()`` in its ``finally``; only the main thread can
    install signal handlers (elsewhere the watcher stays inactive and says so in the log).
    """

    def __init__(self, grace_seconds: float, latest_checkpoint: Callable[[], Optional[str]] = lambda: None):
        self.grace_seconds = float(grace_seconds)
        self._latest_checkpoint = latest_checkpoint
        self._requested = threading.Event()
        self._previous_handler = None
        self._installed = False
        self._watchdog: Optional[threading.Timer] = None
        self.signal_time: Optional[float] = None

    @property
    def requested(self) -> bool:
        """True once a SIGTERM arrived while the watcher was active."""
        return self._requested.is_set()

    def start(self) -> "PreemptionWatcher":
        if self.grace_seconds <= 0:
            return self
        if threading.current_thread() is not threading.main_thread():
            logging.warning("preemption handling off: SIGTERM handlers can only be installed in the main thread")
            return self
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._installed = True
        return self

    def stop(self) -> None:
        """Restores the previous SIGTERM action and cancels the watchdog."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._installed = False

    def _on_sigterm(self, signum, frame) -> None:
        del signum, frame
        if self._requested.is_set():
            return
        self.signal_time = time.monotonic()
        self._requested.set()
        logging.warning("SIGTERM: finishing the current step, then writing a checkpoint (grace %.0f s)",
                        self.grace_seconds)
        self._watchdog = threading.Timer(self.grace_seconds, self._grace_expired)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _grace_expired(self) -> None:
        sys.stderr.write(
            f"error: preempted (SIGTERM) and the grace period (train.preemption_grace_seconds="
            f"{self.grace_seconds:g}) ran out before the checkpoint was written; exiting. The latest "
            f"complete checkpoint is {self._latest_checkpoint() or '(none)'}: re-run the same command to "
            f"resume from it.\n")
        sys.stderr.flush()
        os._exit(PREEMPTED_EXIT_CODE)
