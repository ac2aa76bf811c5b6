"""Shared building blocks for the backbone, the stage branches and the heads.

Conventions (see docs/METHODS.md#porting-conventions):
  * BatchNorm comes from one factory, :func:`batch_norm` (PyTorch momentum 0.1 == Keras 0.9,
    epsilon 1e-5), optionally synchronized across replicas, and optionally per view
    (:func:`per_view_batch_norm`: a batch of concatenated views is normalised view by view).
  * PyTorch-style padding: an explicit ``ZeroPadding2D(pad)`` followed by a ``valid`` conv
    where Keras' ``same`` would differ (stride 2: it pads asymmetrically); ``same`` for stride-1
    convs with symmetric padding, where it is identical.
  * Conv kernels use Kaiming-normal with fan_out (torchvision ResNet init); convs followed by BN
    have no bias.

Composite layers in this package build their children explicitly (shape chaining through
``compute_output_shape``) so that every weight exists right after ``build`` and
``count_params()`` works without a forward pass.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Iterable, Optional, Sequence, Tuple

import keras
import tensorflow as tf

Shape = Tuple[Optional[int], ...]

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)


def conv_initializer() -> keras.initializers.Initializer:
    """Kaiming-normal, fan_out, ReLU gain (torchvision ``kaiming_normal_(mode="fan_out")``)."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def depthwise_initializer() -> keras.initializers.Initializer:
    """Kaiming-normal fan_out as PyTorch computes it for a grouped conv.

    PyTorch's fan_out of a depthwise weight ``[C,1,3,3]`` is ``C*9``; Keras' fan_in of the
    depthwise kernel ``[3,3,C,1]`` is ``C*9`` (its fan_out is 9), hence ``mode="fan_in"`` here.
    """
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal"
    )


def dense_initializer() -> keras.initializers.Initializer:
    """PyTorch ``nn.Linear`` default kernel init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


_FUSED_DTYPES = (tf.float32, tf.bfloat16, tf.float16)

_VIEW_GROUPS: contextvars.ContextVar[int] = contextvars.ContextVar("hac_tf_bn_view_groups", default=1)


@contextlib.contextmanager
def per_view_batch_norm(groups: int) -> Iterator[None]:
    """Inside the block, every project BatchNorm called in training mode on a batch of ``groups``
    equal, concatenated chunks (``[groups * B, ...]``, e.g. ``concat[view_a, view_b]``) normalises
    each chunk with its own batch statistics and updates its moving statistics once per chunk, in
    order -- exactly as calling the layer on each view separately (the paper's PyTorch code
    encodes the two views of a pair in two calls). ``groups=1`` is the ordinary behaviour (one set
    of statistics for the whole batch). Inference (``training=False``) is unaffected.

    The setting is read when the layer is called, i.e. when a ``tf.function`` is traced.
    """
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"per_view_batch_norm: groups must be an int >= 1, got {groups!r}")
    token = _VIEW_GROUPS.set(groups)
    try:
        yield
    finally:
        _VIEW_GROUPS.reset(token)


def batch_norm_view_groups() -> int:
    """The number of per-view chunks BatchNorm splits a training batch into (1: none)."""
    return _VIEW_GROUPS.get()


@keras.saving.register_keras_serializable(package="hac_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras ``BatchNormalization`` computed by TF's fused kernel (``FusedBatchNormV3``).

    Same variables, same semantics, same results up to float rounding as the Keras layer, which
    computes BN from ~10 separate element-wise and reduction ops (``tf.nn.moments`` +
    ``tf.nn.batch_normalization``) and their gradients. The fused oneDNN kernel and its fused
    gradient are faster per BN layer on the ResNet shapes here (forward + backward, fp32 and
    bf16; figures: docs/PERFORMANCE.md, optimisation 1). Inputs: ``[N, H, W, C]`` or ``[N, C]``
    (viewed as ``[N, 1, 1, C]``), channels last.

    * Batch statistics: mean and *biased* variance over N(, H, W), as Keras (the fused kernel's
      variance output is Bessel-corrected; it is rescaled by ``(n - 1) / n`` before the moving
      averages ``moving = momentum * moving + (1 - momentum) * batch`` are updated).
    * Under ``mixed_bfloat16`` the kernel takes bf16 inputs and float32 scale/offset/statistics.
    * Everything else — a mask, renorm, other ranks/axes, float64 — falls back to the Keras
      computation, as does a synchronized subclass with more than one replica.
    """

    def _fusable(self, inputs, mask) -> bool:
        rank = inputs.shape.rank
        return (
            mask is None
            and not self.renorm
            and rank in (2, 4)
            and self.axis in (-1, rank - 1)
            and inputs.dtype in _FUSED_DTYPES
        )

    def call(self, inputs, training=None, mask=None):
        groups = batch_norm_view_groups()
        if groups > 1 and training and self.trainable:
            batch = inputs.shape[0]
            if batch is not None and batch % groups:
                raise ValueError(f"{self.name}: per-view BatchNorm splits the batch into {groups} views, but "
                                 f"its size {batch} is not a multiple of {groups}")
            chunks = tf.split(inputs, groups, axis=0)
            masks = [None] * groups if mask is None else tf.split(mask, groups, axis=0)
            return tf.concat([self._normalize(x, training, m) for x, m in zip(chunks, masks)], axis=0)
        return self._normalize(inputs, training, mask)

    def _normalize(self, inputs, training=None, mask=None):
        """One BatchNorm pass over ``inputs`` (all rows share the batch statistics)."""
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        x = inputs
        if inputs.shape.rank == 2:
            x = tf.reshape(x, [-1, 1, 1, channels])
        gamma = self.gamma if self.scale else tf.ones([channels], tf.float32)
        beta = self.beta if self.center else tf.zeros([channels], tf.float32)
        gamma = tf.cast(gamma, tf.float32)
        beta = tf.cast(beta, tf.float32)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
            count = tf.cast(tf.size(x, out_type=tf.int64) // channels, tf.float32)
            variance = variance * tf.maximum(count - 1.0, 1.0) / tf.maximum(count, 1.0)  # biased, as Keras
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
                data_format="NHWC", is_training=False)
        if inputs.shape.rank == 2:
            y = tf.reshape(y, tf.shape(inputs))
        return tf.cast(y, self.compute_dtype)


