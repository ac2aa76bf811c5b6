"""Base class of the parameter-recording augmentation layers.

Every recording layer is a KerasCV ``VectorizedBaseImageAugmentationLayer``: one batched
transformation per call (no per-image ``while_loop``). It takes and returns a dict

    {"images": float32 [N,H,W,3] in [0,1],
     "params": recorded-parameter dict (see ``hac_tf.augment.params``),
     "seed":   optional int32/int64 [2] stateless seed,
     "enabled": optional bool/float [N] -- images for which this layer may fire at all,
     "probability": optional float [N] -- per-image override of the layer's probability,
     "magnitude": optional float [N] -- per-image override of the layer's strength}

and writes what it did into ``params`` (identity values where it did not fire).

Randomness is *stateless*: with a ``seed`` in the inputs the output is a pure function of
(images, seed), which makes views reproducible and lets a resumed run regenerate exactly
the views of any step. Without a seed the layer draws one from its own
``tf.random.Generator`` (seeded by the constructor's ``seed``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import tensorflow as tf
from keras_cv.layers import VectorizedBaseImageAugmentationLayer

from hac_tf.augment.params import ParamDict, identity_params

# Distinct salts so that layers sharing one input seed draw independent numbers.
_LAYER_SALTS: Dict[str, int] = {}


def _salt_for(name: str) -> int:
    if name not in _LAYER_SALTS:
        # Stable across processes: derived from the name's bytes, not Python's hash().
        _LAYER_SALTS[name] = sum((i + 1) * b for i, b in enumerate(name.encode())) % (2**31 - 1)
    return _LAYER_SALTS[name]


class RecordingAugmentation(VectorizedBaseImageAugmentationLayer):
    """A batched augmentation that records the exact parameters it sampled.

    Subclasses implement:
      * ``sample(batch_size, images, seed, probability, magnitude) -> dict`` of tensors,
        every tensor with leading dimension N (the "transformation batch");
      * ``apply(images, transformation) -> images``;
      * ``record(params, transformation) -> params``.

    Args:
      probability: chance in [0,1] that the layer fires on an image.
      seed: seed of the fallback generator used when no stateless seed is passed.
    """

    #: the recorded-parameter keys this layer writes (documentation and tests).
    records: tuple[str, ...] = ()

    def __init__(self, probability: float = 1.0, seed: Optional[int] = None, **kwargs: Any):
        # KerasCV falls back to TF's *global* generator for a falsy seed, which op determinism
        # forbids; use a fixed fallback seed instead (draws are salted per layer class anyway).
        super().__init__(seed=seed if seed else 0x5EED, **kwargs)
        probability = float(probability)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"{type(self).__name__}: probability must be in [0, 1], got {probability}")
        self.probability = probability
        self._seed_arg = seed
        self._salt = _salt_for(type(self).__name__)

    # ----------------------------------------------------------------- randomness
    def _stateless_seed(self, seed: Optional[tf.Tensor]) -> tf.Tensor:
        if seed is None:
            seed = self._random_generator.make_seeds(1)[:, 0]
        seed = tf.cast(tf.reshape(seed, [2]), tf.int64)
        return tf.random.experimental.stateless_fold_in(seed, self._salt)

    @staticmethod
    def sub_seed(seed: tf.Tensor, index: int) -> tf.Tensor:
        """Independent stateless seed number ``index`` derived from ``seed``."""
        return tf.random.experimental.stateless_fold_in(seed, index)

    def fire_mask(
        self,
        batch_size: tf.Tensor,
        seed: tf.Tensor,
        probability: Optional[tf.Tensor],
        enabled: Optional[tf.Tensor],
    ) -> tf.Tensor:
        """bool [N]: which images this layer transforms (Bernoulli(p) AND enabled)."""
        p = self.probability if probability is None else tf.cast(probability, tf.float32)
        u = tf.random.stateless_uniform([batch_size], seed=self.sub_seed(seed, 0))
        fire = u < p
        if enabled is not None:
            fire = tf.logical_and(fire, tf.cast(enabled, tf.bool))
        return fire

    # ----------------------------------------------------------------- interface
    def sample(
        self,
        batch_size: tf.Tensor,
        images: tf.Tensor,
        seed: tf.Tensor,
        fire: tf.Tensor,
        magnitude: Optional[tf.Tensor],
    ) -> Dict[str, tf.Tensor]:
        raise NotImplementedError

    def apply(self, images: tf.Tensor, transformation: Dict[str, tf.Tensor]) -> tf.Tensor:
        raise NotImplementedError

    def record(self, params: ParamDict, transformation: Dict[str, tf.Tensor]) -> ParamDict:
        raise NotImplementedError

    def row_group(self, transformation: Dict[str, tf.Tensor]) -> Optional[Tuple[tf.Tensor, int]]:
        """``(group, n)``: int32 [N] in [0, n) such that rows of one group cost this layer the same
        work (here: whether it fires), or None. A view policy processes the rows group by group
        in its chunks, so that most chunks are all-firing or all-skipping (see ``apply_to_rows``).
        """
        if "fire" not in transformation:
            return None
        return tf.cast(transformation["fire"], tf.int32), 2

    # KerasCV hooks ---------------------------------------------------------------
    def get_random_transformation_batch(self, batch_size, images=None, **kwargs):
        seed = self._stateless_seed(kwargs.get("seed"))
        fire = self.fire_mask(batch_size, seed, kwargs.get("probability"), kwargs.get("enabled"))
        return self.sample(batch_size, images, seed, fire, kwargs.get("magnitude"))

    def augment_images(self, images, transformations, **kwargs):
        return self.apply(images, transformations)

    def _format_inputs(self, inputs):
        if tf.is_tensor(inputs):
            inputs = {"images": inputs}
        if not isinstance(inputs, dict) or "images" not in inputs:
            raise ValueError(f"{type(self).__name__} expects a dict with 'images'; got {type(inputs).__name__}")
        if inputs["images"].shape.rank != 4:
            raise ValueError(
                f"{type(self).__name__} expects a batch of images [N,H,W,3]; got shape {inputs['images'].shape}"
            )
        return super()._format_inputs(inputs)

    def _batch_augment(self, inputs):
        images = inputs["images"]
        # A crop may read its rows from a smaller source batch ("source_index" [N]).
        source_index = inputs.get("source_index")
        batch_size = tf.shape(images)[0] if source_index is None else tf.shape(source_index)[0]
        params = inputs.get("params")
        if params is None:
            params = identity_params(batch_size)
        transformation = self.get_random_transformation_batch(
            batch_size,
            images=images,
            seed=inputs.get("seed"),
            probability=inputs.get("probability"),
            enabled=inputs.get("enabled"),
            magnitude=inputs.get("magnitude"),
        )
        if source_index is not None:
            transformation["source_index"] = source_index
        if inputs.get("mirror") is not None:  # a crop can flip rows for free (see ViewPolicy)
            transformation["mirror"] = inputs["mirror"]
        out = dict(inputs)
        out["images"] = self.augment_images(images, transformation)
        out["params"] = self.record(dict(params), transformation)
        return out

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"probability": self.probability, "seed": self._seed_arg})
        return config


def fire_float(fire: tf.Tensor) -> tf.Tensor:
    """bool [N] -> float32 [N,1]."""
    return tf.cast(fire, tf.float32)[:, tf.newaxis]


def apply_to_rows(
    fire: tf.Tensor, images: tf.Tensor, fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
) -> tf.Tensor:
    """``fn(rows, index)`` on the images where ``fire`` [N] is True; the others are untouched.

    ``rows`` is ``[K,H,W,C]`` (the firing images), ``index`` int64 ``[K]`` their positions (to
    gather per-row parameters). One gather and one scatter replace computing the op on all N rows
    and selecting: with the add-one policies most rows do not fire (flip fires on 1/8 of them,
    grayscale 3/20, blur 1/4), so this is several times cheaper for these full-image ops.
    Per-row ops only (the output of a row must not depend on the other rows).

    Where no row fires the images are returned as they are, where all fire ``fn`` runs on them
    directly (no gather/scatter copies): with the rows grouped by firing (``row_group``), most
    chunks of a view policy are one or the other.
    """
    fire = tf.cast(fire, tf.bool)

    def some() -> tf.Tensor:
        index = tf.where(fire)[:, 0]
        rows = tf.gather(images, index)
        return tf.tensor_scatter_nd_update(images, index[:, tf.newaxis], fn(rows, index))

    def every() -> tf.Tensor:
        return tf.ensure_shape(fn(images, tf.range(tf.shape(images, out_type=tf.int64)[0])), images.shape)

    return tf.cond(tf.reduce_all(fire), every,
                   lambda: tf.cond(tf.reduce_any(fire), some, lambda: tf.identity(images)))


def where_images(fire: tf.Tensor, transformed: tf.Tensor, original: tf.Tensor) -> tf.Tensor:
    """Selects per image: transformed where fire [N] is True, else original."""
    return tf.where(tf.reshape(fire, [-1, 1, 1, 1]), transformed, original)
