"""Fault drill: SIGKILL a training run at random moments, restart the same command, repeat.

Every restart must resume from the last *complete* checkpoint (a half-written one is never
picked up), the export at the end must never be seen half-written, and the final weights must
equal those of an uninterrupted run of the same config (deterministic ops).

  python tools/fault_drill.py --kills=10            # ~6-10 min on 2 cores
  python tools/fault_drill.py --kills=3 --max_seconds=300

Prints one line per kill (when, at which checkpoint it resumed) and a summary; exits 1 on any
mismatch. The run is the tiny real config of tests/training/tiny.py on the fixture images.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "training"))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("kills", 10, "How many SIGKILLs to deliver.")
flags.DEFINE_integer("steps", 24, "Training steps of the drilled run.")
flags.DEFINE_float("max_seconds", 1200, "Give up (and fail) after this long.")
flags.DEFINE_integer("seed", 0, "Seed of the kill times.")
flags.DEFINE_string("work_dir", None, "Where the runs go (default: a temp dir, removed afterwards).")

RUNNER = r"""
import sys, numpy as np
from hac_tf.training.config import load_config
from hac_tf.training.trainer import Trainer
from hac_tf.export import export_backbone
model_dir = sys.argv[1]
config = load_config(None, sys.argv[2:])
trainer = Trainer(config, model_dir)
trainer.train()
print("TRAINED", flush=True)
export_backbone(trainer.model, config, model_dir + "/export/tiny", step=int(trainer.global_step.numpy()))
np.savez(model_dir + "/final.npz", *[v.numpy() for v in trainer.model.variables])
print("DONE", flush=True)
"""


def _overrides(steps: int) -> List[str]:
    from tiny import tiny_overrides

    return tiny_overrides("model.method=moco", f"train.max_steps={steps}", "train.checkpoint_every_steps=2",
                          "train.deterministic_ops=true", "model.moco_queue_size=32")


def _start(model_dir: str, steps: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("HAC_TF_KILL_AFTER_STEP", None)
    return subprocess.Popen([sys.executable, "-c", RUNNER, model_dir, *_overrides(steps)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _latest_step(model_dir: str) -> int:
    state = os.path.join(model_dir, "checkpoints", "checkpoint")
    if not os.path.exists(state):
        return 0
    with open(state) as f:
        first = f.readline()
    return int(first.split("ckpt-")[-1].strip().strip('"'))


def _check_export(model_dir: str) -> str:
    """Only complete numeric versions may exist under export/tiny (temp dirs are allowed)."""
    base = os.path.join(model_dir, "export", "tiny")
    if not os.path.isdir(base):
        return "none"
    versions = [d for d in os.listdir(base) if d.isdigit()]
    for v in versions:
        if not os.path.exists(os.path.join(base, v, "saved_model.pb")):
            raise AssertionError(f"half-written export version {v} is visible")
    return ",".join(sorted(versions)) or "none"


def main(argv: List[str]) -> int:
    del argv
    import numpy as np

    rng = random.Random(FLAGS.seed)
    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="fault_drill_")
    t0 = time.time()
    print(f"work dir {work}; uninterrupted reference run ...", flush=True)
    ref = _start(os.path.join(work, "reference"), FLAGS.steps)
    out, _ = ref.communicate(timeout=FLAGS.max_seconds)
    if ref.returncode != 0:
        print(out[-3000:])
        return 1
    ref_time = time.time() - t0
    print(f"reference done in {ref_time:.0f}s", flush=True)

    drilled = os.path.join(work, "drilled")
    kills = survived = 0
    while True:
        if time.time() - t0 > FLAGS.max_seconds:
            print("time budget exhausted", flush=True)
            return 1
        before = _latest_step(drilled)
        proc = _start(drilled, FLAGS.steps)
        if kills < FLAGS.kills:
            delay = rng.uniform(0.3, 1.0) * ref_time
            try:
                out, _ = proc.communicate(timeout=delay)
                finished = True
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                out, _ = proc.communicate()
                finished = False
            if not finished:
                kills += 1
                after = _latest_step(drilled)
                exports = _check_export(drilled)
                phase = "export" if "TRAINED" in out else "training"
                print(f"kill {kills:2d} after {delay:5.1f}s during {phase:8s}: checkpoint step {before} -> {after}, "
                      f"visible exports: {exports}", flush=True)
                survived += 1
                continue
        else:
            out, _ = proc.communicate(timeout=FLAGS.max_seconds)
        if proc.returncode != 0:
            print(out[-3000:])
            return 1
        break

    a = np.load(os.path.join(work, "reference", "final.npz"))
    b = np.load(os.path.join(drilled, "final.npz"))
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a.files)
    ok = worst <= 1e-5 and len(a.files) == len(b.files)
    _check_export(drilled)
    summary = {"kills": kills, "survived": survived if ok else 0, "max_weight_diff": worst,
               "seconds": round(time.time() - t0, 1)}
    print(json.dumps(summary), flush=True)
    if not FLAGS.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
