"""Config -> objects: view policy, data pipelines, model spec and model."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
import yaml
from absl import logging

from hac_tf import schema
from hac_tf.augment import AugmentationSettings, build_policy, make_view_dataset
from hac_tf.augment.policies import ViewPolicy
from hac_tf.data import build_source, resolution
from hac_tf.methods import ModelSpec, method_class
from hac_tf.plugins.wiring import any_enabled, plugin_spec_kwargs, source_keys
from hac_tf.training.config import ExperimentConfig


def augmentation_settings(c: ExperimentConfig) -> AugmentationSettings:
    a = c.augment
    return AugmentationSettings(
        image_size=c.data.image_size,
        crop_scale=(a.crop_min_scale, 1.0),
        jitter_strength=tuple(a.jitter_strength),
        jitter_probability=a.jitter_probability,
        grayscale_probability=a.grayscale_probability,
        blur_probability=None if a.blur_probability < 0 else a.blur_probability,
        flip_probability=a.flip_probability,
        rotation_probability=a.rotation_probability,
        solarize_probability=a.solarize_probability,
    )


def view_policy(c: ExperimentConfig, settings: Optional[AugmentationSettings] = None) -> ViewPolicy:
    """The config's view policy (``settings``: override the strengths, e.g. a smaller view size)."""
    settings = settings or augmentation_settings(c)
    a = c.augment
    if a.policy == "add_one":
        return build_policy("add_one", order=tuple(a.order), settings=settings, num_levels=a.num_levels)
    if a.policy == "two_view":
        return build_policy("two_view", groups=tuple(a.groups), settings=settings)
    return build_policy(a.policy, num_levels=a.num_levels, groups=tuple(a.groups), settings=settings)


def source_kwargs(c: ExperimentConfig) -> Dict[str, Any]:
    """Keyword arguments of ``build_source(c.data.source, ...)`` from the data config.

    image_folder: ``root`` (data.data_dir), ``labels`` (data.labels) and ``max_side`` (the canvas
    side of the resolution stage, hac_tf/data/resolution.py): images keep their aspect ratio and
    are only downscaled when their longer side exceeds it. tfds:<name>: ``data_dir`` and
    ``download`` (data.download).
    """
    kwargs: Dict[str, Any] = {}
    if c.data.source == "coloured_fashion_mnist":
        kwargs.update(num_colours=c.data.num_colours, image_size=c.data.image_size)
    if c.data.source == "banded_hue_fashion_mnist":  # colour testbed (hac_tf/data/banded_hue.py)
        kwargs.update(num_bins=c.data.num_colours, image_size=c.data.image_size)
    if c.data.source == "fashion_mnist_overlay":  # plug-in evaluation set (hac_tf.data.feature_dropout)
        kwargs.update(num_colours=c.data.num_colours, image_size=c.data.image_size, overlay=c.data.overlay)
    if c.data.source == "image_folder":
        kwargs.update(labels=c.data.labels,
                      max_side=resolution.resolve_max_source_side(c.data.max_source_side, c.data.image_size))
    if c.data.source.startswith("tfds:"):
        kwargs["download"] = c.data.download
    if c.data.data_dir:
        kwargs["root" if c.data.source == "image_folder" else "data_dir"] = c.data.data_dir
    return kwargs


def labelled_source(c: ExperimentConfig, split: str, max_examples: int = 0):
    """The raw (image uint8 [H,W,3], labels) source of a split, optionally truncated."""
    ds, info = build_source(c.data.source, split, with_info=True, **source_kwargs(c))
    if max_examples and max_examples > 0:
        ds = ds.take(max_examples)
    return ds, info


def describe_source(c: ExperimentConfig) -> str:
    """One line naming the data a run reads (printed by ``hac-train`` before training).

    Reads no images: an image folder's layout is detected from its directory listing
    (`hac_tf.data.folder_layout.detect_layout`, which raises its clear error for an ambiguous
    layout here, before anything is built).
    """
    d = c.data
    if d.source == "image_folder":
        from hac_tf.data.folder_layout import detect_layout

        line = f"data: {detect_layout(d.data_dir, d.labels).description}"
    else:
        line = f"data: {d.source} ({d.train_split!r} for training)"
    if d.eval_data_dir:
        line += f"; evaluation on the labelled folder {d.eval_data_dir!r}"
    elif d.labels != "none":
        line += f"; evaluation on {(d.eval_train_split or d.train_split)!r} / {d.test_split!r}"
    return line + f"; views at {d.image_size} px"


