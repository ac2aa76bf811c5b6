"""AugSelf (Lee et al., NeurIPS 2021) as a plug-in: docs/METHODS.md#augself.

Auxiliary heads predict, from the concatenated depth features of the two views of a pair, the
*difference* of their augmentation parameters (``augself_targets``):

  crop     (4)  [cy_1 - cy_2, cx_1 - cx_2, h_1 - h_2, w_1 - w_2]: crop centre, height and width in
                normalised source coordinates; the x-centre of a flipped view is mirrored
                (cx -> 1 - cx). ``flip_rule="per_view"`` mirrors each view by its own flip flag;
                ``"code"`` reproduces the released code, which mirrors both centres with view 1's
                flag (``center2[f1, 1]``).
  colour   (4)  w_1 - w_2 with w = [(b-1)/sb, (c-1)/sc, (s-1)/ss, h/sh] (s* = 2 x jitter strength,
                0.8 / 0.2 for ColorJitter(0.4, 0.4, 0.4, 0.1)) and w = 0 when jitter was not applied.
  flip     (1)  1 if both views have the same flip (binary cross-entropy on a logit).
  blur     (1)  (sigma_1 - sigma_2) / blur_scale (sigma = 0 without blur).
  rotation (4)  (k_1 - k_2) mod 4, 4-way cross-entropy.

Regression targets use MSE(tanh(prediction), target). The batch is symmetric: inputs
``[f_a || f_b ; f_b || f_a]`` with targets ``[d_ab ; d_ba]`` (d_ba = the same rule with the views
swapped). Each (level, target) has its own head: [Linear(no bias) -> BN -> ReLU] x 2 -> Linear.
Features are the depth-d stage-branch output *before* the HAC parameter embedding (the
embedding contains the colour parameters being predicted). L = L_base + sum_t lambda_t L_t;
lambda_t = 0 keeps the head and reports its loss without training anything (remove the target
from ``targets`` to drop it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf

from hac_tf import schema
from hac_tf.models import ProjectionMLP
from hac_tf.plugins.base import LevelFeatures, PluginLayer
from hac_tf.plugins.settings import (
    as_tuple,
    check_levels,
    check_real,
    config_from_value,
    fail,
    is_real,
    resolve_levels,
    section_values,
)
from hac_tf.schema import CODE_ONLY, free, one_of, ranged

#: target -> output width of its head
AUGSELF_TARGETS: Dict[str, int] = {"crop": 4, "colour": 4, "flip": 1, "blur": 1, "rotation": 4}
REGRESSION_TARGETS = ("crop", "colour", "blur")
FLIP_RULES = ("per_view", "code")
_OWNER = "AugSelfConfig"
#: place in the build and hook order of the plug-ins (hac_tf/plugins/registry.py)
ORDER = 30
#: keys of the config's plugins.augself section that are not model settings (none)
SECTION_FIELDS: Dict[str, Any] = {}
#: what a base method needs for AugSelf: nothing (its heads only read the depth features)
APPLIES_TO = "every method"


def applies_to(method: Any) -> bool:
    """AugSelf composes with every base method."""
    return True


def resolve(value: Any, num_levels: int) -> "AugSelfConfig":
    """``ModelSpec.augself`` (a config or its dict) checked, its levels resolved (default: the last)."""
    return AugSelfConfig.from_value(value).resolved(num_levels)


@dataclasses.dataclass(frozen=True)
class AugSelfConfig:
    """AugSelf settings.

    Attributes:
      targets: predicted parameter differences (``AUGSELF_TARGETS``); ("crop", "colour") in AugSelf.
      weights: lambda per target (1.0 on STL-10 / ResNet-18, 0.5 on ImageNet-100 / ResNet-50).
      hidden_dim: width of the heads (512).
      levels: 1-based view levels with heads; () = the last level.
      flip_rule: "per_view" or "code" (see the module docstring).
      colour_scale: the divisors (sb, sc, ss, sh) of the colour target.
      blur_scale: divisor of the blur-sigma difference.
    """

    # rules beside the fields (hac_tf/schema.py); the config's plugins.augself section is generated
    # from them (colour_scale / blur_scale are worked out from the augmentation strengths)
    targets: Tuple[str, ...] = ("crop", "colour")  # crop | colour | flip | blur | rotation
    weights: Tuple[float, ...] = (1.0, 1.0)  # lambda per target (0 = monitor only)
    hidden_dim: int = ranged(512, 1, 1 << 16)
    levels: Tuple[int, ...] = ()  # 1-based view levels; () = the last
    flip_rule: str = one_of("per_view", FLIP_RULES)  # code: the released code's mirroring quirk
    colour_scale: Tuple[float, float, float, float] = free((0.8, 0.8, 0.8, 0.2), config_default=CODE_ONLY)
    blur_scale: float = free(2.0, config_default=CODE_ONLY)

    def __post_init__(self) -> None:
        targets = as_tuple(self.targets)
        bad = [t for t in targets if t not in AUGSELF_TARGETS]
        if bad or not targets:
            fail(_OWNER, "targets", f"unknown or empty target list {list(targets)}; allowed: {list(AUGSELF_TARGETS)}")
        if len(set(targets)) != len(targets):
            fail(_OWNER, "targets", f"lists a target twice: {list(targets)}")
        weights = as_tuple(self.weights)
        if len(weights) != len(targets):
            fail(_OWNER, "weights", f"has {len(weights)} entries but targets has {len(targets)}")
        if any(not is_real(w) or not 0 <= w <= 1e3 for w in weights):
            fail(_OWNER, "weights", f"must be numbers in [0, 1000], got {list(weights)}")
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        schema.check_fields(_OWNER, self)
        object.__setattr__(self, "levels", check_levels(_OWNER, self.levels))
        scale = as_tuple(self.colour_scale)
        if len(scale) != 4 or any(not is_real(s) or s <= 0 for s in scale):
            fail(_OWNER, "colour_scale", f"needs 4 numbers > 0, got {list(scale)}")
        object.__setattr__(self, "colour_scale", tuple(float(s) for s in scale))
        check_real(_OWNER, "blur_scale", self.blur_scale, strict=True)

    def weight(self, target: str) -> float:
        return self.weights[self.targets.index(target)]

    def resolved(self, num_levels: int) -> "AugSelfConfig":
        return dataclasses.replace(self, levels=resolve_levels(_OWNER, self.levels, num_levels, "last"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_value(cls, value: Any) -> Optional["AugSelfConfig"]:
        return config_from_value(cls, value)


#: the plug-in's settings (ModelSpec.augself); the config's plugins.augself section is generated from it
CONFIG_CLASS = AugSelfConfig


def colour_scale_from_strength(strength) -> Tuple[float, float, float, float]:
    """AugSelf's colour divisors for ColorJitter strengths (b, c, s, h): 2 x strength (>0)."""
    return tuple(2.0 * float(s) if s > 0 else 1.0 for s in strength)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- targets
