"""SavedModel export of a pretrained backbone (TF Serving signatures + reusable, trainable callables).

What one exported version contains (all endpoints run the same weights; each variable is stored
once, see :func:`build_export_module`):

Serving signatures (uint8 images, for TF Serving / ``loaded.signatures[...]``):

  ``serving_default``  ``images`` uint8 ``[N,H,W,3]`` (any N <= max_batch, any H,W >= 1) →
                       ``embedding`` ``[N,D]`` (GAP of stage4) and ``stage1``..``stage4``
                       ``[N,C_k]`` (GAP of each stage). Inside the graph the images are converted
                       to float [0,1] and bilinearly resized to the training ``image_size``.
  ``feature_maps``     same input and preprocessing → spatial maps ``"2"``..``"5"``
                       (TF Model Garden levels: stage1 → "2", …, stage4 → "5"),
                       ``[N, s/2^(l-2), s/2^(l-2), C]`` for the CIFAR stem at side ``s``.

  Bad inputs: a wrong rank or channel count, a batch of 0 or more than ``max_batch`` images,
  or zero-sized images fail inside the graph with ``InvalidArgumentError`` whose message names
  the problem (``tf.debugging.Assert`` on the runtime shape; the process keeps running). These
  checks matter because a restored TF2 signature function does not enforce the declared
  ``[?,?,?,3]`` (measured). A wrong dtype is rejected before the graph runs by whoever feeds it
  (restored TF2 signature: "... expected to be a uint8 tensor but is a float tensor"); note that
  ``tf.compat.v1`` ``Session.run`` checks shapes client-side but silently converts numpy dtypes.

Callables for fine-tuning (float32 images in [0,1], ``[N,H,W,3]``, any size, NOT resized), each
returning the dict ``{"embedding", "default", "stage1".."stage4", "2".."5"}``:

  ``__call__(images, training=False)``  TF Hub reusable-SavedModel convention, with concrete
                       functions for ``training=True`` and ``training=False``; the object also
                       has ``variables``, ``trainable_variables`` and ``regularization_losses``
                       (empty), so ``hub.KerasLayer(path, trainable=True, output_key="embedding")``
                       fine-tunes it in tf_keras.
  ``call_inference(images)``  = ``__call__(images, training=False)`` (BN uses moving averages).
  ``call_training(images)``   = ``__call__(images, training=True)`` (BN uses batch statistics and
                       updates its moving averages in place).
  ``serve_training(images)``  uint8 twin of ``serving_default`` in training mode, so
                       ``keras.layers.TFSMLayer(path, call_endpoint="serving_default",
                       call_training_endpoint="serve_training")`` fine-tunes on uint8 images.

``hac_tf.export.load_backbone`` wraps ``call_inference``/``call_training`` in a Keras 3 layer.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from hac_tf.export import serving_layout as layout
from hac_tf.fault_hooks import fault_point

METADATA_FILE = "hac_tf_metadata.json"
METADATA_FORMAT = 1
DEFAULT_MAX_BATCH = 1024
INPUT_KEY = "images"
STAGE_KEYS = ("stage1", "stage2", "stage3", "stage4")
# TF Model Garden level convention: stage k (stride 2^(k+1) for the ImageNet stem) -> level k+1.
LEVEL_KEYS = {"stage1": "2", "stage2": "3", "stage3": "4", "stage4": "5"}
SERVING_SIGNATURE = "serving_default"
FEATURE_MAPS_SIGNATURE = "feature_maps"
TRAINING_ENDPOINT = "call_training"
INFERENCE_ENDPOINT = "call_inference"
SERVING_TRAINING_ENDPOINT = "serve_training"

ENDPOINTS_DOC = {
    "serving_default": "signature: images uint8 [N,H,W,3] -> embedding [N,D], stage1..stage4 [N,C_k] "
                       "(resized to image_size, inference mode)",
    "feature_maps": "signature: images uint8 [N,H,W,3] -> '2'..'5' spatial maps (resized to image_size)",
    "__call__": "images float32 [N,H,W,3] in [0,1] (no resize), training=False|True -> dict of "
                "embedding, default, stage1..stage4 (pooled), '2'..'5' (maps)",
    "call_inference": "= __call__(images, training=False)",
    "call_training": "= __call__(images, training=True): batch statistics, updates BN moving averages",
    "serve_training": "uint8 twin of serving_default in training mode (TFSMLayer call_training_endpoint)",
}


# ----------------------------------------------------------------------------- helpers
def resolve_backbone(model_or_backbone: Any):
    """The :class:`~hac_tf.models.ResNetBackbone` itself, or the ``.backbone`` of a training model."""
    from hac_tf.models.resnet import ResNetBackbone

    if isinstance(model_or_backbone, ResNetBackbone):
        return model_or_backbone
    inner = getattr(model_or_backbone, "backbone", None)
    if isinstance(inner, ResNetBackbone):
        return inner
    raise TypeError(
        "export_backbone needs a hac_tf.models.ResNetBackbone or a model whose .backbone is one; "
        f"got {type(model_or_backbone).__name__}"
        + (f" with .backbone of type {type(inner).__name__}" if inner is not None else ""))


def _tf_variable(v) -> tf.Variable:
    """The ``tf.Variable`` that holds the value of a Keras 3 variable (or ``v`` itself).

    Tracking the Keras wrapper instead would make ``tf.saved_model.save`` write every value
    twice (the wrapper exports itself as a second ``tf.Variable``; that is what doubles the size
    of ``model.export()`` artifacts).
    """
    if isinstance(v, tf.Variable):
        return v
    inner = getattr(v, "value", None)
    if isinstance(inner, tf.Variable):
        return inner
    inner = getattr(v, "_value", None)
    if isinstance(inner, tf.Variable):
        return inner
    raise TypeError(f"cannot find the tf.Variable behind {v!r}")


def _jsonable(x: Any) -> Any:
    """Plain-JSON version of configs/metrics: numpy → Python, tuples → lists, NaN/Inf → None."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (tf.Tensor, tf.Variable)):
        x = x.numpy()
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if x is None or isinstance(x, str):
        return x
    return str(x)


