"""Colour recording augmentations: colour jitter (random op order), grayscale, solarize.

The per-op functions follow torchvision's definitions (the paper's code is PyTorch), applied
per image with per-image factors:

  brightness b:  clip(b * x)
  contrast   c:  clip(c * x + (1 - c) * mean(gray(x)))     (mean over the whole image)
  saturation s:  clip(s * x + (1 - s) * gray(x))
  hue        h:  HSV hue rotated by h (fraction of the full circle), h in [-0.5, 0.5]

gray(x) = 0.299 R + 0.587 G + 0.114 B. Images are float32 [N,H,W,3] in [0,1]; factors [N].
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf

from hac_tf.augment.base import RecordingAugmentation, apply_to_rows, fire_float
from hac_tf.augment.params import ParamDict

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
#: op indices used in the recorded ``jitter_order``
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


def to_gray(images: tf.Tensor) -> tf.Tensor:
    """[N,H,W,3] -> [N,H,W,1] luma."""
    w = tf.constant(GRAY_WEIGHTS, images.dtype)
    return tf.reduce_sum(images * w, axis=-1, keepdims=True)


def _per_image(f: tf.Tensor) -> tf.Tensor:
    return tf.reshape(tf.cast(f, tf.float32), [-1, 1, 1, 1])


def adjust_brightness(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(images * _per_image(factor), 0.0, 1.0)


def adjust_contrast(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    f = _per_image(factor)
    mean = tf.reduce_mean(to_gray(images), axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value(f * images + (1.0 - f) * mean, 0.0, 1.0)


def adjust_saturation(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    f = _per_image(factor)
    return tf.clip_by_value(f * images + (1.0 - f) * to_gray(images), 0.0, 1.0)


def adjust_hue(images: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    hsv = tf.image.rgb_to_hsv(images)
    hue = tf.math.floormod(hsv[..., 0:1] + _per_image(shift), 1.0)
    return tf.clip_by_value(tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1)), 0.0, 1.0)


# The HSV round trip and each affine step are XLA-compiled: on CPU both ran several times faster
# than op by op, XLA fusing the luma, its per-image mean, the blend and the clip into two passes
# over the images (figures: docs/PERFORMANCE.md, optimisation 3). Each is compiled on its own:
# compiling the whole jitter as one cluster was slower (docs/PERFORMANCE.md, optimisation 6).
def _adjust_hue_where(images: tf.Tensor, shift: tf.Tensor, rotate: tf.Tensor) -> tf.Tensor:
    """:func:`adjust_hue` on the images where ``rotate`` [N] is True, the others unchanged."""
    return tf.where(tf.reshape(rotate, [-1, 1, 1, 1]), adjust_hue(images, shift), images)


_adjust_hue_xla = tf.function(_adjust_hue_where, jit_compile=True, autograph=False, reduce_retracing=True)


def _affine_step(images: tf.Tensor, a: tf.Tensor, g: tf.Tensor, m: tf.Tensor) -> tf.Tensor:
    """``clip(a*x + g*gray(x) + m*mean(gray(x)))`` per image (a, g, m: [N])."""
    gray = to_gray(images)
    mean = tf.reduce_mean(gray, axis=[1, 2, 3], keepdims=True)
    return tf.clip_by_value(_per_image(a) * images + _per_image(g) * gray + _per_image(m) * mean, 0.0, 1.0)


_affine_step_xla = tf.function(_affine_step, jit_compile=True, autograph=False, reduce_retracing=True)


def _grayscale_where(images: tf.Tensor, fire: tf.Tensor) -> tf.Tensor:
    """3-channel luma on the images where ``fire`` [N] is True, the others unchanged."""
    gray = tf.broadcast_to(to_gray(images), tf.shape(images))
    return tf.where(tf.reshape(fire, [-1, 1, 1, 1]), gray, images)


# One fused XLA pass over the (cache-resident, see ViewPolicy) chunk instead of gathering the
# firing rows, converting them op by op and scattering them back.
_grayscale_xla = tf.function(_grayscale_where, jit_compile=True, autograph=False, reduce_retracing=True)


def _hue_position(order: tf.Tensor) -> tf.Tensor:
    """int32 [N]: where the hue rotation comes in each row of ``order`` [N,4]."""
    return tf.argmax(tf.cast(order == HUE, tf.int32), axis=1, output_type=tf.int32)


def apply_jitter(images: tf.Tensor, factors: tf.Tensor, order: tf.Tensor,
                 fire: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Applies the four colour ops per image in the given order.

    Args:
      images: float32 [N,H,W,3].
      factors: float32 [N,4] (b, c, s, h).
      order: int32 [N,4], a permutation of (0,1,2,3) per image; step t applies op order[:, t].
      fire: optional bool [N]: images where it is False are returned unchanged (their factors
        and order are replaced by the identity, so the affine slots are exact identities, and
        their hue rotation is skipped inside the XLA hue kernel: no separate full-size select).

    The three affine ops are one per-image blend ``clip(a*x + g*gray(x) + m*mean(gray(x)))``
    (brightness: a=b; contrast: a=c, m=1-c; saturation: a=s, g=1-s; identity: a=1, g=m=0, which
    returns x exactly for x in [0, 1]). Every image has its hue rotation at some position k of
    its order, so the ops run as: three affine slots (slot t < k runs order[t], the others are
    identities), the hue rotation of every image once, three affine slots (slot t > k runs
    order[t]). That is the same sequence of float ops per image as the four steps in order, but
    one HSV round trip instead of four (the hue used to be computed for every image at every
    step and selected). Both kernels are XLA-compiled. No dynamic shapes. A slot that is the
    identity on every row, and the hue kernel when no row fires, are skipped (the result is the
    same bit for bit); a view policy groups its rows by :func:`jitter_row_group`, so that most of
    its chunks run 3 of the 6 affine slots.
    """
    x = images
    factors = tf.cast(factors, tf.float32)
    order = tf.cast(order, tf.int32)
    if fire is None:
        fire = tf.ones([tf.shape(factors)[0]], tf.bool)
    else:
        fire = tf.cast(fire, tf.bool)
        factors = tf.where(fire[:, None], factors, tf.constant([[1.0, 1.0, 1.0, 0.0]]))
        order = tf.where(fire[:, None], order, tf.constant([[0, 1, 2, 3]], tf.int32))
    b, c, s, h = tf.unstack(factors, axis=1)
    hue_position = _hue_position(order)

    def coefficients(op: tf.Tensor):
        a = tf.where(op == BRIGHTNESS, b, tf.where(op == CONTRAST, c, tf.where(op == SATURATION, s, 1.0)))
        return a, tf.where(op == SATURATION, 1.0 - s, 0.0), tf.where(op == CONTRAST, 1.0 - c, 0.0)

    def affine_slot(x: tf.Tensor, op: tf.Tensor) -> tf.Tensor:
        # op -1 is the identity; a slot that is the identity on every row is skipped (bit-identical)
        op = tf.where(fire, op, -1)
        return tf.cond(tf.reduce_any(op >= 0), lambda: _affine_step_xla(x, *coefficients(op)),
                       lambda: tf.identity(x))

    for step in range(3):  # before the hue rotation
        x = affine_slot(x, tf.where(step < hue_position, order[:, step], -1))
    x = tf.cond(tf.reduce_any(fire), lambda: _adjust_hue_xla(x, h, fire), lambda: tf.identity(x))
    for step in range(1, 4):  # after it
        x = affine_slot(x, tf.where(step > hue_position, order[:, step], -1))
    return x


