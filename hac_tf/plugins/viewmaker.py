"""Viewmaker networks (Tamkin et al., ICLR 2021) as a plug-in: docs/METHODS.md#viewmaker.

A generator G (Johnson et al. style-transfer network) maps an image x in [0, 1] (no
normalisation) and fresh uniform noise to y; the view is

    delta = tanh(y) * eps / mean_{H,W,C} |tanh(y)|        (per image: mean |delta| = eps exactly)
    view  = x + delta                                     (optionally clipped to [0, 1])

i.e. delta lies on the L1 sphere of radius eps * H*W*C. The released code divides by
``mean|tanh(y)| + 1e-4``, which leaves mean|delta| = eps * m / (m + 1e-4) (a few 1e-4 relative
below eps); ``norm_epsilon=1e-4`` reproduces that, the default 0 projects exactly (with a 1e-12
floor against division by zero). Clamping is off by default, as in the image configs.

Generator (``ViewmakerGenerator``), every conv preceded by ReflectionPad(k // 2) (``tf.pad``
REFLECT) and with a bias; IN = instance norm with affine parameters
(``GroupNormalization(groups=C, epsilon=1e-5)``):

    concat(x, U[0,1) noise) -> conv9x9 s1 (C+1 -> c) -> IN -> ReLU
    conv3x3 s2 (c -> 2c) -> IN -> ReLU
    conv3x3 s2 (2c -> 4c) -> IN -> ReLU
    for r = 1..R: concat(noise) -> residual block (4c + r): conv3x3 -> IN -> ReLU -> conv3x3 -> IN, + x
    nearest x2 -> conv3x3 (4c + R -> 2c) -> IN -> ReLU
    nearest x2 -> conv3x3 (2c -> c) -> IN -> ReLU
    conv9x9 (c -> C)                                                  -> y

c = 32 and R = 3 in the image configs (``base_channels`` narrows it for CPU runs). Convs use
PyTorch's default initialisation (kernel and bias U(+-1/sqrt(fan_in))). H and W must be
multiples of 4. The generator always computes in float32.

Training is an adversarial min-max (docs/METHODS.md#viewmaker-training): the encoder minimises the contrastive loss
on G's views (G frozen: its views enter as constants), then, on the same batch with a fresh forward
and fresh noise, G's own optimizer (Adam, 1e-3) minimises ``-w * L`` (the base method's loss at the
viewmaker levels). ``ViewmakerModule.objective`` (the plug-in interface's ``own_objective`` hook,
hac_tf/plugins/base.py) is that second pass; the trainer applies it with the generator's own optimizer.

Where G applies is decided by the view policy: the augmentation group ``viewmaker`` marks the
levels whose views (after any expert augmentations of that level) go through G -- alone
(``two_view`` with groups [viewmaker]), after expert augmentations (groups [..., viewmaker]) or as
the last add-one group (learned views as the last level). The perturbed views record the
"parameter" ``viewmaker`` = mean |delta| per image ([B, 1], = eps) in their params dict.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from hac_tf import schema
from hac_tf.plugins.base import PluginLayer
from hac_tf.plugins.settings import check_levels, config_from_value, fail, is_int, resolve_levels, section_values
from hac_tf.schema import CODE_ONLY, free, ranged

#: place in the build and hook order of the plug-ins (hac_tf/plugins/registry.py)
ORDER = 40
#: keys of the config's plugins.viewmaker section that are not model settings (none)
SECTION_FIELDS: Dict[str, Any] = {}
#: what a base method needs for the Viewmaker: no queue (MoCo's queue would hold the keys of the
#: encoder pass as negatives in the adversarial pass)
APPLIES_TO = "methods without a key queue"


def applies_to(method: Any) -> bool:
    """Whether the Viewmaker composes with the base-method class ``method`` (no ``has_queue``)."""
    return not getattr(method, "has_queue", False)


def resolve(value: Any, num_levels: int) -> "ViewmakerConfig":
    """``ModelSpec.viewmaker`` (a config or its dict) checked, its levels resolved (default: all)."""
    return ViewmakerConfig.from_value(value).resolved(num_levels)


def check_config(config: Any, facts: Any) -> None:
    """Cross-field rules of ``plugins.viewmaker`` and the ``viewmaker`` augmentation group (the
    experiment config, hac_tf/plugins/base.py ``ConfigFacts``): the group is the last add-one group;
    enabled, the plug-in needs a method without a queue, a level that uses the group and views
    whose side is a multiple of 4; disabled, no level may use the group. Raises ValueError."""
    a, method = config.augment, config.model.method
    levels = [k + 1 for k, groups in enumerate(facts.level_groups) if "viewmaker" in groups]
    if a.policy == "add_one" and "viewmaker" in a.order and a.order[-1] != "viewmaker":
        raise ValueError(f"augment.order={list(a.order)}: 'viewmaker' must be the last add-one group")
    if facts.section.enabled:
        if method not in facts.applicable:
            raise ValueError(f"plugins.viewmaker applies to {list(facts.applicable)}, not model.method={method!r} "
                             f"(MoCo's queue would hold the encoder pass's keys during the adversarial pass)")
        if not levels:
            raise ValueError("plugins.viewmaker.enabled=true but no view level uses the 'viewmaker' group: add it "
                             "to augment.groups (two_view/uniform/strength) or last in augment.order (add_one)")
        if config.data.image_size % 4:
            raise ValueError(f"plugins.viewmaker needs data.image_size divisible by 4, got {config.data.image_size}")
    elif levels:
        raise ValueError(f"view level(s) {levels} use the 'viewmaker' augmentation group but "
                         f"plugins.viewmaker.enabled=false")


#: key of the recorded "parameter" of a perturbed view
VIEWMAKER_PARAM = "viewmaker"
_OWNER = "ViewmakerConfig"
_DTYPE = "float32"


@dataclasses.dataclass(frozen=True)
class ViewmakerConfig:
    """Viewmaker settings.

    Attributes:
      epsilon: perturbation budget, mean |delta| per image (0.05 on CIFAR).
      num_res_blocks: R (3 in the image configs, at most 5 in the code).
      base_channels: c, width of the first conv (32).
      clamp: clip views to [0, 1].
      norm_epsilon: stabiliser added to mean|tanh(y)| (0 = exact projection; 1e-4 = the code).
      learning_rate: Adam learning rate of the generator (1e-3).
      adversarial_weight: w in L_view = -w * L (1.0).
      levels: 1-based view levels whose views pass through G; () = every level.
      seed: base seed of the noise channels (drawn statelessly from (seed, step, pass, level)).
    """

    # rules beside the fields (hac_tf/schema.py); the config's plugins.viewmaker section is generated
    # from them (levels come from the view policy's 'viewmaker' group, seed from train.seed)
    epsilon: float = ranged(0.05, 0.0, 1.0, lo_inclusive=False)  # mean |delta| per image
    num_res_blocks: int = ranged(3, 0, 5)
    base_channels: int = ranged(32, 1, 1024)
    clamp: bool = False
    norm_epsilon: float = ranged(0.0, 0.0, 1.0)  # 0: exact L1-sphere projection; 1e-4: the released code
    learning_rate: float = ranged(1e-3, 0.0, 10.0, lo_inclusive=False)  # Adam, the generator's own optimizer
    adversarial_weight: float = ranged(1.0, 0.0, 1e3)
    levels: Tuple[int, ...] = free((), config_default=CODE_ONLY)
    seed: int = free(0, config_default=CODE_ONLY)

    def __post_init__(self) -> None:
        schema.check_fields(_OWNER, self)
        if not isinstance(self.clamp, bool):
            fail(_OWNER, "clamp", f"must be a bool, got {self.clamp!r}")
        object.__setattr__(self, "levels", check_levels(_OWNER, self.levels))
        if not is_int(self.seed):
            fail(_OWNER, "seed", f"must be an int, got {self.seed!r}")

    def resolved(self, num_levels: int) -> "ViewmakerConfig":
        return dataclasses.replace(self, levels=resolve_levels(_OWNER, self.levels, num_levels, "all"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_value(cls, value: Any) -> Optional["ViewmakerConfig"]:
        return config_from_value(cls, value)


#: the plug-in's settings (ModelSpec.viewmaker); the config's plugins.viewmaker section is generated from it
CONFIG_CLASS = ViewmakerConfig


# ----------------------------------------------------------------------------- layers
def _torch_uniform(fan_in: int) -> keras.initializers.Initializer:
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return keras.initializers.RandomUniform(-bound, bound)


class ReflectConv(keras.layers.Layer):
    """[nearest x2 upsample?] -> ReflectionPad(k // 2) -> Conv2D(k, stride, valid, bias)."""

    def __init__(self, filters: int, kernel_size: int, stride: int = 1, upsample: bool = False, **kwargs):
        kwargs.setdefault("dtype", _DTYPE)
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.stride, self.upsample = int(stride), bool(upsample)
        self.conv: Optional[keras.layers.Conv2D] = None

    def build(self, input_shape) -> None:
        cin = int(input_shape[-1])
        fan_in = cin * self.kernel_size * self.kernel_size
        self.conv = keras.layers.Conv2D(
            self.filters, self.kernel_size, strides=self.stride, padding="valid", use_bias=True,
            kernel_initializer=_torch_uniform(fan_in), bias_initializer=_torch_uniform(fan_in),
            dtype=_DTYPE, name="conv",
        )
        self.conv.build((None, None, None, cin))
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if self.upsample:
            x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
        p = self.kernel_size // 2
        if p:
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        return self.conv(x)

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        def out(n):
            if n is None:
                return None
            n = n * (2 if self.upsample else 1)
            return (n - 1) // self.stride + 1
        return (input_shape[0], out(h), out(w), self.filters)


def instance_norm(channels: int, name: str) -> keras.layers.GroupNormalization:
    """InstanceNorm2d(affine=True) == GroupNormalization with one group per channel, eps 1e-5."""
    return keras.layers.GroupNormalization(groups=int(channels), epsilon=1e-5, dtype=_DTYPE, name=name)


class ViewmakerGenerator(keras.layers.Layer):
    """The style-transfer generator of docs/METHODS.md#viewmaker-generator (see the module docstring).

    ``call(images, seed)``: float32 ``[B, H, W, C]`` in [0, 1] and a stateless seed (int [2]) for
    the noise channels -> ``y`` ``[B, H, W, C]`` (before tanh).
    """

    def __init__(self, channels: int = 3, base_channels: int = 32, num_res_blocks: int = 3, **kwargs) -> None:
        kwargs.setdefault("dtype", _DTYPE)
        super().__init__(**kwargs)
        self.channels, self.base_channels, self.num_res_blocks = int(channels), int(base_channels), int(num_res_blocks)
        c1, c2, c3 = self.base_channels, 2 * self.base_channels, 4 * self.base_channels
        r = self.num_res_blocks
        self.conv1, self.in1 = ReflectConv(c1, 9, name="conv1"), instance_norm(c1, "in1")
        self.conv2, self.in2 = ReflectConv(c2, 3, 2, name="conv2"), instance_norm(c2, "in2")
        self.conv3, self.in3 = ReflectConv(c3, 3, 2, name="conv3"), instance_norm(c3, "in3")
        self.res_layers: List[keras.layers.Layer] = []  # [conv_a, in_a, conv_b, in_b] per block
        for k in range(1, r + 1):
            ch = c3 + k
            self.res_layers += [ReflectConv(ch, 3, name=f"res{k}_conv1"), instance_norm(ch, f"res{k}_in1"),
                                ReflectConv(ch, 3, name=f"res{k}_conv2"), instance_norm(ch, f"res{k}_in2")]
        self.deconv1, self.in4 = ReflectConv(c2, 3, upsample=True, name="deconv1"), instance_norm(c2, "in4")
        self.deconv2, self.in5 = ReflectConv(c1, 3, upsample=True, name="deconv2"), instance_norm(c1, "in5")
        self.conv_out = ReflectConv(self.channels, 9, name="conv_out")

    def _chain(self):
        c1, c2, c3 = self.base_channels, 2 * self.base_channels, 4 * self.base_channels
        chain = [(self.conv1, self.channels + 1), (self.in1, c1), (self.conv2, c1), (self.in2, c2),
                 (self.conv3, c2), (self.in3, c3)]
        for k in range(self.num_res_blocks):
            ch = c3 + k + 1
            conv_a, in_a, conv_b, in_b = self.res_layers[4 * k: 4 * k + 4]
            chain += [(conv_a, ch), (in_a, ch), (conv_b, ch), (in_b, ch)]
        chain += [(self.deconv1, c3 + self.num_res_blocks), (self.in4, c2), (self.deconv2, c2), (self.in5, c1),
                  (self.conv_out, c1)]
        return chain

    def build(self, input_shape=None) -> None:
        for layer, cin in self._chain():
            if not layer.built:
                layer.build((None, 8, 8, cin))
        self.built = True

    def call(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        x = tf.cast(images, tf.float32)
        h, w = x.shape[1], x.shape[2]
        if (h is not None and h % 4) or (w is not None and w % 4):
            raise ValueError(f"the viewmaker needs H and W divisible by 4, got {x.shape}")
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=self.num_res_blocks + 1)

        def noise(t: tf.Tensor, i: int) -> tf.Tensor:
            shape = tf.concat([tf.shape(t)[:3], [1]], axis=0)
            return tf.concat([t, tf.random.stateless_uniform(shape, seeds[i], dtype=tf.float32)], axis=-1)

        relu = tf.nn.relu
        y = relu(self.in1(self.conv1(noise(x, 0))))
        y = relu(self.in2(self.conv2(y)))
        y = relu(self.in3(self.conv3(y)))
        for k in range(self.num_res_blocks):
            conv_a, in_a, conv_b, in_b = self.res_layers[4 * k: 4 * k + 4]
            y = noise(y, k + 1)
            y = y + in_b(conv_b(relu(in_a(conv_a(y)))))
        y = relu(self.in4(self.deconv1(y)))
        y = relu(self.in5(self.deconv2(y)))
        return self.conv_out(y)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(channels=self.channels, base_channels=self.base_channels, num_res_blocks=self.num_res_blocks)
        return config


def project_perturbation(y: tf.Tensor, epsilon: float, norm_epsilon: float = 0.0) -> tf.Tensor:
    """delta = tanh(y) rescaled so that mean_{H,W,C} |delta| = epsilon per image (float32)."""
    d = tf.tanh(tf.cast(y, tf.float32))
    m = tf.reduce_mean(tf.abs(d), axis=[1, 2, 3], keepdims=True)
    denom = m + norm_epsilon if norm_epsilon > 0 else tf.maximum(m, 1e-12)
    return d * (float(epsilon) / denom)


# ----------------------------------------------------------------------------- module
class ViewmakerModule(PluginLayer):
    """The generator plus the view transformation of a batch (see the module docstring).

    Args:
      config: a resolved ViewmakerConfig (``levels`` set).
      channels: image channels (3).
    """

    def __init__(self, config: ViewmakerConfig, channels: int = 3, **kwargs) -> None:
        kwargs.setdefault("name", "viewmaker")
        kwargs.setdefault("dtype", _DTYPE)
        super().__init__(**kwargs)
        if not config.levels:
            raise ValueError("ViewmakerModule needs a resolved config (levels set)")
        self.config = config
        self.generator = ViewmakerGenerator(channels, config.base_channels, config.num_res_blocks,
                                            name="viewmaker_generator")
        self.generator.build()
        self.built = True

    #: the generator has its own Adam and objective (the adversarial pass), checkpointed as
    #: ``adversarial_optimizer``
    own_objective = True
    objective_name = "adversarial"

    @property
    def learning_rate(self) -> float:
        """Learning rate of the generator's Adam."""
        return self.config.learning_rate

    def prepare_batch(self, batch: Mapping[str, Any], level_names: Sequence[str], step: Any) -> Dict[str, Any]:
        """The encoder pass (pass 0): G's views at its levels, as constants for the encoder."""
        return self.apply_to_batch(batch, level_names, step, pass_index=0, stop_gradient=True)

    def objective(self, model: Any, batch: Mapping[str, Any], training: bool = True,
                  step: Any = None) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """The Viewmaker's objective ``-w * sum_k loss_weights[k] L_k`` over its levels (float32).

        A fresh forward of ``model`` with fresh noise (pass 1) whose views carry gradients to the
        generator; the base method is called with ``training=False`` so that it updates no state
        (MoCo queues), while BatchNorm runs in ``training`` mode like the encoder's pass. Minimise
        it w.r.t. this layer's trainable variables.
        """
        spec = model.spec
        batch = self.apply_to_batch(batch, spec.level_names, step, pass_index=1, stop_gradient=False)
        total = tf.constant(0.0, tf.float32)
        for i in range(spec.num_levels):
            if not self.has_level(i):
                continue
            online, target = model.level_outputs(batch, i, training=training)
            loss, _ = model.method.level_loss(i, online, target, training=False, step=step)
            total = total + tf.constant(spec.loss_weights[i], tf.float32) * tf.cast(loss, tf.float32)
        adv = -tf.constant(self.config.adversarial_weight, tf.float32) * total
        return adv, {"viewmaker/adversarial_loss": adv, "viewmaker/contrastive_loss": total}

    def perturb(self, images: tf.Tensor, seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """``(views, delta)`` for float images in [0, 1] (``views = x + delta``, clipped if ``clamp``)."""
        x = tf.cast(images, tf.float32)
        delta = project_perturbation(self.generator(x, seed), self.config.epsilon, self.config.norm_epsilon)
        views = x + delta
        if self.config.clamp:
            views = tf.clip_by_value(views, 0.0, 1.0)
        return views, delta

    def seed(self, step: Any, pass_index: int, level: int) -> tf.Tensor:
        """Stateless seed of one (step, pass, level): pass 0 = encoder step, 1 = viewmaker step."""
        step_t = tf.constant(0, tf.int64) if step is None else tf.reshape(tf.cast(step, tf.int64), [])
        seed = tf.stack([tf.constant(self.config.seed, tf.int64), step_t])
        seed = tf.random.experimental.stateless_fold_in(seed, 1000 * pass_index + level)
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            seed = tf.random.experimental.stateless_fold_in(seed, ctx.replica_id_in_sync_group)
        return seed

    def apply_to_batch(
        self,
        batch: Mapping[str, Any],
        level_names: Sequence[str],
        step: Any = None,
        pass_index: int = 0,
        stop_gradient: bool = True,
    ) -> Dict[str, Any]:
        """A copy of ``batch`` whose viewmaker levels hold G's views (both views in one call).

        ``stop_gradient=True`` (encoder pass) makes the views constants for the encoder's tape.
        """
        out = dict(batch)
        for level, name in enumerate(level_names):
            if not self.has_level(level) or name not in batch:
                continue
            views = dict(batch[name])
            x = tf.concat([views["view_a"], views["view_b"]], axis=0)
            y, delta = self.perturb(x, self.seed(step, pass_index, level))
            if stop_gradient:
                y, delta = tf.stop_gradient(y), tf.stop_gradient(delta)
            views["view_a"], views["view_b"] = tf.split(tf.cast(y, views["view_a"].dtype), 2, axis=0)
            norm_a, norm_b = tf.split(tf.reduce_mean(tf.abs(delta), axis=[1, 2, 3])[:, None], 2, axis=0)
            for key, norm in (("params_a", norm_a), ("params_b", norm_b)):
                if key in views:
                    views[key] = {**views[key], VIEWMAKER_PARAM: norm}
            out[name] = views
        return out



def from_section(section: Any, facts: Any) -> ViewmakerConfig:
    """``plugins.viewmaker`` -> ViewmakerConfig: its levels are the view levels whose augmentation
    groups include ``viewmaker``; its noise seed is train.seed."""
    levels = tuple(k + 1 for k in facts.make_policy(facts.settings).levels_with_group("viewmaker"))
    return ViewmakerConfig(**section_values(section, ViewmakerConfig), levels=levels, seed=facts.train_seed)


def build_layer(config: ViewmakerConfig, feature_dim: int, sync_bn: bool = False) -> ViewmakerModule:
    """The plug-in's part of the model (hac_tf/plugins/base.py); the generator sees images, not features."""
    del feature_dim, sync_bn
    return ViewmakerModule(config)
