"""Label checks shared by every probe: evaluation needs labelled examples with labels in range.

Sources mark unlabelled examples with label ``-1`` (e.g. TFDS ``stl10``'s ``unlabelled`` split,
so ``train+unlabelled`` mixes 5000 labelled with 100000 unlabelled images). A softmax probe would
index the last class with ``-1`` and a kNN vote would fail, so every probe refuses such labels
with an error that names the split and the label key, before any fitting.
"""

from __future__ import annotations

import numpy as np

__all__ = ["UNLABELLED", "LabelError", "check_labels"]

#: The label value sources give to unlabelled examples.
UNLABELLED = -1


class LabelError(ValueError):
    """Labels that a probe cannot use: unlabelled (-1), negative, >= num_classes, or not integers."""


def _examples(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (", ..." if values.size > limit else "")


def check_labels(
    labels,
    num_classes: int | None = None,
    *,
    split: str = "train",
    key: str = "label",
    hint: str = "",
) -> np.ndarray:
    """Return ``labels`` as int64 ``[N]`` after checking that every one is a usable class id.

    Args:
      labels: integer labels ``[N]`` (any int dtype, or floats holding whole numbers).
      num_classes: when known (> 0), labels must be ``< num_classes``; ``None`` or ``<= 0``:
        only the lower bound is checked.
      split: the split the labels come from, for the message (e.g. ``"train+unlabelled"``).
      key: the label key, for the message (e.g. ``"garment"``).
      hint: what to do about it, appended to the message (e.g. ``"set data.eval_train_split"``).

    Raises:
      LabelError: for label ``-1`` (unlabelled examples), any other negative label, a label
        ``>= num_classes``, or non-integer values. The message names ``split``, ``key``, how many
        examples are affected and the offending values.
    """
    y = np.asarray(labels).reshape(-1)
    advice = f"; {hint}" if hint else ""
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.equal(np.mod(y, 1), 0)):
            raise LabelError(f"split {split!r} has non-integer labels for key {key!r}{advice}")
    y = y.astype(np.int64)
    unlabelled = int(np.count_nonzero(y == UNLABELLED))
    if unlabelled:
        raise LabelError(
            f"split {split!r} has {unlabelled} examples with label {UNLABELLED} for key {key!r} "
            f"(unlabelled); evaluate on a labelled split" + (f": {hint}" if hint else ""))
    negative = y < 0
    if negative.any():
        raise LabelError(f"split {split!r} has {int(negative.sum())} examples with negative labels "
                         f"for key {key!r} ({_examples(np.unique(y[negative]))}){advice}")
    if num_classes is not None and num_classes > 0:
        high = y >= num_classes
        if high.any():
            raise LabelError(
                f"split {split!r} has {int(high.sum())} examples with labels >= num_classes="
                f"{num_classes} for key {key!r} ({_examples(np.unique(y[high]))}){advice}")
    return y