@keras.saving.register_keras_serializable(package="hac_tf")
class SyncBatchNormalization(FusedBatchNormalization):
    """Cross-replica BatchNorm with two-pass statistics.

    The batch statistics are those of the *global* batch (all replicas), computed like
    ``tf.nn.moments`` on one device: the all-reduced sum gives the mean, then the all-reduced sum
    of squared deviations from that mean gives the (biased) variance. Keras' own
    ``synchronized=True`` uses E[x^2] - E[x]^2 from all-reduced sums, which loses precision in
    float32 when |mean| >> std. Both are differentiable end to end: the gradient of
    ``ReplicaContext.all_reduce(SUM)`` all-reduces the incoming gradients, so the backward pass
    uses the global statistics' gradients too (checked against one device in float64 in
    ``tests/models/test_models_sync_gradients.py``). A mask (the inputs' shape without the
    channel axis) selects the positions that count, across replicas too. With one replica (or
    outside a replica context) it is exactly :class:`FusedBatchNormalization`.

    Note when comparing float32 gradients of one device and N replicas: they are two different
    roundings of the same function and can differ by a few per cent on parameters whose exact
    gradient is ~0 (e.g. the gamma of a BN followed, channel-wise and positively homogeneously, by
    another BN, such as ``attention_sepconv/bn2`` of a stage branch) or where a ReLU input lies
    within rounding of 0. Compare in float64 to test correctness.
    """

    def __init__(self, **kwargs):
        kwargs["synchronized"] = True
        super().__init__(**kwargs)

    def _fusable(self, inputs, mask) -> bool:
        ctx = tf.distribute.get_replica_context()
        return (ctx is None or ctx.num_replicas_in_sync == 1) and super()._fusable(inputs, mask)

    def _moments(self, inputs, mask):
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            # Local statistics, exactly as the unsynchronized Keras layer (tf.nn.moments; Keras'
            # masked path is local anyway).
            if mask is None:
                return tf.nn.moments(inputs, axes=self._reduction_axes)
            return super()._moments(inputs, mask)
        # ``call`` has already upcast ``inputs`` to at least float32 (float64 stays float64).
        axes = self._reduction_axes
        x = inputs
        if mask is None:
            weight = None
            count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
            local_sum = tf.reduce_sum(x, axis=axes)
        else:
            weight = tf.cast(tf.broadcast_to(tf.expand_dims(mask, -1), tf.shape(x)), x.dtype)
            count = tf.reduce_sum(weight, axis=axes)
            local_sum = tf.reduce_sum(weight * x, axis=axes)
        total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
        if mask is not None:
            total = tf.maximum(total, tf.ones_like(total))  # an all-masked channel: mean 0, var 0
        mean = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_sum) / total
        # As in tf.nn.moments, no gradient flows into the mean through the deviations: that term
        # is -2 * sum(w * (x - mean)) * dvar / N, exactly 0 once summed over the replicas (which
        # the all-reduce gradient does), so dropping it only removes rounding noise.
        dev2 = tf.math.squared_difference(x, tf.stop_gradient(mean))
        if weight is not None:
            dev2 = weight * dev2
        variance = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(dev2, axis=axes)) / total
        return mean, variance

    def get_config(self):
        config = super().get_config()
        config.pop("synchronized", None)
        return config