def config_to_dict(config: Any) -> Optional[Dict[str, Any]]:
    """``config.as_dict()`` (Model Garden hyperparams), a mapping, or None → a JSON-able dict."""
    if config is None:
        return None
    if hasattr(config, "as_dict"):
        return _jsonable(config.as_dict())
    if isinstance(config, Mapping):
        return _jsonable(config)
    raise TypeError(f"config must have .as_dict(), be a dict or None; got {type(config).__name__}")


def _config_image_size(config: Any) -> Optional[int]:
    try:
        data = config.data if not isinstance(config, Mapping) else config.get("data")
        size = data.image_size if not isinstance(data, Mapping) else data.get("image_size")
        return int(size) if size else None
    except (AttributeError, TypeError, ValueError):
        return None


def _config_serving_root(config: Any) -> str:
    """``config.export.serving_root`` (dict or Config); :data:`DEFAULT_SERVING_ROOT` when absent."""
    try:
        export = config.export if not isinstance(config, Mapping) else config.get("export")
        root = export.serving_root if not isinstance(export, Mapping) else export.get("serving_root")
    except AttributeError:
        return layout.DEFAULT_SERVING_ROOT
    return layout.DEFAULT_SERVING_ROOT if root is None else str(root)


# ----------------------------------------------------------------------------- the module
class BackboneExportModule(tf.__internal__.tracking.AutoTrackable):
    """The object saved as the SavedModel root (see the module docstring for its endpoints).

    Only the ``tf.Variable`` objects behind the backbone's Keras variables are tracked (in
    ``variables`` / ``trainable_variables``); the Keras layers themselves are not part of the
    object graph, so nothing is saved twice and nothing Keras-specific is needed to load it.
    """