def _crop_geometry(params: Mapping[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    y0, x0, y1, x1 = tf.unstack(tf.cast(params["crop"], tf.float32), axis=-1)
    return (y0 + y1) / 2.0, (x0 + x1) / 2.0, y1 - y0, x1 - x0


def _colour_vector(params: Mapping[str, tf.Tensor], scale: Tuple[float, ...]) -> tf.Tensor:
    j = tf.cast(params["jitter"], tf.float32)
    w = (j - tf.constant([1.0, 1.0, 1.0, 0.0])) / tf.constant(scale, tf.float32)
    return w * tf.cast(params["jitter_applied"], tf.float32)


def augself_targets(
    params_1: Mapping[str, tf.Tensor],
    params_2: Mapping[str, tf.Tensor],
    targets=tuple(AUGSELF_TARGETS),
    flip_rule: str = "per_view",
    colour_scale: Tuple[float, ...] = (0.8, 0.8, 0.8, 0.2),
    blur_scale: float = 2.0,
) -> Dict[str, tf.Tensor]:
    """Targets d_12 of view 1 relative to view 2 (see the module docstring).

    Returns float32 ``[B, 4]`` for crop / colour, ``[B, 1]`` for flip / blur and int32 ``[B]``
    for rotation.
    """
    if flip_rule not in FLIP_RULES:
        raise ValueError(f"flip_rule must be one of {list(FLIP_RULES)}, got {flip_rule!r}")
    out: Dict[str, tf.Tensor] = {}
    f1 = tf.cast(params_1["flip"][:, 0] > 0.5, tf.bool)
    f2 = tf.cast(params_2["flip"][:, 0] > 0.5, tf.bool)
    for t in targets:
        if t == "crop":
            cy1, cx1, h1, w1 = _crop_geometry(params_1)
            cy2, cx2, h2, w2 = _crop_geometry(params_2)
            mirror2 = f2 if flip_rule == "per_view" else f1
            cx1 = tf.where(f1, 1.0 - cx1, cx1)
            cx2 = tf.where(mirror2, 1.0 - cx2, cx2)
            out[t] = tf.stack([cy1 - cy2, cx1 - cx2, h1 - h2, w1 - w2], axis=-1)
        elif t == "colour":
            out[t] = _colour_vector(params_1, colour_scale) - _colour_vector(params_2, colour_scale)
        elif t == "flip":
            out[t] = tf.cast(tf.equal(f1, f2), tf.float32)[:, None]
        elif t == "blur":
            s1 = tf.cast(params_1["blur_sigma"], tf.float32)
            s2 = tf.cast(params_2["blur_sigma"], tf.float32)
            out[t] = (s1 - s2) / float(blur_scale)
        elif t == "rotation":
            k1 = tf.cast(tf.round(params_1["rotation"][:, 0]), tf.int32)
            k2 = tf.cast(tf.round(params_2["rotation"][:, 0]), tf.int32)
            out[t] = tf.math.floormod(k1 - k2, 4)
        else:
            raise ValueError(f"unknown AugSelf target {t!r}; allowed: {list(AUGSELF_TARGETS)}")
    return out


def target_loss(target: str, prediction: tf.Tensor, value: tf.Tensor) -> tf.Tensor:
    """Loss of one target, float32 scalar (mean over rows, and dims for regression)."""
    pred = tf.cast(prediction, tf.float32)
    if target in REGRESSION_TARGETS:
        return tf.reduce_mean(tf.square(tf.tanh(pred) - value))
    if target == "flip":
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=value, logits=pred))
    if target == "rotation":
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=value, logits=pred))
    raise ValueError(f"unknown AugSelf target {target!r}")


