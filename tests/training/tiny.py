"""A tiny but real experiment config shared by the training tests (coloured Fashion-MNIST fixture)."""

import os
import subprocess
import sys

FIXTURE_FMNIST = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "fashion_mnist")

TINY = [
    f"data.data_dir={FIXTURE_FMNIST}",
    "data.batch_size=16",
    "data.shuffle_buffer=64",
    "augment.num_levels=2",
    "model.level_depths=[1,2]",
    "model.width_multiplier=0.125",
    "model.embed_dim=16",
    "model.projector_hidden_dim=32",
    "model.projector_out_dim=16",
    "train.log_every_steps=1",
    "train.checkpoint_every_steps=2",
    "eval.probe_max_train=64",
    "eval.probe_max_test=32",
    "eval.knn_max_train=64",
    "eval.knn_max_test=32",
    "export.enabled=false",
]


def tiny_overrides(*extra: str) -> list:
    return TINY + list(extra)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_train(model_dir, overrides, mode="train", env_extra=None, preexec_fn=None, timeout=600):
    """Runs ``tools/train.py`` in a fresh process (real exit codes, real kills) and returns the
    CompletedProcess with text stdout/stderr."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    args = [sys.executable, f"{REPO}/tools/train.py", f"--model_dir={model_dir}", f"--mode={mode}"]
    args += [f"--params_override={o}" for o in overrides]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)
