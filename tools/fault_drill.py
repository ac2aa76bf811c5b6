"""Fault drill: SIGKILL a training run at random moments, restart the same command, repeat.

Each round kills the run once in each of three phases, in turn, at a random moment within the
phase, then lets it complete:

* ``step``: an external ``kill -9`` at a random time while steps run;
* ``checkpoint``: ``kill -9`` from a timer started when a checkpoint write begins, after a random
  0-80 ms (inside the data/index/state writes, or just after them);
* ``export``: an external ``kill -9`` at a random time while the SavedModel is being written.

After every kill it checks that the latest checkpoint named by the state file is complete
(every tensor readable) and that no half-written export version is visible, then restarts the
same command. When a run completes, its final weights must equal those of an uninterrupted
reference run (deterministic ops; MoCo, so the queue and momentum encoder are in the checkpoint
too). Rounds (fresh run directories) repeat until ``--kills`` kills were delivered.

  python tools/fault_drill.py --kills=12            # ~10-15 min on 2 cores
  python tools/fault_drill.py --kills=3 --max_seconds=300

Prints one line per kill and a JSON summary; exits 1 on any lost or corrupted state. The run is
the tiny real config of tests/training/tiny.py on the committed Fashion-MNIST fixture.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "training"))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("kills", 12, "How many SIGKILLs to deliver in total.")
flags.DEFINE_integer("steps", 40, "Training steps of the drilled run.")
flags.DEFINE_float("max_seconds", 1800, "Give up (and fail) after this long.")
flags.DEFINE_integer("seed", 0, "Seed of the kill phases and times.")
flags.DEFINE_string("work_dir", None, "Where the runs go (default: a temp dir, removed afterwards).")

CHECKPOINT_EVERY = 2
PHASES = ("step", "checkpoint", "export")
RUNNER = r"""
import sys, time, numpy as np
from hac_tf.training.config import load_config
from hac_tf.training.trainer import Trainer
from hac_tf.export import export_backbone
model_dir = sys.argv[1]
config = load_config(None, sys.argv[2:])
trainer = Trainer(config, model_dir)
trainer.train()
print("TRAINED", time.time(), flush=True)
export_backbone(trainer.model, config, model_dir + "/export/tiny", step=int(trainer.global_step.numpy()))
np.savez(model_dir + "/final.npz", *[v.numpy() for v in trainer.model.variables])
print("DONE", flush=True)
"""


def _overrides(steps: int) -> List[str]:
    from tiny import tiny_overrides

    return tiny_overrides("model.method=moco", f"train.max_steps={steps}",
                          f"train.checkpoint_every_steps={CHECKPOINT_EVERY}", "train.deterministic_ops=true",
                          "model.moco_queue_size=32", "train.image_summary_every_steps=0")


class Run:
    """One training process with its merged output read line by line in a thread."""

    def __init__(self, model_dir: str, steps: int, env_extra: Optional[dict] = None) -> None:
        env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", RUNNER, model_dir, *_overrides(steps)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: "queue.Queue[Tuple[float, str]]" = queue.Queue()
        self.output: List[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put((time.time(), line))
        self.lines.put((time.time(), ""))

    def wait_for(self, marker: str, timeout: float) -> Optional[float]:
        """Time the first line containing ``marker`` appeared; None if the process ended first."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                t, line = self.lines.get(timeout=max(0.01, end - time.time()))
            except queue.Empty:
                break
            if line == "" and self.proc.poll() is not None:
                return None
            if marker in line:
                return t
        return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def _latest(model_dir: str) -> Tuple[int, Optional[str]]:
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return (int(path.rsplit("-", 1)[-1]), path) if path else (0, None)


def _check_checkpoint(path: Optional[str]) -> None:
    """Every tensor of the checkpoint the state file names must be readable."""
    import tensorflow as tf

    if path is None:
        return
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)


def _check_export(model_dir: str) -> List[int]:
    """Only complete numeric versions may exist under export/tiny (temp dirs are allowed)."""
    base = os.path.join(model_dir, "export", "tiny")
    if not os.path.isdir(base):
        return []
    versions = sorted(int(d) for d in os.listdir(base) if d.isdigit())
    for v in versions:
        for needed in ("saved_model.pb", "variables/variables.index", "hac_tf_metadata.json"):
            if not os.path.exists(os.path.join(base, str(v), needed)):
                raise AssertionError(f"half-written export version {v} is visible (no {needed})")
    return versions


