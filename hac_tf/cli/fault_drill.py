"""Fault drill: kill a training run in every phase, preempt it, restart it; nothing may be lost.

  hac-fault-drill --kills=12                 # 4 kills each in step, checkpoint write, export + 3 preemptions
  hac-fault-drill --kills=3 --preemptions=1 --steps=12

The faults are triggered by the phase itself (``HAC_FAULT_AT``, hac_tf/fault_hooks.py),
not by the clock, so every phase gets its share on a fast or a slow machine:

* ``step``: ``kill -9`` at the start of a random step;
* ``checkpoint``: ``kill -9`` inside a random checkpoint write (data and index written, the
  ``checkpoint`` state file not yet replaced);
* ``export``: ``kill -9`` inside the SavedModel export (written, not yet published);
* ``preemption``: SIGTERM before a random step: the run must finish that step, checkpoint it and
  exit with code 5 (hac_tf/training/preemption.py).

``--kills`` SIGKILLs are spread evenly over step, checkpoint and export; ``--preemptions`` come on
top. A round is one fresh run directory with at most one fault of each kind (export last); the
same command is restarted after every fault until the run completes. After each fault the
checkpoint the state file names must pass verification and no half-written export version may
be visible; a preempted run must have checkpointed exactly the step it was running. Each
completed round's final weights must equal an uninterrupted reference run's (deterministic ops;
MoCo, so the queue and momentum encoder are in the checkpoint too).

Prints one line per fault and a JSON summary (``by_phase``); exits 1 if anything was lost or
corrupted, or if a phase got fewer faults than asked. The run is a tiny MoCo model on the
Fashion-MNIST files in ``--data_dir`` (default: the checkout's tests/fixtures/fashion_mnist).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from absl import flags

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested
from hac_tf.training.preemption import PREEMPTED_EXIT_CODE  # (no TensorFlow import)

KILL_PHASES = ("step", "checkpoint", "export")
PHASES = KILL_PHASES + ("preemption",)
CHECKPOINT_EVERY = 2
EXPORT_NAME = "drill"
_FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "tests", "fixtures", "fashion_mnist")
# a tiny but complete MoCo run (queue + momentum encoder: the most state to resume)
DRILL_OVERRIDES = (
    "model.method=moco", "model.moco_queue_size=32", "data.batch_size=16", "data.shuffle_buffer=64",
    "augment.num_levels=2", "model.level_depths=[1,2]", "model.width_multiplier=0.125", "model.embed_dim=16",
    "model.projector_hidden_dim=32", "model.projector_out_dim=16", "train.log_every_steps=1",
    f"train.checkpoint_every_steps={CHECKPOINT_EVERY}", "train.deterministic_ops=true",
    "train.image_summary_every_steps=0",
)
CHILD = "import sys; from hac_tf.cli.fault_drill import drilled_run; sys.exit(drilled_run(sys.argv[1], sys.argv[2:]))"


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-fault-drill (same as tools/fault_drill.py)."""
    fv = flag_values
    flags.DEFINE_integer("kills", 12, "SIGKILLs in total, spread evenly over step, checkpoint write and export.",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("preemptions", 3, "SIGTERM preemptions on top of the kills.", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("steps", 40, "Training steps of the drilled run.", lower_bound=4, flag_values=fv)
    flags.DEFINE_float("max_seconds", 3600, "Give up (and fail) after this long.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the fault order and positions.", flag_values=fv)
    flags.DEFINE_string("work_dir", None, "Where the runs go (default: a temp dir, removed after a pass).",
                        flag_values=fv)
    flags.DEFINE_string("data_dir", None, "Fashion-MNIST directory (the four idx .gz files); default: the "
                        "checkout's tests/fixtures/fashion_mnist.", flag_values=fv)
    define_verbose_flag(fv)


def plan_rounds(kills: int, preemptions: int, rng: random.Random) -> List[List[str]]:
    """The faults of each round: kills spread evenly over :data:`KILL_PHASES` (the first phases
    get the remainder), ``preemptions`` on top; at most one fault of each kind per round, the
    training faults in random order, ``export`` last."""
    quota = {p: kills // len(KILL_PHASES) + (i < kills % len(KILL_PHASES)) for i, p in enumerate(KILL_PHASES)}
    quota["preemption"] = preemptions
    rounds = []
    for r in range(max(quota.values(), default=0)):
        training = [p for p in ("step", "checkpoint", "preemption") if r < quota[p]]
        rng.shuffle(training)
        rounds.append(training + (["export"] if r < quota["export"] else []))
    return rounds


def fault_env(phase: str, done_steps: int, total_steps: int, training_faults_left: int,
              rng: random.Random) -> str:
    """``HAC_FAULT_AT`` for a process that resumes after ``done_steps``: the fault lands within
    the first 1/``training_faults_left`` of the remaining steps or checkpoint writes (room for
    the faults after it); a step kill comes after at least one step of this process."""
    remaining = total_steps - done_steps
    span = max(1, remaining // max(1, training_faults_left))
    if phase == "export":
        return "export:1"
    if phase == "checkpoint":
        upcoming = [s for s in range(done_steps + 1, total_steps + 1) if s % CHECKPOINT_EVERY == 0 or s == total_steps]
        writes = max(1, min(len(upcoming), -(-len(upcoming) // max(1, training_faults_left))))
        return f"checkpoint:{rng.randint(1, writes)}"
    if phase == "preemption":  # SIGTERM before step n; step n must still run and be checkpointed
        return f"step:{rng.randint(1, span)}:TERM"
    # kill -9 before step n, n >= 2: at least one step of this process ran since its restore
    return f"step:{rng.randint(min(2, remaining), min(span + 1, remaining))}"


def drilled_run(model_dir: str, overrides: Sequence[str]) -> int:
    """The drilled process: train (resuming), export, save the final weights as ``final.npz``."""
    import numpy as np

    from hac_tf.export import export_backbone
    from hac_tf.training.config import load_config
    from hac_tf.training.preemption import TrainingPreempted
    from hac_tf.training.trainer import Trainer

    config = load_config(None, list(overrides))
    trainer = Trainer(config, model_dir)
    try:
        trainer.train()
    except TrainingPreempted as e:
        print(e, file=sys.stderr, flush=True)
        return PREEMPTED_EXIT_CODE
    export_backbone(trainer.model, config, os.path.join(model_dir, "export", EXPORT_NAME),
                    step=int(trainer.global_step.numpy()), write_config=False)
    np.savez(os.path.join(model_dir, "final.npz"), *[v.numpy() for v in trainer.model.variables])
    return 0


@dataclasses.dataclass
class Outcome:
    returncode: int
    output: str


def _run(model_dir: str, overrides: Sequence[str], fault: Optional[str], timeout: float) -> Outcome:
    env = {k: v for k, v in os.environ.items() if k != "HAC_FAULT_AT"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if fault:
        env["HAC_FAULT_AT"] = fault
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, model_dir, *overrides], env=env, capture_output=True,
                           text=True, timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired as e:
        return Outcome(-1, f"timed out after {timeout:.0f} s\n{e.stderr or ''}")
    return Outcome(r.returncode, r.stdout + r.stderr)


def _latest_step(model_dir: str):
    """(step, prefix) of the checkpoint the state file names; (0, None) if none."""
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return (int(path.rsplit("-", 1)[-1]), path) if path else (0, None)


def _resume_step(model_dir: str):
    """(step, prefix) of the checkpoint a restart resumes from: the newest intact one, whether the
    state file names it or not (a kill inside the checkpoint write, after its files are complete
    but before the state file names it, leaves a checkpoint the trainer resumes from,
    hac_tf/training/checkpoint_integrity.py); (0, None) if none."""
    from hac_tf.training.checkpoint_integrity import candidate_prefixes, verify_checkpoint

    directory = os.path.join(model_dir, "checkpoints")
    for step, prefix in candidate_prefixes(directory) if os.path.isdir(directory) else []:
        if verify_checkpoint(prefix) is None:
            return step, prefix
    return 0, None


def check_state(model_dir: str) -> str:
    """'' if the named checkpoint verifies and every visible export version is complete, else why."""
    from hac_tf.training.checkpoint_integrity import verify_checkpoint

    _, prefix = _latest_step(model_dir)
    if prefix:
        reason = verify_checkpoint(prefix)
        if reason:
            return f"latest checkpoint {prefix} damaged: {reason}"
    base = os.path.join(model_dir, "export", EXPORT_NAME)
    for v in sorted(d for d in (os.listdir(base) if os.path.isdir(base) else []) if d.isdigit()):
        for needed in ("saved_model.pb", "variables/variables.index", "hac_tf_metadata.json"):
            if not os.path.exists(os.path.join(base, v, needed)):
                return f"half-written export version {v} is visible (no {needed})"
    return ""


def _max_abs_diff(a_path: str, b_path: str) -> float:
    import numpy as np

    a, b = np.load(a_path), np.load(b_path)
    if len(a.files) != len(b.files):
        return float("inf")
    return max(float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()) for k in a.files)


def main(argv: List[str]) -> int:
    """Runs the drill of the parsed flags; 0 if every fault was survived and every phase got its share."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    data_dir = f.data_dir or _FIXTURE
    if not os.path.isdir(data_dir):
        print(f"error: --data_dir {data_dir} does not exist (a directory with Fashion-MNIST's four idx .gz files)",
              file=sys.stderr)
        return 2
    overrides = [f"data.data_dir={data_dir}", *DRILL_OVERRIDES, f"train.max_steps={f.steps}"]
    rng = random.Random(f.seed)
    rounds = plan_rounds(f.kills, f.preemptions, rng)
    asked = {p: sum(r.count(p) for r in rounds) for p in PHASES}
    work = f.work_dir or tempfile.mkdtemp(prefix="fault_drill_")
    os.makedirs(work, exist_ok=True)
    t0 = time.time()

    def left() -> float:
        return f.max_seconds - (time.time() - t0)

    print(f"work dir {work}; plan {json.dumps(asked)} in {len(rounds)} round(s); uninterrupted reference run ...",
          flush=True)
    ref_dir = os.path.join(work, "reference")
    ref = _run(ref_dir, overrides, None, left())
    if ref.returncode != 0:
        print(f"reference run failed ({ref.returncode}):\n{ref.output[-3000:]}", file=sys.stderr)
        return 1
    by_phase = {p: 0 for p in PHASES}
    failures: List[str] = []
    worst = 0.0
    for number, faults in enumerate(rounds, 1):
        run_dir = os.path.join(work, f"round{number}")
        pending = list(faults)
        while True:
            if left() <= 0:
                failures.append("time budget exhausted")
                break
            before, _ = _resume_step(run_dir)
            phase = pending[0] if pending else None
            training_left = len([p for p in pending if p != "export"])
            fault = fault_env(phase, before, f.steps, training_left, rng) if phase else None
            outcome = _run(run_dir, overrides, fault, left())
            after, prefix = _resume_step(run_dir)
            if phase is None:  # the completing run
                if outcome.returncode != 0:
                    failures.append(f"round {number}: the completing run failed ({outcome.returncode})")
                    print(outcome.output[-3000:], file=sys.stderr)
                    break
                diff = _max_abs_diff(os.path.join(ref_dir, "final.npz"), os.path.join(run_dir, "final.npz"))
                worst = max(worst, diff)
                same = diff <= 0.0
                problem = check_state(run_dir)
                print(f"round {number} completed: final weights vs uninterrupted run max |diff| = {diff:.2e} "
                      f"({'identical' if same else 'DIFFERENT'}){'; ' + problem if problem else ''}", flush=True)
                if not same:
                    failures.append(f"round {number}: final weights differ by {diff}")
                if problem:
                    failures.append(f"round {number}: {problem}")
                break
            expected = PREEMPTED_EXIT_CODE if phase == "preemption" else -signal.SIGKILL
            if outcome.returncode != expected:
                failures.append(f"round {number}: {phase} fault {fault} gave exit {outcome.returncode}, "
                                f"expected {expected}")
                print(outcome.output[-3000:], file=sys.stderr)
                break
            pending.pop(0)
            by_phase[phase] += 1
            problem = check_state(run_dir)
            if phase == "preemption":
                ran_to = before + int(fault.split(":")[1])
                if after != ran_to:
                    problem = problem or f"preempted during step {ran_to} but the latest checkpoint is step {after}"
            print(f"round {number} {phase:10s} ({fault}): exit {outcome.returncode}, checkpoint step {before} -> "
                  f"{after} ({'intact' if not problem else 'LOST: ' + problem}), visible exports ok", flush=True)
            if problem:
                failures.append(f"round {number}: after {phase} fault: {problem}")
                break
    short = [f"{p}: {by_phase[p]} of {asked[p]}" for p in PHASES if by_phase[p] < asked[p]]
    if short and not failures:
        failures.append("phases with fewer faults than asked: " + ", ".join(short))
    kills = sum(by_phase[p] for p in KILL_PHASES)
    summary = {"kills": kills, "preemptions": by_phase["preemption"], "by_phase": by_phase, "asked": asked,
               "rounds": len(rounds), "survived": sum(by_phase.values()) if not failures else None,
               "max_abs_weight_diff": worst, "failures": failures, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(summary), flush=True)
    if not f.work_dir and not failures:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not failures else 1


def run() -> None:
    """Console script ``hac-fault-drill``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
