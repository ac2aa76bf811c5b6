"""`ModelSpec`: everything that defines a hierarchical contrastive model, validated up front.

A spec names the base method, the backbone and the hierarchy (which backbone depth each view level is
contrasted at), the parameter embedding and the head sizes. Method-specific settings default to
``None`` = "the method's default" (docs/METHODS.md#base-methods); the resolved values are
available from :attr:`ModelSpec.projector`, :attr:`ModelSpec.predictor`, :meth:`ModelSpec.setting`.

Per-method defaults::

    method   projector (hidden, out, layers, hidden BN, last BN)   predictor (hidden, out)   other
    simclr   2048 -> 128, 2 layers, hidden BN, no last BN           -                         temperature 0.5
    moco     2048 -> 128, 2 layers, no BN (MoCo v2 head)            -                         temperature 0.2,
                                                                                             queue 4096, m 0.99
    byol     4096 -> 256, 2 layers, hidden BN, no last BN           4096 -> 256               base tau 0.99
    simsiam  2048 -> 2048, 3 layers, hidden BN, last BN             512 -> 2048               -
    barlow   2048 -> 2048, 3 layers, hidden BN, no last BN/bias     -                         lambda 3.9e-3,
                                                                                             scale 1/32

Setting a knob that the method does not have (a predictor on SimCLR, a queue on BYOL, a temperature
on SimSiam, ...) is an error, as is an inconsistent hierarchy. Every error is a one-line
``ValueError`` that starts with ``ModelSpec.<field>``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Dict, Mapping, Optional, Tuple

from hac_tf.augment.params import PARAM_WIDTHS
from hac_tf.losses import MochiConfig
from hac_tf.plugins.augself import AugSelfConfig
from hac_tf.plugins.equimod import EQUIMOD_METHODS, EquiModConfig
from hac_tf.plugins.viewmaker import VIEWMAKER_METHODS, ViewmakerConfig

METHOD_NAMES: Tuple[str, ...] = ("barlow", "byol", "moco", "simclr", "simsiam")
DEPTHS: Tuple[int, ...] = (18, 34, 50)
STEMS: Tuple[str, ...] = ("cifar", "imagenet")
#: methods with a predictor head on the online branch
PREDICTOR_METHODS: Tuple[str, ...] = ("byol", "simsiam")
#: methods with a momentum / EMA copy of the encoder ("target network")
TARGET_METHODS: Tuple[str, ...] = ("byol", "moco")
#: methods whose loss has a softmax temperature (and can use MoCHi negatives)
CONTRASTIVE_METHODS: Tuple[str, ...] = ("moco", "simclr")
EMBED_FIELD_NAMES: Tuple[str, ...] = ("colour", "color") + tuple(PARAM_WIDTHS)

# method -> projector defaults
_PROJECTOR_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "simclr": dict(hidden_dim=2048, out_dim=128, num_layers=2, hidden_bn=True, last_bn=False,
                   hidden_bias=True, last_bias=True),
    "moco": dict(hidden_dim=2048, out_dim=128, num_layers=2, hidden_bn=False, last_bn=False,
                 hidden_bias=True, last_bias=True),
    "byol": dict(hidden_dim=4096, out_dim=256, num_layers=2, hidden_bn=True, last_bn=False,
                 hidden_bias=True, last_bias=True),
    "simsiam": dict(hidden_dim=2048, out_dim=2048, num_layers=3, hidden_bn=True, last_bn=True,
                    hidden_bias=True, last_bias=False),
    "barlow": dict(hidden_dim=2048, out_dim=2048, num_layers=3, hidden_bn=True, last_bn=False,
                   hidden_bias=False, last_bias=False),
}
_PREDICTOR_HIDDEN_DEFAULTS: Dict[str, int] = {"byol": 4096, "simsiam": 512}

# method-specific scalar settings: field -> (methods that have it, default)
_METHOD_SETTINGS: Dict[str, Tuple[Tuple[str, ...], Dict[str, Any]]] = {
    "temperature": (CONTRASTIVE_METHODS, {"simclr": 0.5, "moco": 0.2}),
    "moco_queue_size": (("moco",), {"moco": 4096}),
    "moco_momentum": (("moco",), {"moco": 0.99}),
    "byol_base_momentum": (("byol",), {"byol": 0.99}),
    "barlow_lambd": (("barlow",), {"barlow": 3.9e-3}),
    "barlow_scale": (("barlow",), {"barlow": 1.0 / 32.0}),
    "mochi": (CONTRASTIVE_METHODS, {"simclr": None, "moco": None}),
}


def _fail(field: str, message: str) -> None:
    raise ValueError(f"ModelSpec.{field}: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_positive_int(field: str, value: Any, minimum: int = 1) -> None:
    if not _is_int(value) or value < minimum:
        _fail(field, f"must be an int >= {minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Definition of a :class:`~hac_tf.methods.HierarchicalContrastiveModel`.

    Attributes:
      method: base method, one of ``METHOD_NAMES``.
      depth, stem, width_multiplier, sync_bn, zero_init_residual: the ResNet backbone
        (see :func:`hac_tf.models.build_resnet`).
      level_depths: backbone depth (1..4) at which view level i (batch key ``level_{i+1}``) is
        contrasted. Paper: ``(1, 2, 3, 4)``; classical single-level baseline: ``(4,)``.
      loss_weights: weight of each level's loss (default all 1.0); same length as level_depths.
      embed_fields: recorded-parameter fields embedded and concatenated to the feature at every
        level with depth > 1 (never at depth 1). ``()`` = no embedding. ``None`` (default) =
        ``("colour",)`` when some level has depth > 1, else ``()``.
      embed_dim: width of the parameter embedding (512 in HAC).
      embed_shuffle: control of issue 17 ("information vs capacity"): every row's recorded
        parameters are replaced by those of the next row of the batch (a roll by one, per view;
        the batch order is shuffled, so the partner is another random image) before embedding.
        The projector keeps the embedding's capacity but gets no information about its own
        views' augmentation. Needs ``embed_fields``.
      projector_hidden_dim, projector_out_dim, projector_num_layers, projector_hidden_bn,
      projector_last_bn: projector shape; None = method default.
      predictor_hidden_dim, predictor_out_dim: predictor shape (BYOL / SimSiam only); the output
        must equal the projector output (it is compared with the other view's projection).
      temperature: softmax temperature (SimCLR 0.5, MoCo 0.2).
      moco_queue_size, moco_momentum: MoCo queue length K per level (4096; ImageNet configs use
        65536) and fixed momentum m (0.99; 0.999 in the reference configs).
      byol_base_momentum: BYOL tau_base (0.99, HA supp. B), cosine-ramped to 1.
      barlow_lambd, barlow_scale: Barlow Twins off-diagonal weight and loss scale.
      mochi: optional MoCHi hard-negative mixing (SimCLR / MoCo), a MochiConfig or its dict.
      equimod, augself, viewmaker: optional plug-ins (hac_tf.plugins; docs/PLUGINS.md), each a
        config object or its dict. EquiMod: SimCLR / BYOL; AugSelf: any method; Viewmaker:
        every method but MoCo. Their ``levels`` are resolved here (EquiMod / AugSelf: the last
        level by default; Viewmaker: every level by default).
    """

    method: str = "simsiam"
    depth: int = 18
    stem: str = "cifar"
    width_multiplier: float = 1.0
    sync_bn: bool = False
    zero_init_residual: bool = True
    level_depths: Tuple[int, ...] = (1, 2, 3, 4)
    loss_weights: Optional[Tuple[float, ...]] = None
    embed_fields: Optional[Tuple[str, ...]] = None
    embed_dim: int = 512
    embed_shuffle: bool = False
    projector_hidden_dim: Optional[int] = None
    projector_out_dim: Optional[int] = None
    projector_num_layers: Optional[int] = None
    projector_hidden_bn: Optional[bool] = None
    projector_last_bn: Optional[bool] = None
    predictor_hidden_dim: Optional[int] = None
    predictor_out_dim: Optional[int] = None
    temperature: Optional[float] = None
    moco_queue_size: Optional[int] = None
    moco_momentum: Optional[float] = None
    byol_base_momentum: Optional[float] = None
    barlow_lambd: Optional[float] = None
    barlow_scale: Optional[float] = None
    mochi: Optional[MochiConfig] = None
    # --- plug-ins (hac_tf.plugins) ---
    equimod: Optional[EquiModConfig] = None
    augself: Optional[AugSelfConfig] = None
    viewmaker: Optional[ViewmakerConfig] = None

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        if self.method not in METHOD_NAMES:
            _fail("method", f"unknown method {self.method!r}; allowed: {', '.join(METHOD_NAMES)}")
        if self.depth not in DEPTHS or isinstance(self.depth, bool):
            _fail("depth", f"must be one of {list(DEPTHS)}, got {self.depth!r}")
        if self.stem not in STEMS:
            _fail("stem", f"must be one of {list(STEMS)}, got {self.stem!r}")
        if not _is_real(self.width_multiplier) or self.width_multiplier <= 0:
            _fail("width_multiplier", f"must be a number > 0, got {self.width_multiplier!r}")
        for name in ("sync_bn", "zero_init_residual"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, f"must be a bool, got {getattr(self, name)!r}")
        self._validate_hierarchy()
        self._validate_heads()
        self._validate_method_settings()
        self._validate_plugins()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _validate_hierarchy(self) -> None:
        depths = self.level_depths
        if isinstance(depths, (str, bytes)) or not hasattr(depths, "__len__"):
            _fail("level_depths", f"must be a non-empty sequence of depths in 1..4, got {depths!r}")
        depths = tuple(depths)
        if not depths:
            _fail("level_depths", "must list at least one level (allowed depths: 1, 2, 3, 4)")
        bad = [d for d in depths if not _is_int(d) or not 1 <= d <= 4]
        if bad:
            _fail("level_depths", f"{list(depths)} has depth(s) {bad}; allowed: 1, 2, 3, 4")
        self._set("level_depths", tuple(int(d) for d in depths))

        weights = self.loss_weights
        if weights is None:
            weights = (1.0,) * len(depths)
        if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
            _fail("loss_weights", f"must be a sequence of numbers, got {weights!r}")
        weights = tuple(weights)
        if len(weights) != len(depths):
            _fail("loss_weights", f"has {len(weights)} entries but level_depths has {len(depths)}")
        if any(not _is_real(w) or w < 0 for w in weights):
            _fail("loss_weights", f"must be finite numbers >= 0, got {list(weights)}")
        if not any(w > 0 for w in weights):
            _fail("loss_weights", f"at least one weight must be > 0, got {list(weights)}")
        self._set("loss_weights", tuple(float(w) for w in weights))

        fields = self.embed_fields
        deep = max(depths) > 1
        if fields is None:
            fields = ("colour",) if deep else ()
        if isinstance(fields, str):
            fields = (fields,)
        fields = tuple(fields)
        bad = [f for f in fields if f not in EMBED_FIELD_NAMES]
        if bad:
            _fail("embed_fields", f"unknown field(s) {bad}; allowed: {list(EMBED_FIELD_NAMES)}")
        if len(set(fields)) != len(fields):
            _fail("embed_fields", f"lists a field twice: {list(fields)}")
        if fields and not deep:
            _fail("embed_fields", f"{list(fields)} set but every level has depth 1 "
                  "(depth 1 is never embedded); use embed_fields=()")
        self._set("embed_fields", fields)
        _check_positive_int("embed_dim", self.embed_dim)
        if not isinstance(self.embed_shuffle, bool):
            _fail("embed_shuffle", f"must be a bool, got {self.embed_shuffle!r}")
        if self.embed_shuffle and not fields:
            _fail("embed_shuffle", "is true but no level is embedded (embed_fields is empty or every depth is 1)")

    def _validate_heads(self) -> None:
        for name in ("projector_hidden_dim", "projector_out_dim", "projector_num_layers"):
            value = getattr(self, name)
            if value is not None:
                _check_positive_int(name, value)
        for name in ("projector_hidden_bn", "projector_last_bn"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                _fail(name, f"must be a bool or None, got {value!r}")
        for name in ("predictor_hidden_dim", "predictor_out_dim"):
            value = getattr(self, name)
            if value is None:
                continue
            if self.method not in PREDICTOR_METHODS:
                _fail(name, f"method {self.method!r} has no predictor (only "
                      f"{', '.join(PREDICTOR_METHODS)} do); leave it None")
            _check_positive_int(name, value)
        if self.predictor_out_dim is not None and self.predictor_out_dim != self.projector["out_dim"]:
            _fail("predictor_out_dim", f"must equal the projector output "
                  f"{self.projector['out_dim']} (predictions are compared with projections), "
                  f"got {self.predictor_out_dim}")

    def _validate_method_settings(self) -> None:
        for name, (methods, _) in _METHOD_SETTINGS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if self.method not in methods:
                _fail(name, f"is a setting of {', '.join(methods)}, not of method "
                      f"{self.method!r}; leave it None")
        if self.temperature is not None and (not _is_real(self.temperature) or self.temperature <= 0):
            _fail("temperature", f"must be a number > 0, got {self.temperature!r}")
        if self.moco_queue_size is not None:
            _check_positive_int("moco_queue_size", self.moco_queue_size)
        for name in ("moco_momentum", "byol_base_momentum"):
            value = getattr(self, name)
            if value is not None and (not _is_real(value) or not 0.0 <= value <= 1.0):
                _fail(name, f"must be a number in [0, 1], got {value!r}")
        if self.barlow_lambd is not None and (not _is_real(self.barlow_lambd) or self.barlow_lambd < 0):
            _fail("barlow_lambd", f"must be a number >= 0, got {self.barlow_lambd!r}")
        if self.barlow_scale is not None and (not _is_real(self.barlow_scale) or self.barlow_scale <= 0):
            _fail("barlow_scale", f"must be a number > 0, got {self.barlow_scale!r}")
        if self.mochi is not None:
            try:
                self._set("mochi", MochiConfig.from_value(self.mochi))
            except (TypeError, ValueError) as e:
                _fail("mochi", str(e).replace("\n", " "))

    def _validate_plugins(self) -> None:
        # (field, config class, methods it applies to or None for all)
        plugins = (("equimod", EquiModConfig, EQUIMOD_METHODS), ("augself", AugSelfConfig, None),
                   ("viewmaker", ViewmakerConfig, VIEWMAKER_METHODS))
        for name, cls, methods in plugins:
            value = getattr(self, name)
            if value is None:
                continue
            if methods is not None and self.method not in methods:
                _fail(name, f"applies to {', '.join(methods)}, not to method {self.method!r}")
            try:
                self._set(name, cls.from_value(value).resolved(self.num_levels))
            except (TypeError, ValueError) as e:
                _fail(name, str(e).replace("\n", " "))

    @property
    def plugin_names(self) -> Tuple[str, ...]:
        """The enabled plug-ins, e.g. ``("mochi", "augself")``."""
        return tuple(n for n in ("mochi", "equimod", "augself", "viewmaker") if getattr(self, n) is not None)

    # ------------------------------------------------------------------ resolved settings
    @property
    def num_levels(self) -> int:
        return len(self.level_depths)

    @property
    def level_names(self) -> Tuple[str, ...]:
        """Batch keys of the levels: ``("level_1", ..., "level_L")``."""
        return tuple(f"level_{i + 1}" for i in range(self.num_levels))

    @property
    def used_depths(self) -> Tuple[int, ...]:
        """Sorted distinct backbone depths (one stage branch each)."""
        return tuple(sorted(set(self.level_depths)))

    def embeds_level(self, level: int) -> bool:
        """Whether level ``level`` (0-based) concatenates a parameter embedding."""
        return bool(self.embed_fields) and self.level_depths[level] > 1

    @property
    def has_predictor(self) -> bool:
        return self.method in PREDICTOR_METHODS

    @property
    def has_target(self) -> bool:
        """Whether the method keeps a momentum / EMA target encoder (MoCo, BYOL)."""
        return self.method in TARGET_METHODS

    @property
    def projector(self) -> Dict[str, Any]:
        """Resolved :class:`~hac_tf.models.ProjectionMLP` keyword arguments."""
        out = dict(_PROJECTOR_DEFAULTS[self.method])
        for key in ("hidden_dim", "out_dim", "num_layers", "hidden_bn", "last_bn"):
            value = getattr(self, f"projector_{key}")
            if value is not None:
                out[key] = value
        if self.projector_last_bn is not None and self.method != "barlow":
            out["last_bias"] = not out["last_bn"]
        return out

    @property
    def predictor(self) -> Optional[Dict[str, int]]:
        """Resolved :class:`~hac_tf.models.PredictionMLP` keyword arguments, or None."""
        if not self.has_predictor:
            return None
        hidden = self.predictor_hidden_dim or _PREDICTOR_HIDDEN_DEFAULTS[self.method]
        return {"hidden_dim": hidden, "out_dim": self.projector["out_dim"]}

    def setting(self, name: str) -> Any:
        """Resolved method setting (``temperature``, ``moco_queue_size``, ...; see the table)."""
        if name not in _METHOD_SETTINGS:
            raise KeyError(f"unknown method setting {name!r}; known: {sorted(_METHOD_SETTINGS)}")
        methods, defaults = _METHOD_SETTINGS[name]
        if self.method not in methods:
            raise KeyError(f"method {self.method!r} has no setting {name!r}")
        value = getattr(self, name)
        return defaults[self.method] if value is None else value

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["level_depths"] = list(self.level_depths)
        out["loss_weights"] = list(self.loss_weights)
        out["embed_fields"] = list(self.embed_fields)
        out["mochi"] = None if self.mochi is None else self.mochi.to_dict()
        for name in ("equimod", "augself", "viewmaker"):
            value = getattr(self, name)
            out[name] = None if value is None else value.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], lenient: bool = False) -> "ModelSpec":
        """Builds a spec from a dict (e.g. ``to_dict()`` or a training config's model section).

        With ``lenient=True`` (for config files that list every knob with a concrete default):
        ``0`` / ``0.0`` / ``()`` / ``None`` for an optional knob mean "method default", and a
        method setting the method does not have is dropped when it equals its documented default
        (e.g. ``moco_queue_size=4096`` on SimCLR) and rejected otherwise. Unknown keys raise.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        # config-file aliases
        aliases = {"projector_layers": "projector_num_layers"}
        kwargs: Dict[str, Any] = {}
        for key, value in values.items():
            key = aliases.get(key, key)
            if key not in names:
                raise ValueError(f"ModelSpec.{key}: unknown field; allowed: {sorted(names)}")
            kwargs[key] = value
        if lenient:
            method = kwargs.get("method", cls.method)
            optional = {f.name for f in dataclasses.fields(cls) if f.default is None}
            for key in list(kwargs):
                value = kwargs[key]
                if key in optional and (value is None or (not isinstance(value, bool) and _is_real(value)
                                                          and value == 0)):
                    kwargs.pop(key)
                elif key == "loss_weights" and value is not None and len(value) == 0:
                    kwargs.pop(key)
            for key, (methods, defaults) in _METHOD_SETTINGS.items():
                if key in kwargs and method not in methods:
                    documented = next(iter(defaults.values()))
                    if kwargs[key] == documented:
                        kwargs.pop(key)
        for key in ("level_depths", "loss_weights", "embed_fields"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @classmethod
    def baseline(cls, method: str = "simsiam", **kwargs: Any) -> "ModelSpec":
        """The classical single-level baseline: one pair at full depth, no embedding."""
        kwargs.setdefault("level_depths", (4,))
        kwargs.setdefault("embed_fields", ())
        return cls(method=method, **kwargs)