# ----------------------------------------------------------------------------- module
class AugSelfModule(PluginLayer):
    """The AugSelf heads of every AugSelf level and their losses.

    Args:
      config: a resolved AugSelfConfig (``levels`` set).
      feature_dim: width of one view's depth feature (the heads see 2 x feature_dim).
      sync_bn: synchronized BatchNorm in the heads.
    """

    def __init__(self, config: AugSelfConfig, feature_dim: int, sync_bn: bool = False, **kwargs) -> None:
        kwargs.setdefault("name", "augself")
        super().__init__(**kwargs)
        if not config.levels:
            raise ValueError("AugSelfModule needs a resolved config (levels set)")
        self.config = config
        self.feature_dim = int(feature_dim)
        self.heads = []
        for level in config.levels:
            for t in config.targets:
                head = ProjectionMLP(config.hidden_dim, AUGSELF_TARGETS[t], 3, last_bn=False, hidden_bias=False,
                                     last_bias=True, sync_bn=sync_bn, name=f"augself_{t}_level_{level}")
                head.build((None, 2 * self.feature_dim))
                self.heads.append(head)
        self.built = True

    def level_term(
        self, batch: Mapping[str, Any], features: LevelFeatures, training: bool
    ) -> Optional[Tuple[tf.Tensor, Dict[str, tf.Tensor]]]:
        """``sum_t lambda_t L_t`` of the level (its heads see the two views' depth features)."""
        if not self.has_level(features.level):
            return None
        feat_a, feat_b = tf.split(features.features, 2, axis=0)
        views = batch[features.name]
        return self.level_loss(features.level, feat_a, feat_b, views["params_a"], views["params_b"],
                               training=training)

    def head(self, level: int, target: str) -> ProjectionMLP:
        slot = self.config.levels.index(level + 1) * len(self.config.targets) + self.config.targets.index(target)
        return self.heads[slot]

    def targets(self, params_a, params_b) -> Dict[str, tf.Tensor]:
        """Symmetric targets ``[d_ab; d_ba]`` of every configured target."""
        c = self.config
        kw = dict(targets=c.targets, flip_rule=c.flip_rule, colour_scale=c.colour_scale, blur_scale=c.blur_scale)
        d_ab = augself_targets(params_a, params_b, **kw)
        d_ba = augself_targets(params_b, params_a, **kw)
        return {t: tf.concat([d_ab[t], d_ba[t]], axis=0) for t in c.targets}

    def level_loss(
        self,
        level: int,
        feat_a: tf.Tensor,
        feat_b: tf.Tensor,
        params_a: Mapping[str, tf.Tensor],
        params_b: Mapping[str, tf.Tensor],
        training: bool = True,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """``(sum_t lambda_t L_t, {"augself_<t>_loss": L_t})``, float32."""
        x = tf.concat([tf.concat([feat_a, feat_b], axis=-1), tf.concat([feat_b, feat_a], axis=-1)], axis=0)
        values = self.targets(params_a, params_b)
        total = tf.constant(0.0, tf.float32)
        metrics: Dict[str, tf.Tensor] = {}
        for t, w in zip(self.config.targets, self.config.weights):
            loss = target_loss(t, self.head(level, t)(x, training=training), values[t])
            metrics[f"augself_{t}_loss"] = loss
            total = total + tf.constant(w, tf.float32) * loss
        return total, metrics



def from_section(section: Any, facts: Any) -> AugSelfConfig:
    """``plugins.augself`` -> AugSelfConfig with the run's divisors: 2 x the colour-jitter strengths
    and the largest blur sigma."""
    return AugSelfConfig(**section_values(section, AugSelfConfig),
                         colour_scale=colour_scale_from_strength(facts.jitter_strength),
                         blur_scale=float(facts.settings.blur_sigma[1]))


def build_layer(config: AugSelfConfig, feature_dim: int, sync_bn: bool = False) -> AugSelfModule:
    """The plug-in's part of the model (hac_tf/plugins/base.py)."""
    return AugSelfModule(config, feature_dim, sync_bn=sync_bn)
