"""`ModelSpec`: everything that defines a hierarchical contrastive model, validated up front.

A spec names the base method, the backbone and the hierarchy (which backbone depth each view level is
contrasted at), the parameter embedding, the head sizes, the method's settings and the plug-ins.
Head sizes default to ``None`` = "the method's default"; the method's class
(hac_tf/methods/<method>.py, found through hac_tf/methods/registry.py) owns its defaults: the
projector and predictor shapes and its settings (``temperature``, ``moco_queue_size``, ...: fields
of its :class:`~hac_tf.methods.base.MethodSettings` dataclass, each with its default and range).
The resolved values are :attr:`ModelSpec.projector`, :attr:`ModelSpec.predictor`,
:attr:`ModelSpec.method_settings` / :meth:`ModelSpec.setting`.

Every field's rule (range or choices) is declared beside it (hac_tf/schema.py); the experiment
config's ``model`` section (hac_tf/training/config.py) is generated from these fields and the
registered methods' settings, so both check the same rules.

Setting a knob that the method does not have (a predictor on SimCLR, a queue on BYOL, a temperature
on SimSiam, ...) is an error, as is an inconsistent hierarchy or a plug-in on a method it does not
apply to. Every error is a one-line ``ValueError`` that starts with ``ModelSpec.<field>``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple, Type

from hac_tf import schema
from hac_tf.augment.params import PARAM_WIDTHS
from hac_tf.methods.base import Method, MethodSettings
from hac_tf.methods.registry import method_class, method_names, setting_owners
from hac_tf.plugins.registry import plugin_modules
from hac_tf.schema import CODE_ONLY, free, one_of, ranged

EMBED_FIELD_NAMES: Tuple[str, ...] = ("colour", "color") + tuple(PARAM_WIDTHS)
#: file of a run directory holding the resolved spec the run trained with (``ModelSpec.save``)
MODEL_SPEC_FILE = "model_spec.json"
_HEAD_DIM = (1, 1 << 16)


def _fail(field: str, message: str) -> None:
    raise ValueError(f"ModelSpec.{field}: {message}")


@dataclasses.dataclass(frozen=True, init=False)
class ModelSpec:
    """Definition of a :class:`~hac_tf.methods.HierarchicalContrastiveModel`.

    Construct it with keyword arguments: the fields below, the method's settings and the plug-ins
    by name (``ModelSpec(method="moco", temperature=0.1, moco_queue_size=65536, mochi={...})``).

    Attributes:
      method: base method, a registered name (``hac_tf.methods.METHOD_NAMES``).
      depth, stem, width_multiplier, sync_bn, zero_init_residual: the ResNet backbone
        (see :func:`hac_tf.models.build_resnet`).
      per_view_bn: every BatchNorm of the encoder, heads and target normalises each view of a pair
        over its own batch (as the paper's code, which encodes the two views in two calls)
        instead of one set of statistics for the concatenated pair
        (:func:`hac_tf.models.per_view_batch_norm`). Default True since 2026-12-06, when the
        science benchmark found no cost in quality or speed (docs/RESULTS.md); False shares one
        set of statistics between the two views. A spec file saved before the switch existed
        (no ``per_view_bn`` key) loads as False, the behaviour it was trained with.
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
      predictor_hidden_dim, predictor_out_dim: predictor shape (methods with a predictor only);
        the output must equal the projector output (it is compared with the other view's projection).
      settings: the method settings given explicitly, as sorted ``(name, value)`` pairs (read them
        resolved with :attr:`method_settings` or :meth:`setting`; ``spec.<name>`` is the given
        value or None).
      plugins: the enabled plug-ins (hac_tf.plugins; docs/PLUGINS.md), as ``(name, config)``
        pairs in plug-in order. Give each by its registered name (``mochi=``, ``equimod=``,
        ``augself=``, ``viewmaker=``, ...: a config object of the plug-in's CONFIG_CLASS or its
        dict; None = off) and read it the same way (``spec.viewmaker``: its config or None);
        each plug-in states the methods it applies to. Their ``levels`` are resolved here
        (EquiMod / AugSelf: the last level by default; Viewmaker: every level by default). The
        names come from the plug-in registry (hac_tf/plugins/registry.py), so a new plug-in
        module needs no field here.
    """

    # the experiment config's ``model`` section is generated from these fields (a config file
    # writes 0 / () for "the method's default" where the spec has None; CODE_ONLY: not a key)
    method: str = "simsiam"  # choices: the registered methods
    depth: int = one_of(18, (18, 34, 50))
    stem: str = one_of("cifar", ("cifar", "imagenet"))
    width_multiplier: float = ranged(1.0, 0.0, 8.0, lo_inclusive=False)
    sync_bn: bool = False
    per_view_bn: bool = True  # each view of a pair normalised over its own batch (hac_tf/models/layers.py)
    zero_init_residual: bool = free(True, config_default=CODE_ONLY)
    level_depths: Tuple[int, ...] = (1, 2, 3, 4)  # backbone depth contrasted for each view level
    loss_weights: Optional[Tuple[float, ...]] = free(None, config_default=())  # () = all 1.0
    embed_fields: Optional[Tuple[str, ...]] = free(None, config_default=("colour",))  # () = none
    embed_dim: int = ranged(512, *_HEAD_DIM)
    embed_shuffle: bool = False  # embed the next row's params instead of the view's own (a control)
    projector_hidden_dim: Optional[int] = ranged(None, *_HEAD_DIM, config_default=0)
    projector_out_dim: Optional[int] = ranged(None, *_HEAD_DIM, config_default=0)
    projector_num_layers: Optional[int] = ranged(None, 1, 8, config_default=0)
    projector_hidden_bn: Optional[bool] = free(None, config_default=CODE_ONLY)
    projector_last_bn: Optional[bool] = free(None, config_default=CODE_ONLY)
    predictor_hidden_dim: Optional[int] = ranged(None, *_HEAD_DIM, config_default=0)
    predictor_out_dim: Optional[int] = ranged(None, *_HEAD_DIM, config_default=0)
    settings: Tuple[Tuple[str, Any], ...] = free((), config_default=CODE_ONLY)
    # the enabled plug-ins (hac_tf.plugins; the config's ``plugins`` section), given by name
    plugins: Tuple[Tuple[str, Any], ...] = free((), config_default=CODE_ONLY)

    def __init__(self, **kwargs: Any) -> None:
        fields = {f.name: f for f in dataclasses.fields(ModelSpec)}
        method = kwargs.get("method", fields["method"].default)
        if not isinstance(method, str) or method not in method_names():
            _fail("method", f"unknown method {method!r}; allowed: {', '.join(method_names())}")
        given = dict(kwargs.pop("settings", ()) or ())
        plugins = dict(kwargs.pop("plugins", ()) or ())
        registered = plugin_modules()
        for key in list(kwargs):
            if key in registered:
                plugins[key] = kwargs.pop(key)
            elif key not in fields:
                given[key] = kwargs.pop(key)
        for name, field in fields.items():
            object.__setattr__(self, name, kwargs.get(name, field.default))
        object.__setattr__(self, "settings", self._validated_settings(given))
        unknown = sorted(set(plugins) - set(registered))
        if unknown:
            _fail(unknown[0], f"unknown plug-in; registered: {', '.join(registered)}")
        object.__setattr__(self, "plugins", tuple((n, plugins[n]) for n in registered if plugins.get(n) is not None))
        self.__post_init__()

    def __getattr__(self, name: str) -> Any:
        # ``spec.viewmaker`` & co.: a plug-in's config, None when it is off; ``spec.temperature`` &
        # co.: the explicitly given setting, None when not given (or when it is a setting of another
        # method). Only called for names that are not fields.
        if not name.startswith("_") and name in plugin_modules():
            return dict(object.__getattribute__(self, "plugins")).get(name)
        if name.startswith("_") or not setting_owners(name):
            raise AttributeError(f"'ModelSpec' object has no attribute {name!r}")
        return dict(object.__getattribute__(self, "settings")).get(name)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            rule, value = schema.rule_of(field), getattr(self, field.name)
            if rule is not None and value is not None:
                kind = int if field.type in ("int", "Optional[int]") else float
                schema.check("ModelSpec", field.name, value, rule, str if isinstance(rule, schema.Choices) else kind)
        for name in ("sync_bn", "per_view_bn", "zero_init_residual", "embed_shuffle"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, f"must be a bool, got {getattr(self, name)!r}")
        self._validate_hierarchy()
        self._validate_heads()
        self._validate_plugins()

    @property
    def method_class(self) -> Type[Method]:
        return method_class(self.method)

    def _validated_settings(self, given: Mapping[str, Any]) -> Tuple[Tuple[str, Any], ...]:
        cls = method_class(self.method).settings_class
        own = set(cls.names())
        for name, value in given.items():
            if name in own or value is None:
                continue
            owners = setting_owners(name)
            if not owners:
                _fail(name, f"unknown field; allowed: {sorted(self.field_names())}")
            _fail(name, f"is a setting of {', '.join(owners)}, not of method {self.method!r}; leave it None")
        explicit = {k: v for k, v in given.items() if k in own and v is not None}
        cls(**explicit)  # validates (ranges beside the settings' fields)
        return tuple(sorted(explicit.items()))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _validate_hierarchy(self) -> None:
        depths = self.level_depths
        if isinstance(depths, (str, bytes)) or not hasattr(depths, "__len__"):
            _fail("level_depths", f"must be a non-empty sequence of depths in 1..4, got {depths!r}")
        depths = tuple(depths)
        if not depths:
            _fail("level_depths", "must list at least one level (allowed depths: 1, 2, 3, 4)")
        bad = [d for d in depths if not schema.is_int(d) or not 1 <= d <= 4]
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
        if any(not schema.is_real(w) or not 0 <= w <= 1e3 for w in weights):
            _fail("loss_weights", f"must be finite numbers >= 0 and <= 1000, got {list(weights)}")
        if not any(w > 0 for w in weights):
            _fail("loss_weights", f"at least one weight must be > 0 (not all zero), got {list(weights)}")
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
        if self.embed_shuffle and not fields:
            _fail("embed_shuffle", "is true but no level is embedded (embed_fields is empty or every depth is 1)")

    def _validate_heads(self) -> None:
        for name in ("projector_hidden_bn", "projector_last_bn"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                _fail(name, f"must be a bool or None, got {value!r}")
        for name in ("predictor_hidden_dim", "predictor_out_dim"):
            if getattr(self, name) is not None and not self.has_predictor:
                _fail(name, f"method {self.method!r} has no predictor (only "
                      f"{', '.join(method_names(lambda m: m.has_predictor))} do); leave it None")
        if self.predictor_out_dim is not None and self.predictor_out_dim != self.projector["out_dim"]:
            _fail("predictor_out_dim", f"must equal the projector output "
                  f"{self.projector['out_dim']} (predictions are compared with projections), "
                  f"got {self.predictor_out_dim}")

    def _validate_plugins(self) -> None:
        registered = plugin_modules()
        resolved = []
        for name, value in self.plugins:
            module = registered[name]
            if not module.applies_to(self.method_class):
                _fail(name, f"applies to {', '.join(method_names(module.applies_to))} "
                      f"({module.APPLIES_TO}), not to method {self.method!r}")
            try:
                resolved.append((name, module.resolve(value, self.num_levels)))
            except (TypeError, ValueError) as e:
                _fail(name, str(e).replace("\n", " "))
        self._set("plugins", tuple(resolved))

    @property
    def plugin_names(self) -> Tuple[str, ...]:
        """The enabled plug-ins in plug-in order, e.g. ``("mochi", "augself")``."""
        return tuple(name for name, _ in self.plugins)

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
        return self.method_class.has_predictor

    @property
    def has_target(self) -> bool:
        """Whether the method keeps a momentum / EMA target encoder (MoCo, BYOL)."""
        return self.method_class.target_kind is not None

    @property
    def projector(self) -> Dict[str, Any]:
        """Resolved :class:`~hac_tf.models.ProjectionMLP` keyword arguments."""
        overrides = {key: getattr(self, f"projector_{key}")
                     for key in ("hidden_dim", "out_dim", "num_layers", "hidden_bn", "last_bn")}
        return self.method_class.projector_kwargs({k: v for k, v in overrides.items() if v is not None})

    @property
    def predictor(self) -> Optional[Dict[str, int]]:
        """Resolved :class:`~hac_tf.models.PredictionMLP` keyword arguments, or None."""
        if not self.has_predictor:
            return None
        hidden = self.predictor_hidden_dim or self.method_class.predictor_hidden_default
        return {"hidden_dim": hidden, "out_dim": self.projector["out_dim"]}

    @property
    def method_settings(self) -> MethodSettings:
        """The method's settings dataclass, defaults filled in."""
        return self.method_class.settings_class(**dict(self.settings))

    def setting(self, name: str) -> Any:
        """Resolved method setting (``temperature``, ``moco_queue_size``, ...)."""
        if not setting_owners(name):
            raise KeyError(f"unknown method setting {name!r}")
        if name not in self.method_class.settings_class.names():
            raise KeyError(f"method {self.method!r} has no setting {name!r}")
        return getattr(self.method_settings, name)

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        """Keys :meth:`from_dict` accepts: the fields (but ``settings`` and ``plugins``), every
        registered plug-in and every method setting."""
        from hac_tf.methods.registry import all_setting_names

        fields = tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("settings", "plugins"))
        return fields + tuple(plugin_modules()) + all_setting_names()

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict: the fields, with the given settings and every registered plug-in
        (its config's dict, None when off) flattened in by name."""
        out: Dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "settings":
                out.update(dict(value))
            elif field.name == "plugins":
                enabled = dict(value)
                out.update({name: None if enabled.get(name) is None else enabled[name].to_dict()
                            for name in plugin_modules()})
            elif isinstance(value, tuple):
                out[field.name] = list(value)
            else:
                out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], lenient: bool = False) -> "ModelSpec":
        """Builds a spec from a dict (e.g. ``to_dict()``, or that of an earlier version, which
        listed every method setting, None for those of other methods).

        With ``lenient=True`` (for config files that list every knob with a concrete default):
        ``0`` / ``0.0`` / ``()`` / ``None`` for an optional knob mean "method default", and a
        method setting the method does not have is dropped when it equals its documented default
        (e.g. ``moco_queue_size=4096`` on SimCLR) and rejected otherwise. Unknown keys raise.
        """
        names = set(cls.field_names())
        aliases = {"projector_layers": "projector_num_layers"}  # config-file alias
        kwargs: Dict[str, Any] = {}
        for key, value in values.items():
            key = aliases.get(key, key)
            if key not in names:
                raise ValueError(f"ModelSpec.{key}: unknown field; allowed: {sorted(names)}")
            kwargs[key] = value
        if lenient:
            method = method_class(kwargs.get("method", "simsiam"))
            optional = {f.name for f in dataclasses.fields(cls) if f.default is None} | set(plugin_modules())
            for key in list(kwargs):
                value = kwargs[key]
                zero = value is None or (schema.is_real(value) and value == 0)
                if (key in optional or key in method.settings_class.names()) and zero:
                    kwargs.pop(key)
                elif key == "loss_weights" and value is not None and len(value) == 0:
                    kwargs.pop(key)
                elif key not in optional and key not in method.settings_class.names() and setting_owners(key):
                    owner = method_class(setting_owners(key)[0]).settings_class
                    if value == owner.field(key).default:
                        kwargs.pop(key)
        for key in ("level_depths", "loss_weights", "embed_fields"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def save(self, path: str) -> None:
        """Writes :meth:`to_dict` as JSON to ``path`` (atomically: a temporary file renamed into place)."""
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "ModelSpec":
        """The spec :meth:`save` wrote to ``path``; ValueError naming the file if it is not one."""
        with open(path, encoding="utf-8") as f:
            try:
                values = json.load(f)
                if not isinstance(values, dict):
                    raise ValueError(f"expected a JSON object, got {type(values).__name__}")
                values.setdefault("per_view_bn", False)  # saved before the switch existed: shared statistics
                return cls.from_dict(values)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path} does not hold a valid model spec: {e}") from None

    @classmethod
    def baseline(cls, method: str = "simsiam", **kwargs: Any) -> "ModelSpec":
        """The classical single-level baseline: one pair at full depth, no embedding."""
        kwargs.setdefault("level_depths", (4,))
        kwargs.setdefault("embed_fields", ())
        return cls(method=method, **kwargs)
