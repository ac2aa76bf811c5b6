"""EquiMod (Devillers & Lefort, ICLR 2023) as a plug-in: docs/METHODS.md#equimod.

For every EquiMod level (default: the last view level) with backbone depth d:

    h_0, h_a, h_b = depth-d features (stage branch output, before the HAC parameter embedding)
                    of the ORIGINAL image x_0 and of the two views
    y = eq_head([h_0; h_a; h_b])            one batched call, BN sees all 3B rows
    y_0, y_t = y[:B], y[B:]                 y_t = [y_a; y_b]  (2B)
    p = standardise(encode(params))         [p_a; p_b], the recorded-parameter vector
    y_hat = predictor([tile(y_0, 2) ; param_projector(p)])
    L_eq = NT-Xent([y_t; y_hat], tau_y)     4B rows: the positive of y_t[k] is y_hat[k], every
                                            other row (incl. the other view) is a negative
    L = L_base + lambda * L_eq

Heads (docs/METHODS.md#equimod-heads): eq_head = [Linear(no bias) -> BN -> ReLU] x (L-1) -> Linear(no bias) ->
BN(affine=False); param_projector = Linear(no bias) -> BN; predictor = Linear(no bias) ->
BN(affine=False) on the 2*out concat. No stop-gradient on y_0.

Parameter vector (``encode_equimod_params``), in the EquiMod order where it exists:
``crop`` (i, j, h, w: normalised top, left, height, width -- EquiMod uses raw pixels, the
standardisation removes the scale), ``flip``, ``jitter_applied``, ``jitter_order`` (4),
``jitter`` (b, c, s, h), ``grayscale``, ``blur`` (applied flag, sigma), ``solarize``,
``rotation``. EquiMod standardises with hard-coded per-dataset constants; here the constants are
the mean/std of the vector under the actual view policy, estimated once at build time by sampling
the policy (``sample_param_statistics``; recorded parameters do not depend on image content).
Columns whose std is ~0 (augmentations the level never applies) get std 1, i.e. encode as 0.

x_0 is the source image (uint8 batch "images" of the view dataset) in [0, 1], centre-cropped to a
square and resized to the view size when its size differs (EquiMod: Resize + CenterCrop).

Deviation (configurable): by default x_0 is encoded in its own backbone call, so the base
method's BatchNorm batches (and its loss) are exactly those without the plug-in and lambda = 0
reproduces the base method exactly. ``shared_bn=True`` concatenates x_0 to the level's views in
one backbone call, as EquiMod's single forward over [x_0, x_1, x_2] does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from hac_tf import schema
from hac_tf.losses import equimod_nt_xent
from hac_tf.models import ProjectionMLP
from hac_tf.plugins.base import LevelFeatures, PluginLayer
from hac_tf.plugins.settings import (
    as_tuple,
    check_levels,
    config_from_value,
    fail,
    is_real,
    resolve_levels,
    section_values,
)
from hac_tf.schema import CODE_ONLY, free, ranged

#: parameter groups of the EquiMod vector, in order, and their widths
EQUIMOD_FIELD_WIDTHS: Dict[str, int] = {
    "crop": 4,
    "flip": 1,
    "jitter_applied": 1,
    "jitter_order": 4,
    "jitter": 4,
    "grayscale": 1,
    "blur": 2,
    "solarize": 1,
    "rotation": 1,
}
EQUIMOD_FIELDS: Tuple[str, ...] = tuple(EQUIMOD_FIELD_WIDTHS)
#: place in the build and hook order of the plug-ins (hac_tf/plugins/registry.py)
ORDER = 20
#: keys of the config's plugins.equimod section that are not model settings: inputs of the run
#: facts worked out once per run (hac_tf/plugins/wiring.py)
SECTION_FIELDS = {"std_samples": ranged(1024, 16, 1 << 16)}  # policy samples for the standardisation constants
#: what a base method needs for EquiMod: it is specified for SimCLR and BYOL (docs/METHODS.md#equimod),
#: whose classes list "equimod" in ``plugins_opt_in`` (hac_tf/methods/base.py)
APPLIES_TO = "methods that opt in with plugins_opt_in"
#: keys of the source batch its layer reads besides the view levels: x_0, the source images
SOURCE_KEYS = ("images",)
_OWNER = "EquiModConfig"


def applies_to(method: Any) -> bool:
    """Whether EquiMod composes with the base-method class ``method`` (it opts in)."""
    return "equimod" in getattr(method, "plugins_opt_in", ())


def resolve(value: Any, num_levels: int) -> "EquiModConfig":
    """``ModelSpec.equimod`` (a config or its dict) checked, its levels resolved (default: the last)."""
    return EquiModConfig.from_value(value).resolved(num_levels)


@dataclasses.dataclass(frozen=True)
class EquiModConfig:
    """EquiMod settings.

    Attributes:
      weight: lambda of the equivariant term (1.0).
      temperature: tau_y of the equivariant NT-Xent (0.2).
      hidden_dim, out_dim, num_layers: equivariant head (2048, 128, 3 in EquiMod).
      param_dim: width of the parameter projector (128).
      levels: 1-based view levels with an equivariance module; () = the last level.
      fields: parameter groups of the vector (see EQUIMOD_FIELD_WIDTHS).
      param_mean, param_std: standardisation constants, one tuple per entry of ``levels``
        (computed from the view policy by the training builders); None = no standardisation.
      shared_bn: encode x_0 in the same backbone call as the views (see the module docstring).
    """

    # rules beside the fields (hac_tf/schema.py); the config's plugins.equimod section is generated
    # from them and SECTION_FIELDS (param_mean / param_std are worked out from the view policy)
    weight: float = ranged(1.0, 0.0, 1e3)  # lambda
    temperature: float = ranged(0.2, 0.0, 100.0, lo_inclusive=False)  # tau_y
    hidden_dim: int = ranged(2048, 1, 1 << 16)
    out_dim: int = ranged(128, 1, 1 << 16)
    num_layers: int = ranged(3, 1, 8)
    param_dim: int = ranged(128, 1, 1 << 16)
    levels: Tuple[int, ...] = ()  # 1-based view levels; () = the last
    fields: Tuple[str, ...] = EQUIMOD_FIELDS
    param_mean: Optional[Tuple[Tuple[float, ...], ...]] = free(None, config_default=CODE_ONLY)
    param_std: Optional[Tuple[Tuple[float, ...], ...]] = free(None, config_default=CODE_ONLY)
    shared_bn: bool = False  # x_0 in the views' backbone call (EquiMod) instead of its own

    def __post_init__(self) -> None:
        schema.check_fields(_OWNER, self)
        object.__setattr__(self, "levels", check_levels(_OWNER, self.levels))
        fields = as_tuple(self.fields)
        bad = [f for f in fields if f not in EQUIMOD_FIELD_WIDTHS]
        if bad or not fields:
            fail(_OWNER, "fields", f"unknown or empty field list {list(fields)}; allowed: {list(EQUIMOD_FIELDS)}")
        if len(set(fields)) != len(fields):
            fail(_OWNER, "fields", f"lists a field twice: {list(fields)}")
        object.__setattr__(self, "fields", fields)
        if not isinstance(self.shared_bn, bool):
            fail(_OWNER, "shared_bn", f"must be a bool, got {self.shared_bn!r}")
        if (self.param_mean is None) != (self.param_std is None):
            fail(_OWNER, "param_mean", "param_mean and param_std must both be set or both be None")
        for name in ("param_mean", "param_std"):
            value = getattr(self, name)
            if value is None:
                continue
            rows = tuple(tuple(float(x) for x in row) for row in value)
            for row in rows:
                if len(row) != self.param_width or not all(is_real(x) for x in row):
                    fail(_OWNER, name, f"needs one tuple of {self.param_width} finite numbers per level, "
                         f"got a row of length {len(row)}")
            if name == "param_std" and any(x <= 0 for row in rows for x in row):
                fail(_OWNER, name, "every std must be > 0")
            object.__setattr__(self, name, rows)
        if self.param_mean is not None and self.levels and len(self.param_mean) != len(self.levels):
            fail(_OWNER, "param_mean", f"has {len(self.param_mean)} rows for {len(self.levels)} level(s)")

    @property
    def param_width(self) -> int:
        return sum(EQUIMOD_FIELD_WIDTHS[f] for f in self.fields)

    def resolved(self, num_levels: int) -> "EquiModConfig":
        """A copy with ``levels`` resolved against the model's number of view levels."""
        levels = resolve_levels(_OWNER, self.levels, num_levels, "last")
        if self.param_mean is not None and len(self.param_mean) != len(levels):
            fail(_OWNER, "param_mean", f"has {len(self.param_mean)} rows for levels {list(levels)}")
        return dataclasses.replace(self, levels=levels)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_value(cls, value: Any) -> Optional["EquiModConfig"]:
        return config_from_value(cls, value)


