"""Which labelled data evaluation reads, decided from the config alone (no data is read).

`run_experiment` (hac_tf/training/run.py) calls `evaluation_skip_reason` and `check_eval_config`
before training starts, so a config whose evaluation cannot work fails in seconds instead of
after the whole run; the labels themselves are checked again after feature extraction
(`hac_tf.evaluation.check_labels`), which catches what names cannot tell.

Rules:

* evaluation reads ``data.eval_data_dir`` (a labelled image folder, its ``train``/``test``
  splits) when set, else the training source's ``data.eval_train_split`` (falling back to
  ``data.train_split``) and ``data.test_split`` (the same choice as
  `hac_tf.training.builders.eval_source`);
* a split expression naming an unlabelled split (TFDS ``stl10``'s ``unlabelled``, e.g.
  ``train+unlabelled``) is refused: its examples carry label -1;
* ``data.labels: none`` (an unlabelled image folder) without ``data.eval_data_dir`` has nothing
  to evaluate on: evaluation (and the kNN monitor) is skipped with a notice; the export still
  happens.
"""

from __future__ import annotations

import re
from typing import Dict, Optional

from hac_tf.training.config import ConfigError, ExperimentConfig

__all__ = ["UNLABELLED_SPLITS", "check_eval_config", "eval_split_names", "evaluation_skip_reason",
           "label_hint", "unlabelled_parts"]

#: Split names whose examples have no labels (label -1), in TFDS's spellings.
UNLABELLED_SPLITS = frozenset({"unlabelled", "unlabeled"})


def unlabelled_parts(split: str) -> list:
    """The parts of a split expression (``"a+b[:10%]"``) that name an unlabelled split."""
    parts = [re.sub(r"\[.*\]$", "", p.strip()) for p in split.split("+")]
    return [p for p in parts if p.lower() in UNLABELLED_SPLITS]


def eval_split_names(c: ExperimentConfig) -> Dict[str, str]:
    """``{"train": ..., "test": ...}``: the splits evaluation reads, as error messages name them.

    With ``data.eval_data_dir``: ``"<dir>:train"`` / ``"<dir>:test"``.
    """
    if c.data.eval_data_dir:
        return {role: f"{c.data.eval_data_dir}:{role}" for role in ("train", "test")}
    return {"train": c.data.eval_train_split or c.data.train_split, "test": c.data.test_split}


def label_hint(c: ExperimentConfig, role: str) -> str:
    """What to change when the ``role`` ("train"/"test") split of evaluation has unusable labels."""
    if c.data.eval_data_dir:
        return (f"data.eval_data_dir={c.data.eval_data_dir!r} must hold a labelled image folder "
                f"(class sub-folders under {role}/)")
    if role == "train":
        return ("set data.eval_train_split to a labelled split (the probes and the kNN memory are "
                "fitted on it), e.g. data.eval_train_split=train")
    return "set data.test_split to a labelled split"


def evaluation_skip_reason(c: ExperimentConfig) -> Optional[str]:
    """A one-line notice when the config has no labelled data to evaluate on, else None."""
    if c.data.labels == "none" and not c.data.eval_data_dir:
        return ("evaluation skipped: data.labels=none (unlabelled images) and no "
                "data.eval_data_dir (a labelled image folder to evaluate on)")
    return None


def check_eval_config(c: ExperimentConfig) -> None:
    """Raise ConfigError when evaluation would read unlabelled splits (checked by name only).

    Call it before training; a config whose evaluation is skipped (`evaluation_skip_reason`)
    passes.
    """
    if evaluation_skip_reason(c) or c.data.eval_data_dir:
        return
    names = eval_split_names(c)
    for role, key in (("train", "data.eval_train_split" if c.data.eval_train_split else "data.train_split"),
                      ("test", "data.test_split")):
        bad = unlabelled_parts(names[role])
        if bad:
            raise ConfigError(
                f"{key}={names[role]!r} includes the unlabelled split {bad[0]!r} (label -1) and "
                f"evaluation needs labelled examples: {label_hint(c, role)}")
