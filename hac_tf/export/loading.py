"""Loading an exported backbone as a Keras 3 layer (linear probes, fine-tuning, dense heads).

    layer = load_backbone("saved_models/run1")                  # latest version, frozen
    x = keras.Input((32, 32, 3))                                # float images in [0,1]
    y = keras.layers.Dense(10)(layer(x))
    model = keras.Model(x, y)

    ft = load_backbone("saved_models/run1/3", trainable=True)   # fine-tune version 3
    maps = load_backbone(path, output="feature_maps")(x)        # {"2": ..., "5": ...}

Safety: loading reads the SavedModel protobuf, the variables checkpoint and the JSON metadata;
it never unpickles or executes Python code from the artifact (no Lambda layers, no
``custom_objects``). It does run the artifact's TensorFlow graphs, and a graph can contain any
TF op; :func:`audit_graph_ops` therefore rejects, before loading, any artifact whose functions
contain file-system, process or Python-callback ops (``UNSAFE_OPS``: ReadFile, WriteFile,
PyFunc, ...), which a backbone never needs. Pass ``allow_unsafe_ops=True`` only for artifacts
you trust.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Sequence, Union

import keras
import tensorflow as tf

from hac_tf.export.serving_layout import SAVED_MODEL_PB, resolve_version_dir
from hac_tf.export.savedmodel import (
    INFERENCE_ENDPOINT,
    LEVEL_KEYS,
    METADATA_FILE,
    STAGE_KEYS,
    TRAINING_ENDPOINT,
)

LEVELS = tuple(LEVEL_KEYS[k] for k in STAGE_KEYS)  # ("2", "3", "4", "5")

#: ops a backbone's functions never contain: file-system access, Python callbacks, summaries,
#: I/O readers. The checkpoint save/restore ops of the SavedModel's own saver (top-level graph)
#: are not audited: the loader runs them itself to read the variables.
UNSAFE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "ImmutableConst",
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "SaveV2", "RestoreV2", "Save", "SaveSlices", "Restore", "RestoreSlice", "MergeV2Checkpoints",
    "WriteSummary", "WriteScalarSummary", "WriteImageSummary", "WriteRawProtoSummary", "CreateSummaryFileWriter",
    "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "TextLineDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "FixedLengthRecordReaderV2", "WholeFileReaderV2", "DecodeProtoV2",
    "DebugIdentityV2", "DebugIdentityV3", "PrintV2", "Print",
})
OUTPUT_CHOICES = ("embedding",) + STAGE_KEYS + LEVELS + ("feature_maps", "all")


def read_metadata(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The ``hac_tf_metadata.json`` of a version (``path`` may be a base path); {} if absent."""
    meta = os.path.join(resolve_version_dir(path), METADATA_FILE)
    if not os.path.isfile(meta):
        return {}
    with open(meta, encoding="utf-8") as f:
        return json.load(f)


def audit_graph_ops(version_dir: str) -> Dict[str, list]:
    """``{function name: sorted unsafe op types}`` over every function of the SavedModel's library
    (what its signatures and endpoints execute); empty for a clean artifact.

    Reads ``saved_model.pb`` only (nothing is loaded or run).
    """
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, SAVED_MODEL_PB), "rb") as f:
        proto.ParseFromString(f.read())
    found: Dict[str, set] = {}
    for meta_graph in proto.meta_graphs:
        saver = _saver_functions(meta_graph)
        for fn in meta_graph.graph_def.library.function:
            if fn.signature.name in saver:
                continue
            bad = {node.op for node in fn.node_def if node.op in UNSAFE_OPS}
            if bad:
                found.setdefault(fn.signature.name, set()).update(bad)
    return {name: sorted(ops) for name, ops in sorted(found.items())}


def _saver_functions(meta_graph) -> set:
    """Names of the functions the SavedModel's own saver calls (the ``saver_def`` save and
    restore nodes); their SaveV2/RestoreV2 ops are how the loader reads the variables.
    Only when they contain nothing but checkpoint I/O (a forged saver_def gains nothing)."""
    sd = meta_graph.saver_def
    wanted = {sd.save_tensor_name.split(":")[0], sd.restore_op_name.split(":")[0]} - {""}
    names = {attr.func.name for node in meta_graph.graph_def.node if node.name in wanted
             for attr in node.attr.values() if attr.func.name}
    allowed = {"SaveV2", "RestoreV2", "MergeV2Checkpoints"}
    library = {fn.signature.name: fn for fn in meta_graph.graph_def.library.function}
    return {n for n in names if n in library
            and all(node.op not in UNSAFE_OPS or node.op in allowed for node in library[n].node_def)}


def _normalise_output(output: Union[str, Sequence[str]]):
    if isinstance(output, str):
        if output not in OUTPUT_CHOICES:
            raise ValueError(f"output={output!r} is not one of {list(OUTPUT_CHOICES)}")
        if output == "feature_maps":
            return list(LEVELS)
        if output == "all":
            return ["embedding", *STAGE_KEYS, *LEVELS]
        return output
    keys = list(output)
    bad = [k for k in keys if k not in OUTPUT_CHOICES[:-2]]
    if not keys or bad:
        raise ValueError(f"output keys {bad or keys!r} must be among {list(OUTPUT_CHOICES[:-2])}")
    return keys