def batch_norm(
    synchronized: bool = False,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    gamma_zero: bool = False,
    center: bool = True,
    scale: bool = True,
    name: Optional[str] = None,
) -> keras.layers.BatchNormalization:
    """The one BatchNorm factory of the project (channels-last, axis -1).

    Args:
      synchronized: cross-replica (SyncBN) statistics under a ``tf.distribute`` strategy; on a
        single device it behaves like ordinary BN.
      momentum: Keras moving-average momentum (= 1 - PyTorch momentum).
      epsilon: variance epsilon (PyTorch default 1e-5).
      gamma_zero: initialise gamma to 0 (zero-init of the last BN in a residual block).
      center, scale: False gives PyTorch ``affine=False`` (no beta / gamma).
    """
    kwargs = dict(
        axis=-1,
        momentum=momentum,
        epsilon=epsilon,
        center=center,
        scale=scale,
        gamma_initializer="zeros" if gamma_zero else "ones",
        name=name,
    )
    if synchronized:
        return SyncBatchNormalization(**kwargs)
    return FusedBatchNormalization(**kwargs)


# Largest output map (H_out * W_out) whose conv weight gradient is computed as one matmul over
# im2col patches instead of oneDNN's Conv2DBackpropFilter, per compute dtype: the largest map
# where the matmul was not slower than the native op, measured per ResNet-18 conv shape on the
# 2-core AVX512_BF16 machine (the per-shape table: docs/PERFORMANCE.md, optimisation 2).
IM2COL_FILTER_GRAD_MAX_POSITIONS = {tf.float32: 16, tf.bfloat16: 36}


def im2col_filter_grad(x: tf.Tensor, dy: tf.Tensor, kernel_shape, strides, padding: str) -> tf.Tensor:
    """Weight gradient of ``conv2d(x, kernel, strides, padding)`` (NHWC) as one matmul.

    ``patches(x)^T @ dy`` with ``patches = extract_patches(x)`` reshaped to
    ``[N*Ho*Wo, kh*kw*Cin]`` and ``dy`` to ``[N*Ho*Wo, Cout]``; returns ``[kh, kw, Cin, Cout]``
    (same values as ``Conv2DBackpropFilter``; TF's ``SAME``/``VALID`` padding of patches and
    convs agree).
    """
    kh, kw, cin, cout = kernel_shape
    patches = tf.image.extract_patches(x, [1, kh, kw, 1], [1, strides[0], strides[1], 1], [1, 1, 1, 1],
                                       padding)
    cols = tf.reshape(patches, [-1, kh * kw * cin])
    grad = tf.matmul(cols, tf.reshape(dy, [-1, cout]), transpose_a=True)
    return tf.reshape(grad, [kh, kw, cin, cout])


@keras.saving.register_keras_serializable(package="hac_tf")
class SmallMapConv2D(keras.layers.Conv2D):
    """Keras ``Conv2D`` whose weight gradient on small maps is an im2col matmul.

    The forward pass and the input gradient are the native ops. When the output map has at most
    ``IM2COL_FILTER_GRAD_MAX_POSITIONS[dtype]`` positions (static shape), the kernel gradient is
    :func:`im2col_filter_grad` — oneDNN's ``Conv2DBackpropFilter`` runs far below the machine's
    matmul speed on 1x1-4x4 maps (stages 3-4 at 32-96 px), the matmul does not
    (docs/PERFORMANCE.md, optimisation 2).
    Dilation 1, channels last, no groups (as every conv of this package).
    """

    def _use_im2col(self, inputs) -> bool:
        limit = IM2COL_FILTER_GRAD_MAX_POSITIONS.get(inputs.dtype)
        shape = inputs.shape
        if limit is None or shape.rank != 4 or shape[1] is None or shape[2] is None:
            return False
        if self.data_format != "channels_last" or tuple(self.dilation_rate) != (1, 1) or self.groups != 1:
            return False
        out_h, out_w = self.compute_output_shape(tuple(shape))[1:3]
        return out_h * out_w <= limit

    def convolution_op(self, inputs, kernel):
        if not self._use_im2col(inputs):
            return super().convolution_op(inputs, kernel)
        strides = [1, self.strides[0], self.strides[1], 1]
        padding = self.padding.upper()

        @tf.custom_gradient
        def conv(x, k):
            y = tf.nn.conv2d(x, k, strides, padding)

            def grad(dy):
                dx = tf.compat.v1.nn.conv2d_backprop_input(tf.shape(x), k, dy, strides, padding)
                dk = im2col_filter_grad(x, dy, k.shape, self.strides, padding)
                return dx, dk

            return y, grad

        return conv(inputs, tf.cast(kernel, inputs.dtype))