def build_export_module(backbone, image_size: int, max_batch: int = DEFAULT_MAX_BATCH
                        ) -> tuple:
    """Traces every endpoint of ``backbone``; returns ``(module, signatures)`` for
    ``tf.saved_model.save(module, path, signatures=signatures)``."""
    image_size = int(image_size)
    max_batch = int(max_batch)
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if not backbone.weights:
        backbone.build((None, image_size, image_size, 3))

    def forward(images: tf.Tensor, training: bool) -> Dict[str, tf.Tensor]:
        maps = backbone(images, training=training)
        out: Dict[str, tf.Tensor] = {}
        for key in STAGE_KEYS:
            m = tf.cast(maps[key], tf.float32)
            out[LEVEL_KEYS[key]] = tf.identity(m, name=f"level{LEVEL_KEYS[key]}")
            out[key] = tf.reduce_mean(m, axis=[1, 2], name=f"{key}_gap")
        out["embedding"] = tf.identity(out["stage4"], name="embedding")
        out["default"] = tf.identity(out["stage4"], name="default")
        return out

    def preprocess(images: tf.Tensor) -> tf.Tensor:
        """uint8 [N,H,W,3] → checked, float [0,1], bilinear-resized to image_size."""
        # The checks read the runtime shape: the signature declares [?,?,?,3], but a restored
        # TF2 signature function does not enforce the declared shape (measured), and a C++
        # client may not either. Rank is derived from the padded shape vector because tf.rank
        # and a Rank op get folded to the declared rank 4.
        shape = tf.raw_ops.Shape(input=images, out_type=tf.int32)
        padded = tf.raw_ops.Pad(input=shape, paddings=[[0, 5]])[:5]  # rank < 4 pads with 0s
        n, h, w = padded[0], padded[1], padded[2]
        checks = [
            tf.debugging.Assert(
                tf.logical_and(tf.equal(padded[3], 3), tf.equal(padded[4], 0)),
                ["images must be a uint8 batch of shape [N,H,W,3] (rank 4, 3 RGB channels); "
                 "got shape", shape], summarize=5, name="check_images_shape"),
            tf.debugging.Assert(
                tf.logical_and(n >= 1, n <= max_batch),
                [f"batch size must be between 1 and max_batch={max_batch}; got", n],
                name="check_batch_size"),
            tf.debugging.Assert(
                tf.logical_and(h >= 1, w >= 1),
                ["images must have height and width >= 1; got shape", shape],
                summarize=5, name="check_image_size"),
        ]
        with tf.control_dependencies(checks):
            x = tf.image.convert_image_dtype(images, tf.float32)  # uint8 → [0,1]
            x = tf.ensure_shape(x, [None, None, None, 3])
        same = tf.logical_and(tf.equal(h, image_size), tf.equal(w, image_size))
        x = tf.cond(same, lambda: x,
                    lambda: tf.image.resize(x, [image_size, image_size], method="bilinear",
                                            antialias=False))
        return tf.ensure_shape(x, [None, image_size, image_size, 3])

    float_spec = tf.TensorSpec([None, None, None, 3], tf.float32, name=INPUT_KEY)
    uint8_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_KEY)

    # autograph=False: no data-dependent Python control flow (preprocess uses tf.cond); autograph
    # would only transpile the model code before tracing it
    @tf.function(autograph=False)
    def call(images, training=False):
        return forward(tf.convert_to_tensor(images, tf.float32), bool(training))

    def pooled(out: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {k: out[k] for k in ("embedding",) + STAGE_KEYS}

    def levels(out: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return {LEVEL_KEYS[k]: out[LEVEL_KEYS[k]] for k in STAGE_KEYS}

    @tf.function(input_signature=[uint8_spec], autograph=False)
    def serve(images):
        return pooled(forward(preprocess(images), False))

    @tf.function(input_signature=[uint8_spec], autograph=False)
    def serve_feature_maps(images):
        return levels(forward(preprocess(images), False))

    @tf.function(input_signature=[uint8_spec], autograph=False)
    def serve_training(images):
        return pooled(forward(preprocess(images), True))

    call_inference = call.get_concrete_function(float_spec, training=False)
    call_training = call.get_concrete_function(float_spec, training=True)
    signatures = {
        SERVING_SIGNATURE: serve.get_concrete_function(),
        FEATURE_MAPS_SIGNATURE: serve_feature_maps.get_concrete_function(),
    }
    serve_training.get_concrete_function()

    # Each variable once: the tf.Variables behind the Keras weights, plus anything else a trace
    # captured (none for the ResNets, but a custom layer might hold a raw tf.Variable). Under a
    # tf.distribute strategy the traces capture the per-device components of a
    # DistributedVariable; those are the same variable and must not be tracked again.
    variables: List[tf.Variable] = []
    trainable_ids = set()
    seen = set()

    def ids_of(v) -> set:
        return {id(v)} | {id(c) for c in getattr(v, "values", ()) or ()}

    for w in backbone.weights:
        v = _tf_variable(w)
        if id(v) not in seen:
            seen |= ids_of(v)
            variables.append(v)
            if getattr(w, "trainable", v.trainable):
                trainable_ids.add(id(v))
    for fn in (call_training, call_inference, *signatures.values()):
        for v in fn.variables:
            if id(v) not in seen:
                seen |= ids_of(v)
                variables.append(v)
                if v.trainable:
                    trainable_ids.add(id(v))

    module = BackboneExportModule()
    module.variables = variables
    module.trainable_variables = [v for v in variables if id(v) in trainable_ids]
    module.regularization_losses = []
    module.__call__ = call
    module.call_inference = call_inference
    module.call_training = call_training
    module.serve = serve
    module.serve_feature_maps = serve_feature_maps
    module.serve_training = serve_training
    return module, signatures


# ----------------------------------------------------------------------------- export
def _save_tracing_context(options: tf.saved_model.SaveOptions):
    """Trace inside the context ``tf.saved_model.save`` uses, so saving reuses the traces.

    tf.function keys its trace cache on the save context; traces made outside it are all
    redone by ``tf.saved_model.save``, which makes the export slower and its saved_model.pb
    larger. Uses a TF-internal module; without it (another TF version) the export is only slower.
    """
    try:
        from tensorflow.python.saved_model import save_context
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    if save_context.in_save_context():  # pragma: no cover
        return contextlib.nullcontext()
    return save_context.save_context(options)


def _count_params(variables: Sequence[tf.Variable]) -> int:
    return int(sum(int(np.prod(v.shape)) for v in variables))


def build_metadata(backbone, config: Any, step: int, metrics: Any, image_size: int,
                   max_batch: int, model_name: str, module=None) -> Dict[str, Any]:
    """The ``hac_tf_metadata.json`` content of one version."""
    import keras

    import hac_tf

    trainable = module.trainable_variables if module is not None else backbone.trainable_weights
    variables = module.variables if module is not None else backbone.weights
    now = time.time()
    return {
        "format_version": METADATA_FORMAT,
        "model_name": model_name,
        "hac_tf_version": getattr(hac_tf, "__version__", "unknown"),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "export_time": datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(),
        "export_timestamp": now,
        "step": int(step),
        "metrics": _jsonable(metrics) if metrics is not None else None,
        "config": config_to_dict(config),
        "image_size": int(image_size),
        "max_batch": int(max_batch),
        "input": {"name": INPUT_KEY, "dtype": "uint8", "shape": [None, None, None, 3],
                  "preprocessing": f"convert to float [0,1], bilinear resize to {image_size}x{image_size}, "
                                   "then the backbone's ImageNet mean/std normalisation"},
        "compute_dtype": str(getattr(backbone, "compute_dtype", "float32")),  # graph precision
        "feature_dim": int(backbone.feature_dim),
        "stage_channels": {k: int(c) for k, c in zip(STAGE_KEYS, backbone.stage_channels)},
        "level_channels": {LEVEL_KEYS[k]: int(c) for k, c in zip(STAGE_KEYS, backbone.stage_channels)},
        "level_of_stage": dict(LEVEL_KEYS),
        "backbone": {
            "class": type(backbone).__name__,
            "depth": getattr(backbone, "depth", None),
            "stem": getattr(backbone, "stem_type", None),
            "width_multiplier": getattr(backbone, "width_multiplier", None),
            "name": backbone.name,
        },
        "num_params": _count_params(variables),
        "num_trainable_params": _count_params(trainable),
        "num_variables": len(variables),
        "signatures": [SERVING_SIGNATURE, FEATURE_MAPS_SIGNATURE],
        "endpoints": dict(ENDPOINTS_DOC),
    }


def export_backbone(
    model_or_backbone: Any,
    config: Any,
    base_path: str,
    step: int = 0,
    metrics: Any = None,
    version: Optional[int] = None,
    image_size: Optional[int] = None,
    warmup: bool = True,
    max_batch: int = DEFAULT_MAX_BATCH,
    model_name: Optional[str] = None,
    serving_root: Optional[str] = None,
    write_config: bool = True,
) -> str:
    """Exports the backbone as version ``base_path/<version>`` in the TF Serving layout.

    Args:
      model_or_backbone: a ``ResNetBackbone`` or a model whose ``.backbone`` is one.
      config: Model Garden config (``.as_dict()``), dict or None; stored in the metadata.
      base_path: the model's base path (``saved_models/<name>``); created if missing.
      step: checkpoint step, stored in the metadata.
      metrics: evaluation results (nested dict of numbers), stored in the metadata.
      version: version number; None = one more than the largest numeric directory.
      image_size: the side the serving signatures resize to; None (default) =
        ``config.data.image_size`` when the config has one, else 32.
      warmup: write ``assets.extra/tf_serving_warmup_requests``.
      max_batch: largest batch the serving signatures accept (recorded in the metadata).
      model_name: TF Serving model name (warmup ``model_spec.name``); None = basename of base_path.
      serving_root: how the server sees ``dirname(base_path)`` in ``models.config``
        (see :func:`~hac_tf.export.serving_layout.write_models_config`); None =
        ``config.export.serving_root`` when the config has it, else ``/models`` (the README's
        Docker mount); ``""`` = the absolute host path. ``models.host.config`` always holds
        the host paths.
      write_config: (re)write ``dirname(base_path)/models.config`` after publishing.

    Returns:
      The published version directory.

    Raises:
      VersionExistsError: ``version`` exists already (nothing is written).
      ExportWriteError: writing failed (e.g. disk full): nothing published, partial files
        removed, existing versions untouched.
      TypeError: ``model_or_backbone`` holds no ResNetBackbone.

    The version is written into ``base_path/.tmp-<version>-<host>-<pid>``, fsync'ed and renamed
    into place (see :mod:`hac_tf.export.serving_layout`), so TF Serving never loads a partial one.
    """
    backbone = resolve_backbone(model_or_backbone)
    serving_root = layout.validate_serving_root(
        _config_serving_root(config) if serving_root is None else serving_root)
    if image_size is None:
        image_size = _config_image_size(config) or 32
    base_path = os.path.abspath(os.fspath(base_path))
    name = model_name or os.path.basename(base_path.rstrip("/"))
    if version is not None:
        version = layout.validate_version(version)
        existing = os.path.join(base_path, str(version))
        if os.path.lexists(existing):
            raise layout.VersionExistsError(
                f"version {version} already exists at {existing}; versions are never overwritten")
    options = tf.saved_model.SaveOptions()
    with _save_tracing_context(options):
        module, signatures = build_export_module(backbone, image_size, max_batch)
    metadata = build_metadata(backbone, config, step, metrics, image_size, max_batch, name, module)

    def write(tmp_dir: str) -> None:
        tf.saved_model.save(module, tmp_dir, signatures=signatures, options=options)
        if warmup:
            layout.write_warmup_records(tmp_dir, name, image_size,
                                        signature_names=(SERVING_SIGNATURE, FEATURE_MAPS_SIGNATURE))
        with open(os.path.join(tmp_dir, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2, sort_keys=True, allow_nan=False)
        fault_point("export")  # drills: HAC_FAULT_AT=export:<n> kills here, before the publishing rename

    _, version_dir = layout.publish_version(base_path, write, version)
    if write_config:
        layout.write_models_config(os.path.dirname(base_path), serving_root=serving_root)
    return version_dir


def variables_size_bytes(version_dir: str) -> int:
    """Total size of ``version_dir/variables/`` (to check each value is stored once)."""
    total = 0
    for dirpath, _, files in os.walk(os.path.join(version_dir, "variables")):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total