@keras.saving.register_keras_serializable(package="hac_tf")
class SavedModelBackbone(keras.layers.TFSMLayer):
    """A hac_tf backbone export as a Keras 3 layer.

    Input: ``[N,H,W,3]`` images, float in [0,1] (any float dtype) or uint8 in [0,255]; any
    H, W (not resized — the serving signatures resize, this layer does not).
    Output (``output``): "embedding" ``[N,D]`` (GAP of stage4); "stage1".."stage4" (GAP of
    each stage, ``[N,C_k]``); "2".."5" (one spatial map); "feature_maps" (dict "2".."5");
    "all" or a list of keys (dict).

    Weights: the restored variables themselves (shared with the loaded graphs, not copied);
    convolution kernels and BN gamma/beta are trainable weights, BN moving statistics are
    non-trainable. With ``trainable=True`` and ``training=True`` (e.g. in ``fit``) the layer
    runs the export's ``call_training`` endpoint: BN normalises with batch statistics and
    updates its moving averages, and gradients reach every kernel. Otherwise (inference, or the
    layer frozen with ``trainable=False`` — like Keras' own BatchNormalization) it runs
    ``call_inference`` with the moving averages. ``layer.trainable`` may be flipped later
    (freeze, train the head, unfreeze).

    Built on :class:`keras.layers.TFSMLayer`; the same safety note applies (see module doc).
    Deserialising a saved Keras model that contains this layer requires ``safe_mode=False``.
    """

    def __init__(self, filepath: Union[str, os.PathLike], output: Union[str, Sequence[str]] = "embedding",
                 trainable: bool = False, name: Optional[str] = None, dtype=None,
                 allow_unsafe_ops: bool = False, **kwargs) -> None:
        # kwargs: keys a TFSMLayer config may carry (call_endpoint, ...); the endpoints are fixed.
        del kwargs
        version_dir = resolve_version_dir(filepath)
        if not allow_unsafe_ops:
            unsafe = audit_graph_ops(version_dir)
            if unsafe:
                ops = sorted({op for v in unsafe.values() for op in v})
                raise ValueError(
                    f"{version_dir} contains ops a backbone never needs ({', '.join(ops)} in "
                    f"{len(unsafe)} function(s), e.g. {next(iter(unsafe))}); refusing to load it. "
                    f"Pass allow_unsafe_ops=True only if you trust this artifact.")
        self.output_keys = _normalise_output(output)
        self._output_spec = output if isinstance(output, str) else list(output)
        try:
            super().__init__(version_dir, call_endpoint=INFERENCE_ENDPOINT,
                             call_training_endpoint=TRAINING_ENDPOINT, trainable=trainable,
                             name=name, dtype=dtype)
        except ValueError as e:
            raise ValueError(
                f"{version_dir} is not a hac_tf backbone export (missing the "
                f"{INFERENCE_ENDPOINT}/{TRAINING_ENDPOINT} endpoints): {e}") from e
        self.metadata = read_metadata(version_dir)

    @property
    def feature_dim(self) -> Optional[int]:
        return self.metadata.get("feature_dim")

    def call(self, inputs, training=None):
        x = tf.convert_to_tensor(inputs)
        if x.dtype == tf.uint8:
            x = tf.cast(x, tf.float32) / 255.0
        elif x.dtype != tf.float32:
            x = tf.cast(x, tf.float32)
        fn = self.call_training_endpoint_fn if (training and self.trainable) else self.call_endpoint_fn
        outputs = fn(x)
        if isinstance(self.output_keys, str):
            return outputs[self.output_keys]
        return {k: outputs[k] for k in self.output_keys}

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        for key in ("call_endpoint", "call_training_endpoint"):
            config.pop(key, None)
        config["output"] = self._output_spec
        return config


def load_backbone(
    path: Union[str, os.PathLike],
    trainable: bool = False,
    output: Union[str, Sequence[str]] = "embedding",
    name: Optional[str] = None,
    allow_unsafe_ops: bool = False,
) -> SavedModelBackbone:
    """Loads an exported backbone as a Keras 3 layer (see :class:`SavedModelBackbone`).

    Args:
      path: a model base path (``saved_models/<name>`` → its latest version) or a version dir.
      trainable: fine-tune the backbone (trainable weights, training-mode BN under ``fit``).
      output: "embedding" | "stage1".."stage4" | "2".."5" | "feature_maps" | "all" | list of keys.
      name: layer name.
      allow_unsafe_ops: skip the :func:`audit_graph_ops` check (trusted artifacts only).

    Loading executes only the SavedModel's TF graphs — never Python code from the artifact — and
    refuses graphs with file-system/Python-callback ops (ValueError naming them).
    """
    return SavedModelBackbone(path, output=output, trainable=trainable, name=name,
                              allow_unsafe_ops=allow_unsafe_ops)
