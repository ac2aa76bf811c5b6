"""Gaussian blur with a per-image sigma, batched as one separable depthwise convolution.

The batch is folded into the channel axis ([N,H,W,3] -> [1,H,W,3N]) so that a single
``tf.nn.depthwise_conv2d`` applies N different kernels at once (no per-image loop). Padding is
reflection (``REFLECT``) as in torchvision's GaussianBlur.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf

from hac_tf.augment.base import RecordingAugmentation, apply_to_rows


def default_kernel_size(image_size: int) -> int:
    """The paper code's kernel size: S // 20 * 2 + 1 (23 at 224 px, 9 at 96, 3 at 32)."""
    return int(image_size) // 20 * 2 + 1


def gaussian_kernels(sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
    """float32 [N,K] normalised 1-D Gaussian kernels; sigma <= 0 gives a delta (identity)."""
    half = (kernel_size - 1) / 2.0
    t = tf.linspace(-half, half, kernel_size)[None, :]
    s = tf.reshape(tf.cast(sigma, tf.float32), [-1, 1])
    safe = tf.maximum(s, 1e-6)
    g = tf.exp(-0.5 * tf.square(t / safe))
    g = g / tf.reduce_sum(g, axis=1, keepdims=True)
    delta = tf.cast(tf.equal(t, 0.0), tf.float32) * tf.ones_like(s)
    return tf.where(s > 0.0, g, delta)


def apply_gaussian_blur(images: tf.Tensor, sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
    """Blurs each image [N,H,W,C] with its own sigma [N] (0 = unchanged).

    Requires kernel_size // 2 < H and < W (reflection padding). An empty batch (N = 0, e.g. no
    row of a chunk fires) is returned as is (the convolution rejects zero channels).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"Gaussian blur kernel size must be a positive odd number, got {kernel_size}")
    if kernel_size == 1:
        return images
    return tf.cond(tf.size(images) > 0, lambda: _blur_nonempty(images, sigma, kernel_size), lambda: images)


def reflect_pad(x: tf.Tensor, pad: int, axis: int) -> tf.Tensor:
    """Pads ``pad`` reflected entries (edge not repeated, like REFLECT) on both sides of ``axis``.

    Two reversed slices and a concat: faster than TF's MirrorPad on CPU (figures:
    docs/PERFORMANCE.md, optimisation 7). Needs pad < size of ``axis``.
    """
    n = tf.shape(x)[axis]
    begin = [0] * x.shape.rank

    def part(start: tf.Tensor) -> tf.Tensor:
        b = list(begin)
        b[axis] = start
        size = [-1] * x.shape.rank
        size[axis] = pad
        return tf.reverse(tf.slice(x, b, size), [axis])

    return tf.concat([part(1), x, part(n - pad - 1)], axis)


def _blur_nonempty(images: tf.Tensor, sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
    shape = tf.shape(images)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    k = gaussian_kernels(sigma, kernel_size)  # [N,K]
    k = tf.repeat(k, c, axis=0)  # [N*C,K], channel-major per image
    folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, n * c])
    pad = kernel_size // 2
    x = reflect_pad(folded, pad, axis=1)
    kv = tf.transpose(k)[:, None, :, None]  # [K,1,N*C,1]
    x = tf.nn.depthwise_conv2d(x, kv, strides=[1, 1, 1, 1], padding="VALID")
    x = reflect_pad(x, pad, axis=2)
    kh = tf.transpose(k)[None, :, :, None]  # [1,K,N*C,1]
    x = tf.nn.depthwise_conv2d(x, kh, strides=[1, 1, 1, 1], padding="VALID")
    out = tf.transpose(tf.reshape(x, [h, w, n, c]), [2, 0, 1, 3])
    return tf.ensure_shape(out, images.shape)


class RecordingGaussianBlur(RecordingAugmentation):
    """Gaussian blur with sigma ~ U[sigma_min, sigma_max] per image, probability p.

    Records ``blur_sigma`` (0 when not applied).

    Args:
      kernel_size: odd kernel side K.
      sigma: (min, max) of the uniform sigma range, in pixels.
    """

    records = ("blur_sigma",)

    def __init__(
        self,
        kernel_size: int,
        sigma: Sequence[float] = (0.1, 2.0),
        probability: float = 0.5,
        seed: Optional[int] = None,
        **kwargs: Any,
    ):
        super().__init__(probability=probability, seed=seed, **kwargs)
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"GaussianBlur: kernel_size must be a positive odd number, got {kernel_size}")
        if not 0.0 < float(sigma[0]) <= float(sigma[1]):
            raise ValueError(f"GaussianBlur: need 0 < sigma[0] <= sigma[1], got {tuple(sigma)}")
        self.kernel_size = int(kernel_size)
        self.sigma = (float(sigma[0]), float(sigma[1]))

    def sample(self, batch_size, images, seed, fire, magnitude):
        s = tf.random.stateless_uniform(
            [batch_size], seed=self.sub_seed(seed, 1), minval=self.sigma[0], maxval=self.sigma[1]
        )
        return {"sigma": tf.where(fire, s, tf.zeros_like(s))}

    def apply(self, images, transformation):
        sigma = transformation["sigma"]
        kernel_size = self.kernel_size
        return apply_to_rows(sigma > 0.0, images,
                             lambda rows, index: apply_gaussian_blur(rows, tf.gather(sigma, index), kernel_size))

    def row_group(self, transformation):
        return tf.cast(transformation["sigma"] > 0.0, tf.int32), 2

    def record(self, params, transformation):
        params["blur_sigma"] = transformation["sigma"][:, None]
        return params

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "sigma": self.sigma})
        return config
