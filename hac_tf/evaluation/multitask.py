"""Multi-task probe: a linear probe (and optionally kNN) for every (feature, label) pair.

With the coloured Fashion-MNIST source (labels ``garment`` and ``colour``) and an encoder exposing
``stage1..stage4`` and ``embedding``, the result shows at which depth each attribute is still
linearly decodable, which is what hierarchical augmentation invariance is meant to change: an
invariant-to-colour final embedding should lose ``colour`` while earlier stages keep it.

Features are extracted once (`extract_features`) and reused by every probe.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from hac_tf.evaluation.knn import knn_accuracy
from hac_tf.evaluation.labels import check_labels
from hac_tf.evaluation.linear import linear_probe

__all__ = ["KNN_SUFFIX", "multi_task_probe"]

#: kNN results appear in the same inner dict under ``f"{label_key}{KNN_SUFFIX}"``.
KNN_SUFFIX = "/knn"


def multi_task_probe(
    features_train: Mapping[str, np.ndarray],
    labels_train: Mapping[str, np.ndarray],
    features_test: Mapping[str, np.ndarray],
    labels_test: Mapping[str, np.ndarray],
    label_keys: Sequence[str] = ("garment", "colour"),
    feature_names: Sequence[str] | None = None,
    with_knn: bool = False,
    num_classes: int | Mapping[str, int] | None = None,
    knn_k: int = 200,
    knn_temperature: float = 0.1,
    probe_kwargs: Mapping | None = None,
    return_details: bool = False,
    split_names: tuple[str, str] = ("train", "test"),
):
    """Probe every ``(feature_name, label_key)`` pair.

    Args:
      features_train / features_test: ``{feature_name: float [N, D]}`` (from `extract_features`).
      labels_train / labels_test: ``{label_key: int [N]}``.
      label_keys: labels to probe (a single string is accepted).
      feature_names: features to probe; all of ``features_train`` (in its order) if None.
      with_knn: also run `knn_accuracy` (k=``knn_k``, tau=``knn_temperature``).
      num_classes: int for every label, a ``{label_key: int}`` dict, or None to infer.
      probe_kwargs: extra keyword arguments for `linear_probe` (e.g. ``weight_decay``,
        ``max_train``, ``epochs``, ``seed``).
      return_details: also return ``{feature: {label: linear_probe result dict}}``.
      split_names: the (train, test) split names, for error messages.

    Raises:
      LabelError (a ValueError): some label of ``label_keys`` is -1 (unlabelled), negative or
        ``>= num_classes`` (when given); every label is checked before the first probe, and
        the message names the split and the key.

    Returns:
      ``{feature_name: {label_key: linear-probe test accuracy}}``; with ``with_knn`` each inner
      dict also has ``f"{label_key}/knn"``. With ``return_details``: ``(results, details)``.
    """
    if isinstance(label_keys, str):
        label_keys = (label_keys,)
    names = list(features_train) if feature_names is None else list(feature_names)
    for name in names:
        for where, feats in (("features_train", features_train), ("features_test", features_test)):
            if name not in feats:
                raise KeyError(f"{where} has {sorted(feats)}, not feature {name!r}")
    for key in label_keys:
        for where, labels in (("labels_train", labels_train), ("labels_test", labels_test)):
            if key not in labels:
                raise KeyError(f"{where} has {sorted(labels)}, not label {key!r}")
    probe_kwargs = dict(probe_kwargs or {})

    def known_classes(key: str) -> int | None:
        if isinstance(num_classes, Mapping):
            return int(num_classes[key]) if key in num_classes else None
        return None if num_classes is None else int(num_classes)

    for key in label_keys:  # all labels first: no probe runs on a run that will fail later
        for split, labels in zip(split_names, (labels_train, labels_test)):
            check_labels(labels[key], known_classes(key), split=split, key=key)

    def classes_for(key: str) -> int:
        known = known_classes(key)
        if known is not None:
            return known
        return int(max(np.max(labels_train[key]), np.max(labels_test[key]))) + 1

    results: dict[str, dict[str, float]] = {}
    details: dict[str, dict[str, dict]] = {}
    for name in names:
        results[name], details[name] = {}, {}
        for key in label_keys:
            t0 = time.perf_counter()
            c = classes_for(key)
            probe = linear_probe(features_train[name], labels_train[key], features_test[name],
                                 labels_test[key], num_classes=c, label_key=key,
                                 split_names=split_names, **probe_kwargs)
            results[name][key] = float(probe["test_acc"])
            details[name][key] = probe
            if with_knn:
                acc = knn_accuracy(features_train[name], labels_train[key], features_test[name],
                                   labels_test[key], num_classes=c, k=knn_k,
                                   temperature=knn_temperature, label_key=key,
                                   split_names=split_names)
                results[name][key + KNN_SUFFIX] = acc
                probe["knn_acc"] = acc
            logging.info("multi_task_probe %s/%s: %s (%.1f s)", name, key,
                         {k: round(v, 4) for k, v in results[name].items() if k.startswith(key)},
                         time.perf_counter() - t0)
    if return_details:
        return results, details
    return results
