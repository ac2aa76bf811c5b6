"""The kNN monitor of a training run (``train.knn_every_steps``).

Every ``train.knn_every_steps`` optimizer steps the chief measures the weighted kNN accuracy
(`hac_tf.evaluation.knn_accuracy`, k = ``eval.knn_k``, temperature ``eval.knn_temperature``) of
the current ``embedding`` for the label ``data.knn_label``, on a fixed labelled subset:

* memory: the first ``eval.knn_max_train`` examples of the evaluation train split, queries: the
  first ``eval.knn_max_test`` of the test split (`hac_tf.training.builders.eval_source`, so
  ``data.eval_train_split`` / ``data.eval_data_dir`` apply as for the final evaluation);
* the subset is read once, before the first step, and kept in memory as uint8
  (``(knn_max_train + knn_max_test) * H * W * 3`` bytes: 37 MB at the defaults and 32 px); its
  labels are checked then, so unlabelled data fails before training, naming the split and key.

Cost of one call: one forward pass of the encoder over ``knn_max_train + knn_max_test`` images
(batches of 256) plus a ``[knn_max_test, knn_max_train]`` similarity product; at the defaults
that is a few training steps' worth of compute. Nothing is computed between calls.

The Trainer writes the result as ``knn/<data.knn_label>`` to TensorBoard (``<model_dir>/train``)
and ``metrics.jsonl`` at those steps (`Trainer.train(knn_monitor=...)`).
"""

from __future__ import annotations

from typing import Callable, Dict

from hac_tf.evaluation import KNNMonitor
from hac_tf.training import builders
from hac_tf.training.config import ExperimentConfig
from hac_tf.training.eval_data import eval_split_names, label_hint

__all__ = ["TrainingKnnMonitor"]


class TrainingKnnMonitor:
    """`KNNMonitor` on the embedding for ``data.knn_label``; `evaluate` gives ``{label: acc}``.

    Construction opens the evaluation sources; `prepare` reads the subset into memory and checks
    its labels (call it before training).
    """

    def __init__(self, config: ExperimentConfig):
        e = config.eval
        self.label = config.data.knn_label
        train_src, train_info = builders.eval_source(config, "train", e.knn_max_train)
        test_src, test_info = builders.eval_source(config, "test", e.knn_max_test)
        names = eval_split_names(config)
        known = max(train_info.num_classes.get(self.label, -1),
                    test_info.num_classes.get(self.label, -1))
        self.monitor = KNNMonitor(
            train_src, test_src, label_key=self.label, k=e.knn_k, temperature=e.knn_temperature,
            max_train=e.knn_max_train, max_test=e.knn_max_test, feature_name="embedding",
            num_classes={self.label: known} if known > 0 else None,
            split_names=(names["train"], names["test"]),
            label_hints=(label_hint(config, "train"), label_hint(config, "test")))

    def prepare(self) -> None:
        """Read the fixed subset and check its labels (LabelError names the split and key)."""
        self.monitor.prepare()

    def evaluate(self, encoder_fn: Callable) -> Dict[str, float]:
        """kNN top-1 accuracy in [0, 1] of ``encoder_fn``'s embedding: ``{data.knn_label: acc}``."""
        return {self.label: self.monitor.evaluate(encoder_fn)["knn_acc"]}