def eval_source(c: ExperimentConfig, role: str, max_examples: int = 0):
    """Labelled images for evaluation (probes, kNN): ``(dataset, SourceInfo)``.

    Args:
      role: ``"train"`` (the split the probes and the kNN memory are fitted on:
        ``data.eval_train_split``, else ``data.train_split``) or ``"test"`` (``data.test_split``).
        With ``data.eval_data_dir`` the images come from that labelled image folder instead of
        the training source (its own ``train``/``test`` split).
      max_examples: keep at most this many (0 = all).

    Returns:
      The dataset yields ``(uint8 [S, S, 3], {key: int32 []})``, S = ``data.image_size``: images
      of another size go through the evaluation resize (hac_tf/data/resolution.py: shorter side
      to S, antialiased, then the centre S x S), and ``info.image_shape`` is then (S, S, 3);
      ``info.split`` names the split read.
    """
    if role not in ("train", "test"):
        raise ValueError(f"eval_source role must be 'train' or 'test', got {role!r}")
    if c.data.eval_data_dir:
        ds, info = build_source("image_folder", role, with_info=True, root=c.data.eval_data_dir,
                                image_size=c.data.image_size)
        if max_examples and max_examples > 0:
            ds = ds.take(max_examples)
    else:
        split = (c.data.eval_train_split or c.data.train_split) if role == "train" else c.data.test_split
        ds, info = labelled_source(c, split, max_examples)
    size = c.data.image_size
    if resolution.needs_evaluation_stage(info.image_shape, size):
        ds = resolution.evaluation_stage(ds, size)
        info = dataclasses.replace(info, image_shape=(size, size, 3))
    return ds, info


def _checked_num_train_examples(c: ExperimentConfig, info) -> int:
    n = info.num_examples if not c.data.max_train_examples else min(info.num_examples, c.data.max_train_examples)
    if n < c.data.batch_size:
        raise ValueError(f"the training split has {n} images, fewer than one batch "
                         f"(data.batch_size={c.data.batch_size})")
    return n


def num_train_examples(c: ExperimentConfig) -> int:
    """Source images of the training split (after ``data.max_train_examples``), without building
    the view pipeline (whose tf.data map traces the whole view policy, seconds per build).

    Raises:
      ValueError: the split has fewer images than one batch.
    """
    _, info = labelled_source(c, c.data.train_split, c.data.max_train_examples)
    return _checked_num_train_examples(c, info)


def train_views(c: ExperimentConfig, policy: ViewPolicy, start_step: int = 0) -> Tuple[tf.data.Dataset, int]:
    """Infinite, deterministic stream of view batches starting at ``start_step``.

    Batch i is a pure function of (seed, i): the source order comes from a seeded shuffle that
    reshuffles each epoch deterministically, and the views from the stateless seed (seed, i).
    So a resumed run at step s sees exactly the batches s, s+1, ... of an uninterrupted run.

    Iterate the returned dataset ONCE (a second iterator would see other epoch orders).
    Returns (dataset, number of source examples).

    Sources whose images are not all of one size <= ``data.max_source_side`` go through the
    training resolution stage (hac_tf/data/resolution.py: canvases + extents; the crops are
    drawn inside each image's extent); fixed-size sources that fit are batched as they are.
    """
    src, info = labelled_source(c, c.data.train_split, c.data.max_train_examples)
    max_side = resolution.resolve_max_source_side(c.data.max_source_side, c.data.image_size)
    n = _checked_num_train_examples(c, info)
    seed = c.train.seed
    # reshuffle_each_iteration ties epoch e's order to (seed, number of iterators made on this
    # dataset object before): callers must iterate a dataset returned here exactly once.
    src = src.shuffle(min(c.data.shuffle_buffer, n), seed=seed, reshuffle_each_iteration=True).repeat()
    if resolution.needs_training_stage(info.image_shape, max_side):
        src = resolution.training_stage(src, max_side)  # after the shuffle: the buffer holds no canvases
    keep = source_keys(c)  # what the enabled plug-ins read besides the views (EquiMod's x_0: "images")
    views = make_view_dataset(src, policy, c.data.batch_size, seed=seed, start_batch=start_step,
                              keep_images="images" in keep)

    def strip(batch):
        return {k: v for k, v in batch.items() if k.startswith("level_") or k in keep}

    return views.map(strip, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2), n


