"""hac_tf.export: SavedModel backbone export (TF Serving layout) and loading for Keras downstream.

    export_backbone(model_or_backbone, config, base_path, step=0, metrics=None, version=None,
                    image_size=None, warmup=True) -> version dir
    load_backbone(path, trainable=False, output="embedding") -> Keras 3 layer

Modules: :mod:`~hac_tf.export.savedmodel` (the exported signatures/endpoints, metadata),
:mod:`~hac_tf.export.serving_layout` (versions; ``resolve_version_dir``: a model base path or a
version dir -> the version dir; atomic publish, models.config and models.host.config, warmup
records), :mod:`~hac_tf.export.loading` (loading for Keras 3) and
:mod:`~hac_tf.export.serving_client` (REST/gRPC requests to TF Serving; ``hac-serving-client``).

Names are imported lazily, so ``hac_tf.export.serving_layout`` can be used without importing
TensorFlow or Keras.

This package knows SavedModels, not training runs: it imports nothing from ``hac_tf.training``.
Exporting a run directory (its config, model spec and newest intact checkpoint; ``hac-export``)
is :mod:`hac_tf.training.run_export`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "savedmodel": (
        "DEFAULT_MAX_BATCH", "FEATURE_MAPS_SIGNATURE", "LEVEL_KEYS", "METADATA_FILE",
        "SERVING_SIGNATURE", "build_export_module", "export_backbone", "variables_size_bytes",
    ),
    "serving_layout": (
        "ExportNotFoundError", "ExportWriteError", "VersionExistsError", "cleanup_stale_temp_dirs", "latest_version",
        "list_versions", "next_version", "resolve_version_dir", "parse_models_config", "read_warmup_records",
        "write_models_config",
        "DEFAULT_SERVING_ROOT", "HOST_MODELS_CONFIG", "MODELS_CONFIG", "served_model_dirs", "validate_serving_root",
    ),
    "loading": (
        "OUTPUT_CHOICES", "UNSAFE_OPS", "SavedModelBackbone", "audit_graph_ops", "load_backbone", "read_metadata",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hac_tf.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hac_tf.export.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from hac_tf.export.loading import (  # noqa: F401
        OUTPUT_CHOICES, UNSAFE_OPS, SavedModelBackbone, audit_graph_ops, load_backbone, read_metadata)
    from hac_tf.export.savedmodel import (  # noqa: F401
        DEFAULT_MAX_BATCH, FEATURE_MAPS_SIGNATURE, LEVEL_KEYS, METADATA_FILE, SERVING_SIGNATURE,
        build_export_module, export_backbone, variables_size_bytes)
    from hac_tf.export.serving_layout import (  # noqa: F401
        ExportNotFoundError, ExportWriteError, VersionExistsError, cleanup_stale_temp_dirs, latest_version,
        list_versions, next_version, parse_models_config, resolve_version_dir, read_warmup_records,
        write_models_config,
        DEFAULT_SERVING_ROOT, HOST_MODELS_CONFIG, MODELS_CONFIG, served_model_dirs, validate_serving_root)