#: the plug-in's settings (ModelSpec.equimod); the config's plugins.equimod section is generated from it
CONFIG_CLASS = EquiModConfig


# ----------------------------------------------------------------------------- parameters
def encode_equimod_params(params: Mapping[str, tf.Tensor], fields: Sequence[str] = EQUIMOD_FIELDS) -> tf.Tensor:
    """The raw (unstandardised) EquiMod parameter vector, float32 ``[B, sum(widths)]``."""
    cols = []
    for f in fields:
        if f == "crop":
            y0, x0, y1, x1 = tf.unstack(tf.cast(params["crop"], tf.float32), axis=-1)
            cols.append(tf.stack([y0, x0, y1 - y0, x1 - x0], axis=-1))
        elif f == "blur":
            sigma = tf.cast(params["blur_sigma"], tf.float32)
            cols += [tf.cast(sigma > 0.0, tf.float32), sigma]
        elif f in EQUIMOD_FIELD_WIDTHS:
            cols.append(tf.cast(params[f], tf.float32))
        else:
            raise ValueError(f"unknown EquiMod field {f!r}; allowed: {list(EQUIMOD_FIELDS)}")
    return tf.concat(cols, axis=-1)


def sample_param_statistics(
    policy: Any,
    levels: Sequence[int],
    fields: Sequence[str] = EQUIMOD_FIELDS,
    source_size: int = 32,
    num_samples: int = 2048,
    seed: int = 0,
) -> Tuple[Tuple[Tuple[float, ...], ...], Tuple[Tuple[float, ...], ...]]:
    """Mean and std of the EquiMod vector of each level's views under ``policy``.

    The policy is called once (stateless seed ``(seed, 0)``) on ``num_samples`` blank
    ``source_size``-pixel images: recorded parameters depend on the image size only, never on
    the content. Both views of a level are pooled. Stds below 1e-6 are replaced by 1.

    Returns ``(means, stds)``, one tuple per entry of ``levels`` (1-based).
    """
    images = tf.zeros([int(num_samples), int(source_size), int(source_size), 3], tf.uint8)
    views = policy(images, seed=tf.constant([seed, 0], tf.int64))
    means, stds = [], []
    for level in levels:
        v = views[f"level_{int(level)}"]
        x = tf.concat([encode_equimod_params(v["params_a"], fields),
                       encode_equimod_params(v["params_b"], fields)], axis=0).numpy().astype(np.float64)
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std = np.where(std < 1e-6, 1.0, std)
        means.append(tuple(float(m) for m in mean))
        stds.append(tuple(float(s) for s in std))
    return tuple(means), tuple(stds)