def steps_per_epoch(c: ExperimentConfig) -> int:
    """Optimizer steps per epoch: train.steps_per_epoch, else training examples // batch size."""
    if c.train.steps_per_epoch:
        return int(c.train.steps_per_epoch)
    _, info = labelled_source(c, c.data.train_split)
    n = info.num_examples if not c.data.max_train_examples else min(info.num_examples, c.data.max_train_examples)
    return max(n // c.data.batch_size, 1)


def model_spec_kwargs(c: ExperimentConfig, steps_per_epoch_hint: Optional[int] = None) -> Dict[str, Any]:
    """The ``model`` section (+ plugins) -> keyword arguments of :class:`hac_tf.methods.ModelSpec`.

    Only values that differ from the spec's defaults are passed: a key at its config default of 0 / ()
    means "the method's default" where the spec's default is None, and only the settings of
    ``model.method`` are read (each method's class lists them). ``steps_per_epoch_hint``: the
    trainer's steps per epoch (MoCHi's start epoch -> step); computed from the data when needed
    and not given.
    """
    m = c.model
    kw: Dict[str, Any] = {}
    for field in dataclasses.fields(ModelSpec):
        start = schema.config_default_of(field)
        if start is schema.CODE_ONLY:
            continue
        value = getattr(m, field.name)
        value = tuple(value) if isinstance(value, (list, tuple)) else value
        if value == field.default or (field.default is None and value in (0, ()) and value == start):
            continue
        kw[field.name] = value
    starts = {f.name: f.default for f in dataclasses.fields(type(m))}
    for name in method_class(m.method).settings_class.names():
        value = getattr(m, name)
        if not (starts[name] == 0 and value == 0):  # 0: the config's "method default" of a shared setting
            kw[name] = value
    # --- plug-ins (hac_tf.plugins.wiring)
    if any_enabled(c):
        kw.update(plugin_spec_kwargs(c, augmentation_settings(c), lambda s: view_policy(c, s),
                                     lambda: steps_per_epoch_hint or steps_per_epoch(c)))
    return kw


def build_model(config: ExperimentConfig, steps_per_epoch: Optional[int] = None):
    """The multi-depth model of the config (built inside the caller's strategy scope, if any)."""
    from hac_tf.methods import HierarchicalContrastiveModel

    return HierarchicalContrastiveModel(ModelSpec(**model_spec_kwargs(config, steps_per_epoch)))


def _changed_model_keys(config: ExperimentConfig, saved_config: str) -> List[str]:
    """``model.*`` / ``plugins.*`` keys whose value differs from the run's saved config.yaml."""
    if not os.path.isfile(saved_config):
        return []
    with open(saved_config, encoding="utf-8") as f:
        saved = yaml.safe_load(f) or {}
    now = config.as_dict()
    changed = []
    for section in ("model", "plugins"):
        old, new = _flatten(saved.get(section) or {}, section), _flatten(now.get(section) or {}, section)
        changed += sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return changed


def _flatten(values: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}.{key}"))
        else:
            out[f"{prefix}.{key}"] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def run_model(config: ExperimentConfig, model_dir: str, steps_per_epoch: Optional[int] = None, write: bool = True):
    """The model of the run in ``model_dir`` (built inside the caller's strategy scope, if any).

    A run that has a checkpoint is rebuilt from the resolved spec it trained with,
    ``<model_dir>/model_spec.json`` (run facts such as EquiMod's standardisation constants and
    MoCHi's start step are not worked out again; the data is not read); a warning names the
    ``model.*`` / ``plugins.*`` keys where ``config`` now differs from the run's config.yaml. Otherwise the spec is
    resolved from ``config`` and, with ``write``, saved there for later resumes, evaluation and
    export (hac_tf/training/run_export.py).
    """
    from hac_tf.methods import HierarchicalContrastiveModel
    from hac_tf.methods.spec import MODEL_SPEC_FILE

    path = os.path.join(model_dir, MODEL_SPEC_FILE)
    if os.path.isfile(path) and tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")):
        changed = _changed_model_keys(config, os.path.join(model_dir, "config.yaml"))
        if changed:
            logging.warning("%s trains on with the model it was started with (%s); the config now differs in %s, "
                            "which is ignored (use a new model_dir to train another model)",
                            model_dir, MODEL_SPEC_FILE, ", ".join(changed))
        return HierarchicalContrastiveModel(ModelSpec.load(path))
    spec = ModelSpec(**model_spec_kwargs(config, steps_per_epoch))
    if write:
        spec.save(path)
    return HierarchicalContrastiveModel(spec)