def jitter_row_group(transformation: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, int]:
    """int32 [N] in [0, 5): 0 = not jittered, 1 + the position of the hue rotation in the order.

    Rows of one group need the same affine slots of :func:`apply_jitter` (a chunk of them runs
    3 of its 6 slots, the others being identities on every row, and none when not jittered).
    """
    hue_position = _hue_position(tf.cast(transformation["order"], tf.int32))
    return tf.where(tf.cast(transformation["fire"], tf.bool), hue_position + 1, 0), 5


class RecordingColorJitter(RecordingAugmentation):
    """torchvision ColorJitter(b, c, s, h) applied with probability p, random op order per image.

    Factors: b, c, s ~ U[1 - m, 1 + m] (m = 0.4 by default), hue shift ~ U[-m_h, m_h].
    Records ``jitter`` (identity 1,1,1,0 when not applied), ``jitter_applied`` and
    ``jitter_order`` (identity 0,1,2,3 when not applied).

    ``magnitude`` (optional) overrides the strengths per image: float [N,4].
    """

    records = ("jitter", "jitter_applied", "jitter_order")

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        probability: float = 0.8,
        seed: Optional[int] = None,
        **kwargs: Any,
    ):
        super().__init__(probability=probability, seed=seed, **kwargs)
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"ColorJitter: {name} strength must be in [0, 1], got {v}")
        if not 0.0 <= float(hue) <= 0.5:
            raise ValueError(f"ColorJitter: hue strength must be in [0, 0.5], got {hue}")
        self.strengths = (float(brightness), float(contrast), float(saturation), float(hue))

    def sample(self, batch_size, images, seed, fire, magnitude):
        if magnitude is None:
            m = tf.constant(self.strengths, tf.float32)[None, :]
        else:
            m = tf.reshape(tf.cast(magnitude, tf.float32), [-1, 4])
        u = tf.random.stateless_uniform([batch_size, 4], seed=self.sub_seed(seed, 1), minval=-1.0, maxval=1.0)
        factors = u * m + tf.constant([1.0, 1.0, 1.0, 0.0])
        order = tf.argsort(
            tf.random.stateless_uniform([batch_size, 4], seed=self.sub_seed(seed, 2)), axis=1
        )
        identity_f = tf.constant([[1.0, 1.0, 1.0, 0.0]])
        identity_o = tf.constant([[0, 1, 2, 3]], tf.int32)
        fire2 = fire[:, None]
        return {
            "fire": fire,
            "factors": tf.where(fire2, factors, identity_f),
            "order": tf.where(fire2, order, identity_o),
        }

    def apply(self, images, transformation):
        return apply_jitter(images, transformation["factors"], transformation["order"], transformation["fire"])

    def row_group(self, transformation):
        return jitter_row_group(transformation)

    def record(self, params: ParamDict, transformation) -> ParamDict:
        params["jitter"] = transformation["factors"]
        params["jitter_applied"] = fire_float(transformation["fire"])
        params["jitter_order"] = tf.cast(transformation["order"], tf.float32)
        return params

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        b, c, s, h = self.strengths
        config.update({"brightness": b, "contrast": c, "saturation": s, "hue": h})
        return config