def original_view(images: tf.Tensor, size: int) -> tf.Tensor:
    """x_0: the source batch as float32 ``[B, size, size, 3]`` in [0, 1].

    uint8 is scaled by 1/255; images of another size are centre-cropped to a square and resized
    (bilinear, antialiased).
    """
    images = tf.convert_to_tensor(images)
    x = tf.image.convert_image_dtype(images, tf.float32) if images.dtype == tf.uint8 else tf.cast(images, tf.float32)
    h, w = x.shape[1], x.shape[2]
    if h == size and w == size:
        return x
    shape = tf.shape(x)
    side = tf.minimum(shape[1], shape[2])
    top = (shape[1] - side) // 2
    left = (shape[2] - side) // 2
    x = tf.image.crop_to_bounding_box(x, top, left, side, side)
    x = tf.image.resize(x, [size, size], method="bilinear", antialias=True)
    return tf.clip_by_value(x, 0.0, 1.0)


# ----------------------------------------------------------------------------- module
class EquiModModule(PluginLayer):
    """The equivariant heads of every EquiMod level and the equivariant loss.

    Args:
      config: a *resolved* EquiModConfig (``levels`` set, see ``EquiModConfig.resolved``).
      feature_dim: width of the depth features fed to the head.
      sync_bn: synchronized BatchNorm in the heads.
    """

    def __init__(self, config: EquiModConfig, feature_dim: int, sync_bn: bool = False, **kwargs) -> None:
        kwargs.setdefault("name", "equimod")
        super().__init__(**kwargs)
        if not config.levels:
            raise ValueError("EquiModModule needs a resolved config (levels set)")
        self.config = config
        self.feature_dim = int(feature_dim)
        c = config
        self.heads = []
        self.param_projectors = []
        self.predictors = []
        for level in c.levels:
            head = ProjectionMLP(c.hidden_dim, c.out_dim, c.num_layers, last_bn=True, last_bn_affine=False,
                                 hidden_bias=False, last_bias=False, sync_bn=sync_bn,
                                 name=f"equimod_head_level_{level}")
            head.build((None, self.feature_dim))
            proj = ProjectionMLP(c.param_dim, c.param_dim, 1, last_bn=True, last_bias=False, sync_bn=sync_bn,
                                 name=f"equimod_param_projector_level_{level}")
            proj.build((None, c.param_width))
            pred = ProjectionMLP(c.out_dim, c.out_dim, 1, last_bn=True, last_bn_affine=False, last_bias=False,
                                 sync_bn=sync_bn, name=f"equimod_predictor_level_{level}")
            pred.build((None, c.out_dim + c.param_dim))
            self.heads.append(head)
            self.param_projectors.append(proj)
            self.predictors.append(pred)
        self.built = True

    #: its term comes after the other plug-ins' (as in hac_tf 0.2: same float sums)
    term_order = 1

    def original_images(self, batch: Mapping[str, Any], level: int) -> tf.Tensor:
        """x_0 of 0-based level ``level``: the batch's source images at the level's view size, float [0, 1]."""
        if "images" not in batch:
            raise KeyError("EquiMod needs the original images: the batch has no 'images' key "
                           f"(got {sorted(batch)}); keep it in the view dataset")
        size = batch[f"level_{level + 1}"]["view_a"].shape[1]
        return original_view(batch["images"], int(size))

    def shared_images(self, batch: Mapping[str, Any], level: int) -> Optional[tf.Tensor]:
        """x_0 with ``shared_bn`` (one backbone call with the views, as EquiMod's forward), else None."""
        if self.config.shared_bn and self.has_level(level):
            return self.original_images(batch, level)
        return None

    def level_term(
        self, batch: Mapping[str, Any], features: LevelFeatures, training: bool
    ) -> Optional[Tuple[tf.Tensor, Dict[str, tf.Tensor]]]:
        """``lambda * L_eq`` of the level; x_0 is encoded in its own backbone call unless shared."""
        if not self.has_level(features.level):
            return None
        h0 = features.shared
        if h0 is None:  # x_0 in its own backbone call (the base method's BN batches unchanged)
            h0 = features.encode(self.original_images(batch, features.level))
        feat_a, feat_b = tf.split(features.features, 2, axis=0)
        views = batch[features.name]
        return self.level_loss(features.level, h0, feat_a, feat_b, views["params_a"], views["params_b"],
                               training=training)

    def _slot(self, level: int) -> int:
        return self.config.levels.index(level + 1)

    def param_vector(self, level: int, params: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Standardised EquiMod vector of 0-based level ``level``: float32 ``[B, p_dim]``."""
        p = encode_equimod_params(params, self.config.fields)
        if self.config.param_mean is None:
            return p
        slot = self._slot(level)
        mean = tf.constant(self.config.param_mean[slot], tf.float32)
        std = tf.constant(self.config.param_std[slot], tf.float32)
        return (p - mean) / std

    def embeddings(
        self,
        level: int,
        h0: tf.Tensor,
        h_a: tf.Tensor,
        h_b: tf.Tensor,
        params_a: Mapping[str, tf.Tensor],
        params_b: Mapping[str, tf.Tensor],
        training: bool = True,
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        """``(y_t, y_hat)``, each ``[2B, out_dim]`` (view a rows first)."""
        slot = self._slot(level)
        b = tf.shape(h0)[0]
        h = tf.concat([h0, tf.cast(h_a, h0.dtype), tf.cast(h_b, h0.dtype)], axis=0)
        y = self.heads[slot](h, training=training)
        y0, y_t = y[:b], y[b:]
        p = tf.concat([self.param_vector(level, params_a), self.param_vector(level, params_b)], axis=0)
        pe = self.param_projectors[slot](p, training=training)
        y_hat = self.predictors[slot](tf.concat([tf.tile(y0, [2, 1]), tf.cast(pe, y0.dtype)], axis=-1),
                                      training=training)
        return y_t, y_hat

    def level_loss(
        self,
        level: int,
        h0: tf.Tensor,
        h_a: tf.Tensor,
        h_b: tf.Tensor,
        params_a: Mapping[str, tf.Tensor],
        params_b: Mapping[str, tf.Tensor],
        training: bool = True,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """``(lambda * L_eq, {"equimod_loss": L_eq})``, float32."""
        y_t, y_hat = self.embeddings(level, h0, h_a, h_b, params_a, params_b, training)
        loss = equimod_nt_xent(y_t, y_hat, self.config.temperature)
        return tf.constant(self.config.weight, tf.float32) * loss, {"equimod_loss": loss}



#: source side used when sampling the policy for the standardisation constants (bounded for memory)
MAX_SAMPLING_SOURCE_SIDE = 64


def from_section(section: Any, facts: Any) -> EquiModConfig:
    """``plugins.equimod`` -> the resolved EquiModConfig with its standardisation constants, estimated
    by sampling the experiment's own view policy (same groups and strengths, tiny view size:
    recorded parameters depend on neither the view size nor the image content)."""
    config = EquiModConfig(**section_values(section, EquiModConfig)).resolved(facts.num_levels)
    s = facts.settings
    cheap = dataclasses.replace(s, image_size=8, blur_probability=s.resolved_blur_probability(), blur_kernel_size=3)
    side = max(8, min(int(facts.image_size), MAX_SAMPLING_SOURCE_SIDE))
    means, stds = sample_param_statistics(facts.make_policy(cheap), config.levels, config.fields, source_size=side,
                                          num_samples=section.std_samples, seed=0)
    return dataclasses.replace(config, param_mean=means, param_std=stds)


def build_layer(config: EquiModConfig, feature_dim: int, sync_bn: bool = False) -> EquiModModule:
    """The plug-in's part of the model (hac_tf/plugins/base.py)."""
    return EquiModModule(config, feature_dim, sync_bn=sync_bn)