def conv_layers(
    filters: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    name: str = "conv",
) -> list:
    """A PyTorch ``Conv2d(bias=False, padding=padding)`` as Keras layers.

    Stride 1 with ``padding == (kernel_size - 1) // 2`` (odd kernel) is ``[Conv2D(same)]``: TF's
    ``same`` pads symmetrically then, so the result is identical and the separate pad op (and its
    gradient, a slice) is saved. Otherwise ``[ZeroPadding2D(padding)?, Conv2D(valid)]``: for
    stride 2 TF's ``same`` pads asymmetrically (more at the bottom/right), PyTorch does not.
    """
    same = stride == 1 and kernel_size % 2 == 1 and padding == (kernel_size - 1) // 2 and padding > 0
    out: list = []
    if padding > 0 and not same:
        out.append(keras.layers.ZeroPadding2D(padding, name=f"{name}_pad"))
    out.append(
        SmallMapConv2D(
            filters,
            kernel_size,
            strides=stride,
            padding="same" if same else "valid",
            use_bias=False,
            kernel_initializer=conv_initializer(),
            name=name,
        )
    )
    return out


def depthwise_compute_dtype() -> Optional[str]:
    """Policy for depthwise convs: float32 under the global ``mixed_bfloat16`` policy, else None
    (inherit the global policy).

    Evidence (a tools/profile_train.py profile on a 2-core AVX512_BF16 CPU): TF 2.20's oneDNN
    bf16 ``DepthwiseConv2dNativeBackpropInput`` is many times slower than the float32 kernel
    (figures: docs/PERFORMANCE.md, "Choices and their evidence"). The weights are float32 either
    way, so checkpoints do not depend on this choice.
    """
    return "float32" if keras.config.dtype_policy().name == "mixed_bfloat16" else None


def depthwise_layers(stride: int = 1, name: str = "dw") -> list:
    """A PyTorch depthwise ``Conv2d(C, C, 3, stride, padding=1, groups=C, bias=False)``:
    ``[DepthwiseConv2D(3x3, same)]`` for stride 1 (symmetric, identical), else
    ``[ZeroPadding2D(1), DepthwiseConv2D(3x3, stride, valid)]`` (see :func:`conv_layers`; and
    :func:`depthwise_compute_dtype` for their precision under mixed bfloat16)."""
    dtype = depthwise_compute_dtype()
    pad = [] if stride == 1 else [keras.layers.ZeroPadding2D(1, name=f"{name}_pad", dtype=dtype)]
    return pad + [
        keras.layers.DepthwiseConv2D(
            3,
            strides=stride,
            padding="same" if stride == 1 else "valid",
            use_bias=False,
            depthwise_initializer=depthwise_initializer(),
            name=name,
            dtype=dtype,
        ),
    ]


def scaled_width(channels: int, width_multiplier: float) -> int:
    """``round(channels * width_multiplier)`` clipped below at 8."""
    return max(8, int(round(channels * width_multiplier)))


def build_chain(layers: Iterable[keras.layers.Layer], input_shape: Shape) -> Shape:
    """Builds ``layers`` in sequence starting from ``input_shape``; returns the output shape."""
    shape = tuple(input_shape)
    for layer in layers:
        if not layer.built:
            layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def chain_output_shape(layers: Iterable[keras.layers.Layer], input_shape: Shape) -> Shape:
    """Output shape of ``layers`` applied in sequence, without building them."""
    shape = tuple(input_shape)
    for layer in layers:
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def apply_chain(
    layers: Iterable[keras.layers.Layer], x: tf.Tensor, training: Optional[bool] = None
) -> tf.Tensor:
    """Applies ``layers`` in sequence (``training`` is forwarded; layers without it ignore it)."""
    for layer in layers:
        x = layer(x, training=training)
    return x


@keras.saving.register_keras_serializable(package="hac_tf")
class Normalize(keras.layers.Layer):
    """Per-channel ``(x - mean) / std`` on ``[B,H,W,C]`` images in [0,1]. No weights."""

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(mean) != len(std):
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} must have the same length")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def build(self, input_shape: Shape) -> None:
        if input_shape[-1] is not None and input_shape[-1] != len(self.mean):
            raise ValueError(
                f"Normalize expects {len(self.mean)} channels, got input shape {input_shape}"
            )

    def call(self, x: tf.Tensor) -> tf.Tensor:
        mean = tf.constant(self.mean, dtype=x.dtype)
        std = tf.constant(self.std, dtype=x.dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(mean=list(self.mean), std=list(self.std))
        return config