def _reference(work: str, steps: int, budget: float) -> Tuple[str, float, float]:
    """Runs the uninterrupted reference; returns (dir, seconds per step, export seconds)."""
    ref_dir = os.path.join(work, "reference")
    run = Run(ref_dir, steps)
    first = run.wait_for("| loss", budget)
    trained = run.wait_for("TRAINED", budget)
    done = run.wait_for("DONE", budget)
    run.proc.wait()
    if first is None or trained is None or done is None or run.proc.returncode != 0:
        raise RuntimeError("reference run failed:\n" + "".join(run.output)[-3000:])
    return ref_dir, (trained - first) / max(1, steps - 1), done - trained


def main(argv: List[str]) -> int:
    del argv
    import numpy as np

    rng = random.Random(FLAGS.seed)
    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="fault_drill_")
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    print(f"work dir {work}; uninterrupted reference run ...", flush=True)
    ref_dir, step_time, export_time = _reference(work, FLAGS.steps, FLAGS.max_seconds)
    print(f"reference: {step_time:.2f}s per step, export {export_time:.1f}s", flush=True)
    reference = np.load(os.path.join(ref_dir, "final.npz"))

    kills, rounds, failures = 0, 0, []
    by_phase = {"step": 0, "checkpoint": 0, "export": 0}
    while kills < FLAGS.kills:
        rounds += 1
        drilled = os.path.join(work, f"round{rounds}")
        round_kills = 0
        while True:  # restart the same command until the run completes
            if time.time() - t0 > FLAGS.max_seconds:
                print("time budget exhausted", flush=True)
                return 1
            before, _ = _latest(drilled)
            # each round: one kill per phase, in order, each at a random moment within its phase;
            # then the run is left to complete and compared with the reference
            phase = PHASES[round_kills] if round_kills < len(PHASES) and kills < FLAGS.kills else None
            env = {}
            if phase == "checkpoint":
                upcoming = [s for s in range(before + 1, FLAGS.steps + 1)
                            if s % CHECKPOINT_EVERY == 0 or s == FLAGS.steps]
                if not upcoming:
                    phase = "export"
                else:
                    env = {"HAC_TF_KILL_DURING_SAVE": str(rng.choice(upcoming)),
                           "HAC_TF_KILL_DURING_SAVE_DELAY": f"{rng.uniform(0.0, 0.08):.4f}"}
            run = Run(drilled, FLAGS.steps, env)
            killed = False
            if phase == "step":
                first = run.wait_for("| loss", 300)  # first progress line: steps are running
                if first is not None:
                    time.sleep(rng.uniform(0.0, 0.9) * (FLAGS.steps - before - 1) * step_time)
                    killed = run.proc.poll() is None
                    if killed:
                        run.kill()
                        if any(line.startswith("TRAINED") for line in run.output):
                            phase = "export"  # training had finished: the kill hit the export
            elif phase == "export":
                if run.wait_for("TRAINED", 300) is not None:
                    time.sleep(rng.uniform(0.0, 1.0) * export_time)
                    killed = run.proc.poll() is None
                    if killed:
                        run.kill()
            run.proc.wait()
            if phase == "checkpoint":
                killed = run.proc.returncode == -signal.SIGKILL
            if killed:
                kills += 1
                round_kills += 1
                by_phase[phase] += 1
                after, path = _latest(drilled)
                try:
                    _check_checkpoint(path)
                    exports = _check_export(drilled)
                except Exception as e:  # noqa: BLE001 - any unreadable state is a failure
                    failures.append(f"kill {kills}: {e}")
                    print(f"kill {kills:2d} ({phase}): CORRUPTED: {e}", flush=True)
                    break
                print(f"kill {kills:2d} round {rounds} during {phase:10s}: checkpoint step {before} -> {after} "
                      f"(readable), visible exports {exports or 'none'}", flush=True)
                continue
            if run.proc.returncode != 0:
                failures.append(f"round {rounds}: run failed with {run.proc.returncode}")
                print("".join(run.output)[-3000:], flush=True)
                break
            final = np.load(os.path.join(drilled, "final.npz"))
            worst = max(float(np.abs(reference[k] - final[k]).max()) for k in reference.files)
            same = worst <= 1e-5 and len(reference.files) == len(final.files)
            _check_export(drilled)
            print(f"round {rounds} completed: final weights vs uninterrupted run max |diff| = {worst:.2e} "
                  f"({'equal' if same else 'DIFFERENT'})", flush=True)
            if not same:
                failures.append(f"round {rounds}: weights differ by {worst}")
            break

    summary = {"kills": kills, "by_phase": by_phase, "rounds": rounds, "failures": failures,
               "survived": kills if not failures else kills - len(failures), "seconds": round(time.time() - t0, 1)}
    print(json.dumps(summary), flush=True)
    if not FLAGS.work_dir and not failures:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not failures else 1


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
