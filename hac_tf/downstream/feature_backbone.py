"""An exported hac_tf backbone as a TF Model Garden backbone: a tf_keras model of its feature maps.

Model Garden (``official.vision``) models are tf_keras (Keras 2) models. The exported backbone is
loaded with ``tensorflow_hub.KerasLayer`` (the export's TF-Hub style ``__call__(images, training)``)
inside :class:`SavedModelFeatureBackbone`, a functional ``tf_keras.Model`` that returns the
export's spatial maps as a ``{level: tensor}`` dict and exposes ``output_specs`` — exactly what
Model Garden's decoders and models need from a backbone (:mod:`hac_tf.downstream.detection`,
:mod:`hac_tf.downstream.segmentation`).

Levels. Model Garden names a feature map by ``level = log2(stride)`` (anchors of level ``l`` are
placed every ``2**l`` pixels and sized ``anchor_size * 2**l``). The export keys its maps
``"2".."5"`` (stage 1..4) whatever the stem; that equals ``log2(stride)`` only for the ImageNet
stem (strides 4..32). The CIFAR stem has strides 1, 2, 4, 8, so with ``level_naming="stride"``
(default) the wrapper probes the real strides and re-keys the maps ``"0".."3"``; anchors and
feature maps then line up for either stem. ``level_naming="export"`` keeps ``"2".."5"``.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import tensorflow as tf
import tf_keras

__all__ = ["EXPORT_LEVEL_KEYS", "SavedModelFeatureBackbone", "backbone_images"]

EXPORT_LEVEL_KEYS = ("2", "3", "4", "5")


def _warn_onednn_risk(version_dir: str, side: int, trainable: bool) -> None:
    from absl import logging

    from hac_tf.downstream.onednn import ONEDNN_ENV, conv_backprop_crash_risk, onednn_enabled

    reason = conv_backprop_crash_risk(version_dir, side) if trainable and onednn_enabled() else None
    if reason:
        logging.warning("Training may crash the process: %s. Set %s=0 before importing TensorFlow "
                        "(see hac_tf.downstream.onednn).", reason, ONEDNN_ENV)


class SavedModelFeatureBackbone(tf_keras.Model):
    """A hac_tf export as a Model Garden backbone (tf_keras functional model).

    Input: float32 ``[N, H, W, 3]`` images in [0, 1] with the fixed ``input_size``. Output: a dict
    ``{level: [N, h, w, C]}``; with ``level_naming="stride"`` ``h = H / 2**level`` (see the module
    doc). Weights: the
    ``hub.KerasLayer`` (``self.hub_layer``) holds the restored variables; with ``trainable=True``
    and ``training=True`` BatchNorm uses batch statistics and updates its moving averages.

    Args:
      path: export base path (latest version) or version directory.
      input_size: ``(H, W)`` or an int side.
      trainable: fine-tune the backbone.
      levels: keep only these levels (strings or ints, after renaming); None = all four.
      level_naming: "stride" (``log2`` of the measured stride) or "export" (``"2".."5"``).
    """

    def __init__(self, path: Union[str, os.PathLike], input_size: Union[int, Sequence[int]],
                 trainable: bool = True, levels: Optional[Sequence[Union[int, str]]] = None,
                 level_naming: str = "stride", name: str = "saved_model_backbone", **kwargs):
        import tensorflow_hub as hub

        from hac_tf.export import resolve_version_dir

        if level_naming not in ("stride", "export"):
            raise ValueError(f"level_naming must be 'stride' or 'export', got {level_naming!r}")
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        height, width = (int(v) for v in input_size)
        version_dir = resolve_version_dir(path)
        _warn_onednn_risk(version_dir, max(height, width), trainable)
        hub_layer = hub.KerasLayer(version_dir, trainable=trainable, name="saved_model")
        inputs = tf_keras.Input(shape=(height, width, 3), name="images")
        outputs = hub_layer(inputs)
        missing = [k for k in EXPORT_LEVEL_KEYS if k not in outputs]
        if missing:
            raise ValueError(f"{version_dir}: the export's __call__ returns no feature maps {missing} "
                             f"(keys: {sorted(outputs)}); is it a hac_tf backbone export?")
        rename = {}
        for key in EXPORT_LEVEL_KEYS:
            fh, fw = outputs[key].shape[1:3]
            if level_naming == "export":
                rename[key] = key
                continue
            stride_y, stride_x = height / fh, width / fw
            level = math.log2(stride_y)
            if stride_y != stride_x or abs(level - round(level)) > 1e-6:
                raise ValueError(
                    f"map {key!r} of {version_dir} is {fh}x{fw} for a {height}x{width} input: the stride "
                    "is not the same power of two on both axes; use an input size divisible by the "
                    "coarsest stride (or level_naming='export')")
            rename[key] = str(int(round(level)))
        endpoints = {rename[k]: outputs[k] for k in EXPORT_LEVEL_KEYS}
        if levels is not None:
            wanted = [str(level) for level in levels]
            bad = [level for level in wanted if level not in endpoints]
            if bad:
                raise ValueError(f"levels {bad} not among the backbone's levels {sorted(endpoints, key=int)}")
            endpoints = {k: endpoints[k] for k in wanted}
        super().__init__(inputs=inputs, outputs=endpoints, name=name, **kwargs)
        self.hub_layer = hub_layer
        self.version_dir = version_dir
        self.level_of_export_key = dict(rename)
        self._output_specs = {k: v.get_shape() for k, v in endpoints.items()}
        self._init_args = dict(path=version_dir, input_size=(height, width), trainable=trainable,
                               levels=None if levels is None else [str(v) for v in levels],
                               level_naming=level_naming, name=name)

    @property
    def output_specs(self) -> Dict[str, tf.TensorShape]:
        """``{level: TensorShape([None, h, w, c])}``, as Model Garden backbones report it."""
        return dict(self._output_specs)

    @property
    def levels(self) -> List[int]:
        return sorted(int(k) for k in self._output_specs)

    def get_config(self) -> Dict[str, Any]:
        return dict(self._init_args)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def backbone_images(example: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """A canvas element's uint8 ``image`` ``[..., H, W, 3]`` -> float32 in [0, 1], the input of
    :class:`SavedModelFeatureBackbone` (the export normalises internally)."""
    return tf.cast(example["image"], tf.float32) / 255.0