class RecordingRandomGrayscale(RecordingAugmentation):
    """Converts to 3-channel grayscale with probability p; records ``grayscale``."""

    records = ("grayscale",)

    def __init__(self, probability: float = 0.2, seed: Optional[int] = None, **kwargs: Any):
        super().__init__(probability=probability, seed=seed, **kwargs)

    def sample(self, batch_size, images, seed, fire, magnitude):
        return {"fire": fire}

    def apply(self, images, transformation):
        fire = tf.cast(transformation["fire"], tf.bool)
        return tf.cond(tf.reduce_any(fire), lambda: _grayscale_xla(images, fire), lambda: tf.identity(images))

    def record(self, params: ParamDict, transformation) -> ParamDict:
        params["grayscale"] = tf.maximum(params["grayscale"], fire_float(transformation["fire"]))
        return params


class RecordingRandomSolarize(RecordingAugmentation):
    """Inverts pixels >= threshold (x -> 1 - x) with probability p; records ``solarize``."""

    records = ("solarize",)

    def __init__(self, probability: float = 0.2, threshold: float = 0.5, seed: Optional[int] = None, **kwargs: Any):
        super().__init__(probability=probability, seed=seed, **kwargs)
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"Solarize: threshold must be in [0, 1], got {threshold}")
        self.threshold = float(threshold)

    def sample(self, batch_size, images, seed, fire, magnitude):
        return {"fire": fire}

    def apply(self, images, transformation):
        threshold = self.threshold
        return apply_to_rows(transformation["fire"], images,
                             lambda rows, _: tf.where(rows >= threshold, 1.0 - rows, rows))

    def record(self, params: ParamDict, transformation) -> ParamDict:
        params["solarize"] = fire_float(transformation["fire"])
        return params

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config["threshold"] = self.threshold
        return config
