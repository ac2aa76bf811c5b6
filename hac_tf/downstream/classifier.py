"""Image classification on an exported backbone (Keras 3): linear probe or full fine-tuning.

    result = finetune_classifier("saved_models/run1", source="coloured_fashion_mnist",
                                 label_key="garment", mode="finetune", epochs=2)
    result["top1_accuracy"]

The model is ``Input -> load_backbone(path, trainable=mode == "finetune") -> Dense(num_classes)``
trained with ``model.fit`` (sparse softmax cross-entropy on logits, Adam). In ``linear`` mode the
backbone runs its inference endpoint (BatchNorm moving averages, no weight or statistic
changes); in ``finetune`` mode ``fit`` runs the training endpoint (batch statistics, moving
averages updated) and every backbone kernel is trained.

Data: any ``hac_tf.data`` source (``build_source(name, split, **source_kwargs)``), its
``train`` split for training and ``test`` split for the reported top-1 accuracy. Optional
augmentation (train only): random horizontal flip and a random crop from the image padded by
``pad`` pixels (edge-reflected), seeded, so a run is repeatable.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from hac_tf.export.serving_layout import resolve_version_dir

__all__ = ["MODES", "build_classifier", "classification_data", "finetune_classifier", "safe_adam", "write_json"]

MODES = ("linear", "finetune")
DEFAULT_LEARNING_RATE = {"linear": 1e-2, "finetune": 1e-3}


def _augment_fn(seed: int, pad: int):
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(seed)

    def augment(image, label):
        seeds = generator.make_seeds(2)
        shape = tf.shape(image)
        image = tf.image.stateless_random_flip_left_right(image, seeds[:, 0])
        if pad > 0:
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            image = tf.image.stateless_random_crop(padded, shape, seeds[:, 1])
        return image, label

    return augment


def classification_data(source: str, split: str, label_key: str, batch_size: int,
                        max_examples: Optional[int] = None, training: bool = False,
                        augment: bool = False, image_size: int = 0, seed: int = 0, pad: int = 4,
                        source_kwargs: Optional[Mapping[str, Any]] = None):
    """``(dataset of (float32 [B,H,W,3] in [0,1], int32 [B]), num_examples, num_classes)``.

    The first ``max_examples`` examples of the split are used (cached in memory); training data
    is reshuffled each epoch (seeded) and optionally augmented.
    """
    import tensorflow as tf

    from hac_tf.data import build_source

    ds, info = build_source(source, split, with_info=True, **dict(source_kwargs or {}))
    if label_key not in info.num_classes:
        raise ValueError(f"source {source!r} has no label {label_key!r}; its labels: {sorted(info.num_classes)}")
    num_classes = int(info.num_classes[label_key])
    num_examples = int(info.num_examples)
    if max_examples:
        ds = ds.take(int(max_examples))
        num_examples = min(num_examples, int(max_examples))
    if num_examples <= 0:
        raise ValueError(f"source {source!r} split {split!r} has no examples")
    if not image_size and None in tuple(info.image_shape)[:2]:
        raise ValueError(f"source {source!r} has images of varying size; pass image_size")

    def prepare(image, labels):
        image = tf.image.convert_image_dtype(image, tf.float32)
        if image_size:
            image = tf.image.resize(image, [image_size, image_size], method="bilinear")
        return image, tf.cast(labels[label_key], tf.int32)

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if num_classes < 1:  # unknown to the source: count
        num_classes = int(ds.reduce(tf.constant(0), lambda m, e: tf.maximum(m, e[1]))) + 1
    if training:
        ds = ds.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
        if augment:
            ds = ds.map(_augment_fn(seed, pad))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE), num_examples, num_classes


def build_classifier(export_dir: str, num_classes: int, input_shape, mode: str = "linear"):
    """Keras 3 ``Input -> load_backbone(trainable=mode == "finetune") -> Dense(num_classes)``.

    Returns ``(model, backbone_layer)``; the model outputs logits.
    """
    import keras

    from hac_tf.export import load_backbone

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    version_dir = resolve_version_dir(export_dir)
    if mode == "finetune":
        from absl import logging

        from hac_tf.downstream.onednn import ONEDNN_ENV, conv_backprop_crash_risk, onednn_enabled

        reason = conv_backprop_crash_risk(version_dir, max(input_shape[:2])) if onednn_enabled() else None
        if reason:
            logging.warning("Fine-tuning may crash the process: %s. Set %s=0 before importing "
                            "TensorFlow (see hac_tf.downstream.onednn).", reason, ONEDNN_ENV)
    backbone = load_backbone(version_dir, trainable=(mode == "finetune"), output="embedding",
                             name="backbone")
    inputs = keras.Input(tuple(input_shape), name="images")
    logits = keras.layers.Dense(num_classes, name="classifier")(backbone(inputs))
    return keras.Model(inputs, logits, name=f"{mode}_classifier"), backbone


def safe_adam(learning_rate: float):
    """``keras.optimizers.Adam`` whose slot-variable names are valid for the TF backend.

    Keras 3.15's ``TFSMLayer`` (the base of ``load_backbone``) names the restored weights after
    their TF names, e.g. ``resnet18_stem_conv1_kernel:0``; an optimizer with slots (Adam, SGD
    with momentum) then names a slot ``resnet18_stem_conv1_kernel:0_momentum`` and fails with
    "... is not a valid scope name". This subclass replaces the characters TF rejects.
    """
    import re

    import keras

    class SafeNameAdam(keras.optimizers.Adam):
        def add_variable(self, shape, initializer="zeros", dtype=None, aggregation="none",
                         layout=None, name=None):
            if name is not None:
                name = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(name))
            return super().add_variable(shape, initializer=initializer, dtype=dtype,
                                        aggregation=aggregation, layout=layout, name=name)

    return SafeNameAdam(learning_rate, name="adam")


def _weights_change(before: List[np.ndarray], weights) -> Dict[str, Any]:
    deltas = [np.abs(np.asarray(w.numpy(), np.float64) - b) for b, w in zip(before, weights)]
    return {"num_weights": len(deltas), "num_changed": int(sum(bool(np.any(d > 0)) for d in deltas)),
            "max_abs_change": float(max((d.max() for d in deltas if d.size), default=0.0))}


def finetune_classifier(
    export_dir: str,
    source: str = "coloured_fashion_mnist",
    label_key: str = "garment",
    mode: str = "linear",
    epochs: int = 1,
    batch_size: int = 64,
    learning_rate: Optional[float] = None,
    max_train: Optional[int] = None,
    max_test: Optional[int] = None,
    augment: bool = False,
    image_size: int = 0,
    seed: int = 0,
    source_kwargs: Optional[Mapping[str, Any]] = None,
    verbose: int = 1,
    output_json: Optional[str] = None,
) -> Dict[str, Any]:
    """Trains a classifier on the export and returns (and optionally writes) the results.

    Args:
      export_dir: exported backbone (base path -> latest version, or a version dir).
      source, label_key: a ``hac_tf.data`` source name and the label to predict.
      mode: "linear" (frozen backbone) or "finetune" (everything trained).
      epochs, batch_size: ``model.fit`` settings.
      learning_rate: Adam learning rate; None = 1e-2 (linear) / 1e-3 (finetune).
      max_train, max_test: use only the first N examples of each split (None/0 = all).
      augment: random flip + padded random crop on the training images.
      image_size: resize images to this side (0 = as the source delivers them).
      seed: shuffling / augmentation / head initialisation seed.
      source_kwargs: extra keyword arguments for ``build_source`` (e.g. ``data_dir``).
      verbose: ``fit``/``evaluate`` verbosity (1 = progress bar).
      output_json: write the result dict there (directories created).

    Returns:
      dict with ``top1_accuracy`` (test), ``test_loss``, ``history`` (per-epoch train loss and
      accuracy), sizes, settings, ``seconds`` and ``backbone``: ``num_weights`` (all backbone
      variables, BN statistics included), ``num_changed`` and ``max_abs_change`` over them, and
      ``num_trainable_weights`` (0 in linear mode).

    Raises:
      hac_tf.export.ExportNotFoundError: ``export_dir`` holds no export.
      ValueError: unknown mode / label key.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    version_dir = resolve_version_dir(export_dir)  # fail fast, before importing TF or loading data
    import keras

    lr = float(learning_rate) if learning_rate else DEFAULT_LEARNING_RATE[mode]
    start = time.time()
    keras.utils.set_random_seed(seed)
    train_ds, num_train, num_classes = classification_data(
        source, "train", label_key, batch_size, max_train or None, training=True, augment=augment,
        image_size=image_size, seed=seed, source_kwargs=source_kwargs)
    test_ds, num_test, _ = classification_data(
        source, "test", label_key, batch_size, max_test or None, training=False,
        image_size=image_size, seed=seed, source_kwargs=source_kwargs)
    input_shape = tuple(train_ds.element_spec[0].shape[1:])
    model, backbone = build_classifier(version_dir, num_classes, input_shape, mode)
    model.compile(optimizer=safe_adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    weights_before = [np.array(w.numpy(), copy=True) for w in backbone.weights]
    history = model.fit(train_ds, epochs=epochs, verbose=verbose, shuffle=False)  # data is shuffled
    test_loss, test_acc = model.evaluate(test_ds, verbose=verbose)
    result = {
        "top1_accuracy": float(test_acc),
        "test_loss": float(test_loss),
        "mode": mode,
        "export_dir": version_dir,
        "source": source,
        "label_key": label_key,
        "num_classes": num_classes,
        "num_train": num_train,
        "num_test": num_test,
        "image_shape": list(input_shape),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "learning_rate": lr,
        "augment": bool(augment),
        "seed": int(seed),
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "backbone": dict(
            _weights_change(weights_before, backbone.weights),
            num_trainable_weights=len(backbone.trainable_weights),
            feature_dim=backbone.feature_dim),
        "seconds": time.time() - start,
    }
    if output_json:
        write_json(result, output_json)
    return result


def write_json(payload: Mapping[str, Any], path: str) -> str:
    """Writes ``payload`` as indented JSON (parent directories created, atomic rename)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path
