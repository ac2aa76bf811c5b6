"""Typed experiment configuration (TF Model Garden ``hyperparams.Config`` dataclasses).

A config is built from defaults, then a YAML file, then ``--params_override`` strings
(``a.b=v,c.d=w`` or YAML), in that order. Unknown keys, wrong types and values outside their
allowed set or range are rejected *before any data is read*, with one line naming the key:

    ConfigError: optimizer.name='sgdd' is not one of ['adamw', 'lars', 'sgd']

Each field's range or choices are declared beside it (``ranged`` / ``one_of``, hac_tf/schema.py);
``RANGES`` and ``CHOICES`` are read back from the fields. The ``model`` section is generated from
:class:`hac_tf.methods.ModelSpec`'s fields and the settings of every registered base method
(hac_tf/methods/registry.py), so a new method's settings are config keys without an edit here.

YAML is always read with ``yaml.safe_load`` (no Python object construction from files).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml
from official.modeling import hyperparams

from hac_tf import schema
from hac_tf.augment.policies import GROUPS
from hac_tf.methods import ModelSpec, method_class, method_names
from hac_tf.methods.registry import all_setting_names, setting_owners
from hac_tf.methods.spec import EMBED_FIELD_NAMES
from hac_tf.plugins import PLUGIN_MODULES
from hac_tf.plugins.base import ConfigFacts
from hac_tf.plugins.registry import plugin_modules
from hac_tf.plugins.settings import section_values
from hac_tf.schema import one_of, ranged


class ConfigError(ValueError):
    """A configuration value is unknown, mistyped, out of range or contradictory."""


# ----------------------------------------------------------------------------- sections
@dataclasses.dataclass
class DataConfig(hyperparams.Config):
    """Where images come from. ``source``: coloured_fashion_mnist | banded_hue_fashion_mnist | fashion_mnist |
    fashion_mnist_overlay | image_folder | tfds:<name>."""

    source: str = "coloured_fashion_mnist"
    data_dir: Optional[str] = None  # IDX dir / image-folder root / TFDS data_dir (None = default)
    train_split: str = "train"
    test_split: str = "test"
    # coloured Fashion-MNIST (and its overlay variant); banded hue: bins of the hue labels
    num_colours: int = ranged(16, 2, 360)
    overlay: str = one_of("digits", ("digits", "shapes"))  # fashion_mnist_overlay only: the "overlay" label
    image_size: int = ranged(32, 8, 1024)  # side of every view
    batch_size: int = ranged(256, 1, 1 << 20)  # global batch of SOURCE images (each yields 2 views per level)
    shuffle_buffer: int = ranged(10000, 1, 1 << 24)
    max_train_examples: int = ranged(0, 0, 1 << 31)  # 0 = all
    label_keys: Tuple[str, ...] = ("garment", "colour")  # labels the probes evaluate
    knn_label: str = "garment"
    # image_folder: "auto" = class folders give labels; "none" = unlabelled images (flat or nested)
    labels: str = one_of("auto", ("auto", "none"))
    # labelled data for evaluation: "" = data.train_split / data.test_split of the training source;
    # eval_data_dir: another (labelled) image folder to evaluate on (e.g. when labels: none)
    eval_train_split: str = ""
    eval_data_dir: Optional[str] = None
    download: bool = False  # tfds: sources may download_and_prepare (off: an offline error names the command)
    # sources of any size: longest side kept before batching (antialiased down-scale, aspect kept);
    # 0 = automatic from data.image_size (see hac_tf/data/resolution.py)
    max_source_side: int = ranged(0, 0, 1 << 15)


@dataclasses.dataclass
class AugmentConfig(hyperparams.Config):
    """View policy. ``policy``: add_one | uniform | strength | two_view (see hac_tf.augment)."""

    policy: str = one_of("add_one", ("add_one", "uniform", "strength", "two_view"))
    order: Tuple[str, ...] = ("crop_jitter", "grayscale", "blur", "flip")  # add-one group order
    num_levels: int = ranged(4, 1, 6)  # levels for add_one/uniform/strength
    groups: Tuple[str, ...] = ("crop_jitter", "grayscale", "blur", "flip")  # uniform/strength/two_view
    crop_min_scale: float = ranged(0.2, 0.0, 1.0, lo_inclusive=False)
    jitter_strength: Tuple[float, ...] = (0.4, 0.4, 0.4, 0.1)
    jitter_probability: float = ranged(0.8, 0.0, 1.0)
    grayscale_probability: float = ranged(0.2, 0.0, 1.0)
    blur_probability: float = ranged(-1.0, -1.0, 1.0)  # < 0: the paper code's rule (0.5, or 0 at <= 32 px)
    flip_probability: float = ranged(0.5, 0.0, 1.0)
    rotation_probability: float = ranged(0.5, 0.0, 1.0)
    solarize_probability: float = ranged(0.2, 0.0, 1.0)


@dataclasses.dataclass
class OptimizerConfig(hyperparams.Config):
    """``name``: sgd | lars | adamw. lr = base_lr * batch_size / 256 when lr_scaling == 'linear'."""

    name: str = one_of("sgd", ("adamw", "lars", "sgd"))
    base_lr: float = ranged(0.05, 0.0, 100.0, lo_inclusive=False)
    lr_scaling: str = one_of("linear", ("linear", "none"))
    momentum: float = ranged(0.9, 0.0, 1.0, hi_inclusive=False)
    weight_decay: float = ranged(1e-4, 0.0, 1.0)
    warmup_epochs: float = ranged(0.0, 0.0, 1e6)
    schedule: str = one_of("cosine", ("constant", "cosine"))  # cosine | constant
    fix_predictor_lr: bool = False  # SimSiam: predictor keeps the initial lr
    lars_eta: float = ranged(1e-3, 0.0, 1.0, lo_inclusive=False)
    clipnorm: float = ranged(0.0, 0.0, 1e6)  # 0 = no clipping


@dataclasses.dataclass
class TrainConfig(hyperparams.Config):
    epochs: float = ranged(1.0, 0.0, 1e6, lo_inclusive=False)
    steps_per_epoch: int = ranged(0, 0, 1 << 31)  # 0 = dataset size // batch size
    max_steps: int = ranged(0, 0, 1 << 31)  # 0 = epochs * steps_per_epoch
    seed: int = ranged(0, 0, (1 << 31) - 1)
    mixed_precision: str = one_of("float32", ("float32", "mixed_bfloat16", "mixed_float16"))
    # mixed_float16 only: dynamic loss scaling (hac_tf/training/loss_scaling.py)
    # 2**15; halved on every step with inf/NaN gradients (larger than 2**48 only adds skipped steps)
    loss_scale_initial: float = ranged(32768.0, 0.0, 2.0 ** 48, lo_inclusive=False)
    loss_scale_growth_steps: int = ranged(2000, 1, 1 << 31)  # doubled after this many consecutive finite steps
    log_every_steps: int = ranged(10, 1, 1 << 31)
    checkpoint_every_steps: int = ranged(100, 1, 1 << 31)
    keep_checkpoints: int = ranged(3, 1, 1000)
    # SIGTERM (preemption): finish the step, checkpoint, exit 5 within this many seconds
    # (hac_tf/training/preemption.py); 0 = SIGTERM's default action (terminate at once)
    preemption_grace_seconds: float = ranged(25.0, 0.0, 86400.0)
    knn_every_steps: int = ranged(0, 0, 1 << 31)  # 0 = only at the end
    image_summary_every_steps: int = ranged(0, 0, 1 << 31)  # 0 = once at the start
    deterministic_ops: bool = False
    # CPU threads (hac_tf/training/threads.py): 0 TF's default, n threads, -1 the multi-level plan
    # (one thread per op, levels in parallel; not the default: its gain was within noise, see
    # docs/PERFORMANCE.md). Applied by tools/train.py at start.
    intra_op_threads: int = ranged(0, -1, 4096)
    inter_op_threads: int = ranged(0, -1, 4096)


@dataclasses.dataclass
class EvalConfig(hyperparams.Config):
    knn_k: int = ranged(200, 1, 100000)
    knn_temperature: float = ranged(0.1, 0.0, 100.0, lo_inclusive=False)
    knn_max_train: int = ranged(10000, 1, 1 << 31)
    knn_max_test: int = ranged(2000, 1, 1 << 31)
    probe_max_train: int = ranged(10000, 1, 1 << 31)
    probe_max_test: int = ranged(5000, 1, 1 << 31)
    random_init_reference: bool = True


@dataclasses.dataclass
class ExportConfig(hyperparams.Config):
    enabled: bool = True
    base_dir: str = "saved_models"
    name: str = ""  # "" = the model_dir's basename
    # where TF Serving sees base_dir: models.config's base_paths are <serving_root>/<name>
    # (the README's Docker mount -v $PWD/saved_models:/models); "" = absolute host paths.
    # models.host.config next to it always holds the host paths (hac_tf/export/serving_layout.py).
    serving_root: str = "/models"


# --- generated sections: model (hac_tf.methods) and plugins (hac_tf.plugins, docs/PLUGINS.md) -------
def _plain_type(hint: Any) -> Any:
    """``Optional[X]`` -> ``X`` (a config key always holds a value)."""
    if typing.get_origin(hint) is Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _config_field(name: str, hint: Any, default: Any, rule: Optional[schema.Rule]) -> tuple:
    """A generated section's field: starting from ``default``; a 0 that means "the default of the
    component" widens the range to admit it."""
    if isinstance(rule, schema.Range) and default == 0 and not rule.contains(0):
        rule = dataclasses.replace(rule, lo=0, lo_inclusive=True)
    return name, _plain_type(hint), dataclasses.field(default=default, metadata=_rule_metadata(rule))


def _rule_metadata(rule: Optional[schema.Rule]) -> dict:
    return {} if rule is None else {schema.RULE_KEY: rule}


def _fields_of(owner: type) -> List[tuple]:
    """The config fields of a component dataclass: every field that is not CODE_ONLY, starting
    from its config default, with its rule."""
    hints = typing.get_type_hints(owner)
    out = []
    for f in dataclasses.fields(owner):
        default = schema.config_default_of(f)
        if default is not schema.CODE_ONLY:
            out.append(_config_field(f.name, hints[f.name], default, schema.rule_of(f)))
    return out


def _section(name: str, fields: List[tuple], doc: str) -> type:
    cls = dataclasses.make_dataclass(name, fields, bases=(hyperparams.Config,))
    cls.__module__ = __name__
    cls.__doc__ = doc
    return cls


def _model_config_class() -> type:
    """``ModelConfig``: the ``model`` section, generated (see the module docstring).

    Keys: every ModelSpec field that is not CODE_ONLY, starting from its config default (0 / ()
    for "the method's default" where the spec has None; the range then admits 0), then every
    setting of every registered method (``temperature``, ``moco_queue_size``, ...), starting from
    the default of the method(s) that own it, or 0 = "the method's default" when owners differ.
    """
    fields = [(n, t, dataclasses.field(default=f.default, metadata=_rule_metadata(schema.Choices(method_names()))))
              if n == "method" else (n, t, f) for n, t, f in _fields_of(ModelSpec)]
    for name in all_setting_names():
        owned = [method_class(m).settings_class.field(name) for m in setting_owners(name)]
        rules = {schema.rule_of(f) for f in owned}
        if len(rules) != 1:
            raise TypeError(f"method setting {name!r} has different ranges in {list(setting_owners(name))}")
        defaults = {f.default for f in owned}
        default = defaults.pop() if len(defaults) == 1 else type(owned[0].default)(0)
        fields.append(_config_field(name, type(default), default, rules.pop()))
    return _section("ModelConfig", fields, "Backbone, hierarchy, base method and its settings (generated from "
                    "hac_tf.methods.ModelSpec and the registered methods; see each for the meaning of a key).")


def _plugin_config_class(module: Any) -> type:
    """``<Name>PluginConfig``: ``enabled``, the plug-in config's fields (its CONFIG_CLASS, not
    CODE_ONLY: those are worked out per run), then its SECTION_FIELDS (inputs of those run facts)."""
    config_cls = module.CONFIG_CLASS
    extras = [_config_field(n, type(f.default), f.default, schema.rule_of(f)) for n, f in module.SECTION_FIELDS.items()]
    fields = [("enabled", bool, dataclasses.field(default=False))] + _fields_of(config_cls) + extras
    doc = (config_cls.__doc__ or "").strip().splitlines()[0]
    return _section(config_cls.__name__.replace("Config", "PluginConfig"), fields,
                    f"{doc} (generated from {config_cls.__module__}.{config_cls.__name__}).")


ModelConfig = _model_config_class()
PLUGIN_SECTIONS: Dict[str, type] = {name: _plugin_config_class(m) for name, m in PLUGIN_MODULES.items()}
PluginsConfig = _section(
    "PluginsConfig", [(name, cls, dataclasses.field(default_factory=cls)) for name, cls in PLUGIN_SECTIONS.items()],
    "The plug-ins (hac_tf.plugins), each off unless ``enabled``.")


@dataclasses.dataclass
class ExperimentConfig(hyperparams.Config):
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    plugins: PluginsConfig = dataclasses.field(default_factory=PluginsConfig)


# ----------------------------------------------------------------------------- rules
def _walk_fields(cls: type, prefix: str = ""):
    """(dotted path, dataclass field) of every leaf field of a config class."""
    for field in dataclasses.fields(cls):
        if field.name in ("default_params", "restrictions"):
            continue
        sub = field.default_factory if field.default_factory is not dataclasses.MISSING else None
        if isinstance(sub, type) and issubclass(sub, hyperparams.Config):
            yield from _walk_fields(sub, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", field


#: path -> allowed values, and path -> (lower, upper, lower inclusive, upper inclusive): read back
#: from the fields' declarations
CHOICES: Dict[str, Sequence[Any]] = {
    p: schema.rule_of(f).values for p, f in _walk_fields(ExperimentConfig)
    if isinstance(schema.rule_of(f), schema.Choices)}
RANGES: Dict[str, Tuple[float, float, bool, bool]] = {
    p: schema.rule_of(f).as_tuple() for p, f in _walk_fields(ExperimentConfig)
    if isinstance(schema.rule_of(f), schema.Range)}
AUG_GROUPS = GROUPS  # the view policy's augmentation groups (hac_tf/augment/policies.py)
EMBED_FIELDS = EMBED_FIELD_NAMES
#: list fields: every element is checked (value set, per-position range or sign) in _cross_checks,
#: and those of an enabled plug-in's section by its config class (_plugin_config: the plug-in
#: configs check their list fields on construction); listed here so tests/training/test_config.py
#: can prove no field is unchecked.
CHECKED_LIST_FIELDS = (
    "data.label_keys", "augment.order", "augment.groups", "augment.jitter_strength", "model.level_depths",
    "model.loss_weights", "model.embed_fields",
) + tuple(f"plugins.{name}.{f.name}" for name, cls in PLUGIN_SECTIONS.items() for f in dataclasses.fields(cls)
          if typing.get_origin(typing.get_type_hints(cls)[f.name]) in (tuple, list))
#: free-form strings (paths, split names, names) and flags: type-checked only (booleans must be
#: true/false; a path is checked when it is used, with a clear error).
FREE_FIELDS = (
    "data.source", "data.data_dir", "data.train_split", "data.test_split", "data.knn_label", "export.base_dir",
    "export.name", "data.eval_train_split", "data.eval_data_dir", "export.serving_root",
)
#: (brightness, contrast, saturation) factors are in [0, 10], hue in [0, 0.5] (as torchvision)
JITTER_LIMITS = (10.0, 10.0, 10.0, 0.5)


def _check_type(path: str, value: Any, annotation: Any) -> None:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return
    if origin is Union:  # Optional[X]
        if value is None and type(None) in args:
            return
        inner = [a for a in args if a is not type(None)]
        return _check_type(path, value, inner[0])
    if origin in (tuple, list, Tuple, List):
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{path}={value!r} must be a list, got {type(value).__name__}")
        elem = args[0] if args else Any
        for i, v in enumerate(value):
            _check_type(f"{path}[{i}]", v, elem)
        return
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r} must be true or false, got {type(value).__name__}")
    elif annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}={value!r} must be an integer, got {type(value).__name__}")
    elif annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r} must be a number, got {type(value).__name__}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{path}={value!r} must be finite")
    elif annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={value!r} must be a string, got {type(value).__name__}")


def _walk(config: hyperparams.Config, prefix: str = ""):
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        path = f"{prefix}{field.name}"
        value = getattr(config, field.name)
        if isinstance(value, hyperparams.Config):
            yield from _walk(value, path + ".")
        else:
            yield path, value, hints[field.name]


def validate(config: ExperimentConfig) -> ExperimentConfig:
    """Checks types, allowed values, ranges and cross-field rules. Raises ConfigError."""
    for path, value, annotation in _walk(config):
        _check_type(path, value, annotation)
        if path in CHOICES and value not in CHOICES[path]:
            raise ConfigError(f"{path}={value!r} is not one of {sorted(CHOICES[path])}")
        if path in RANGES:
            lo, hi, lo_inc, hi_inc = RANGES[path]
            ok = (value >= lo if lo_inc else value > lo) and (value <= hi if hi_inc else value < hi)
            if not ok:
                lb, rb = ("[" if lo_inc else "("), ("]" if hi_inc else ")")
                raise ConfigError(f"{path}={value!r} is outside the allowed range {lb}{lo}, {hi}{rb}")
    _cross_checks(config)
    return config


def _cross_checks(c: ExperimentConfig) -> None:
    src = c.data.source
    if not (src in ("coloured_fashion_mnist", "banded_hue_fashion_mnist", "fashion_mnist", "fashion_mnist_overlay",
                    "image_folder") or src.startswith("tfds:")):
        raise ConfigError(f"data.source={src!r} is not one of ['banded_hue_fashion_mnist', 'coloured_fashion_mnist', "
                          f"'fashion_mnist', 'fashion_mnist_overlay', 'image_folder', 'tfds:<builder name>']")
    if src == "image_folder" and not c.data.data_dir:
        raise ConfigError("data.data_dir must name the image folder root when data.source='image_folder'")
    if c.data.labels == "none" and src != "image_folder":
        raise ConfigError(f"data.labels='none' (unlabelled images) needs data.source='image_folder', not {src!r}")
    if c.data.download and not src.startswith("tfds:"):
        raise ConfigError(f"data.download=true applies to tfds:<builder name> sources only, not "
                          f"data.source={src!r}")
    if c.data.eval_data_dir and not os.path.isdir(c.data.eval_data_dir):
        raise ConfigError(f"data.eval_data_dir={c.data.eval_data_dir!r} is not a directory (it must name a "
                          f"labelled image folder: <root>/<class>/... or <root>/train|test/<class>/...)")
    for key in ("order", "groups"):
        bad = [g for g in getattr(c.augment, key) if g not in AUG_GROUPS]
        if bad:
            raise ConfigError(f"augment.{key} has unknown group(s) {bad}; allowed: {list(AUG_GROUPS)}")
    if len(c.augment.jitter_strength) != 4:
        raise ConfigError("augment.jitter_strength must have 4 values (brightness, contrast, saturation, hue)")
    if not all(0.0 <= v <= hi for v, hi in zip(c.augment.jitter_strength, JITTER_LIMITS)):
        raise ConfigError(f"augment.jitter_strength={list(c.augment.jitter_strength)}: brightness, contrast and "
                          f"saturation must be in [0, 10], hue in [0, 0.5]")
    if not c.data.label_keys or len(set(c.data.label_keys)) != len(c.data.label_keys):
        raise ConfigError(f"data.label_keys={list(c.data.label_keys)} must be distinct and non-empty")
    if c.export.name and (os.sep in c.export.name or c.export.name in (".", "..")):
        raise ConfigError(f"export.name={c.export.name!r} must be a plain directory name (no '{os.sep}')")
    if c.export.serving_root and not c.export.serving_root.startswith("/"):
        raise ConfigError(f"export.serving_root={c.export.serving_root!r} must be an absolute path as the server "
                          f"sees it (e.g. '/models'), or '' for the absolute host paths")
    m = c.model
    n_levels = num_view_levels(c)
    if len(m.level_depths) != n_levels:
        raise ConfigError(f"model.level_depths has {len(m.level_depths)} entries but augment.policy="
                          f"{c.augment.policy!r} produces {n_levels} view level(s)")
    bad = [d for d in m.level_depths if d not in (1, 2, 3, 4)]
    if bad:
        raise ConfigError(f"model.level_depths={list(m.level_depths)} has depth(s) {bad}; allowed: 1, 2, 3, 4")
    if m.loss_weights and len(m.loss_weights) != len(m.level_depths):
        raise ConfigError(f"model.loss_weights has {len(m.loss_weights)} entries, model.level_depths has "
                          f"{len(m.level_depths)}")
    if m.loss_weights and not (all(0.0 <= w <= 1e3 for w in m.loss_weights) and sum(m.loss_weights) > 0):
        raise ConfigError(f"model.loss_weights={list(m.loss_weights)} must be in [0, 1000] and not all zero")
    bad = [f for f in m.embed_fields if f not in EMBED_FIELDS]
    if bad:
        raise ConfigError(f"model.embed_fields has unknown field(s) {bad}; allowed: {list(EMBED_FIELDS)}")
    with_predictor = method_names(lambda cls: cls.has_predictor)
    if m.method not in with_predictor and (m.predictor_hidden_dim or m.predictor_out_dim):
        raise ConfigError(f"model.predictor_* is set but model.method={m.method!r} has no predictor "
                          f"(only {list(with_predictor)} do)")
    if c.optimizer.fix_predictor_lr and m.method not in with_predictor:
        raise ConfigError(f"optimizer.fix_predictor_lr=true needs a method with a predictor "
                          f"({list(with_predictor)}), not {m.method!r}")
    if c.data.knn_label not in c.data.label_keys:
        raise ConfigError(f"data.knn_label={c.data.knn_label!r} is not in data.label_keys={list(c.data.label_keys)}")
    _plugin_checks(c)


def _level_groups(c: ExperimentConfig) -> List[Tuple[str, ...]]:
    """The augmentation groups of every view level (as the view policy builds them)."""
    a = c.augment
    if a.policy == "add_one":
        return [tuple(a.order[: k + 1]) for k in range(num_view_levels(c))]
    return [tuple(a.groups)] * num_view_levels(c)


def _plugin_config(name: str, section: Any, num_levels: int) -> Any:
    """The plug-in's config object built from its section (its own validation: the list fields,
    its levels against ``num_levels``), a ValueError turned into a ConfigError naming the key."""
    module = plugin_modules()[name]
    values = section_values(section, module.CONFIG_CLASS)
    if "seed" in values and values["seed"] is not None and values["seed"] < 0:  # MoCHi: -1 = train.seed
        values["seed"] = None
    try:
        return module.resolve(module.CONFIG_CLASS(**values), num_levels)
    except (TypeError, ValueError) as e:
        match = re.match(r"\w+\.(\w+):? (.*)", str(e), re.S)
        key, message = match.groups() if match else ("", str(e))
        raise ConfigError(f"plugins.{name}{'.' + key if key else ''}: {message}") from None


def _plugin_checks(c: ExperimentConfig) -> None:
    """Rules of the plug-ins (hac_tf.plugins), in plug-in order and naming none: each plug-in's own
    cross-field rules (its ``check_config``, run whether it is enabled or not), then, enabled, that
    it applies to ``model.method`` and that its section makes a valid plug-in config."""
    method, n_levels = c.model.method, num_view_levels(c)
    groups = tuple(_level_groups(c))
    for name, module in PLUGIN_MODULES.items():
        section = getattr(c.plugins, name)
        applicable = method_names(module.applies_to)
        check = getattr(module, "check_config", None)
        if check is not None:
            try:
                check(c, ConfigFacts(section, applicable, groups))
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if not section.enabled:
            continue
        if method not in applicable:
            raise ConfigError(f"plugins.{name} applies to {list(applicable)}, not model.method={method!r}")
        _plugin_config(name, section, n_levels)


def num_view_levels(c: ExperimentConfig) -> int:
    if c.augment.policy == "two_view":
        return 1
    if c.augment.policy == "add_one":
        return min(c.augment.num_levels, len(c.augment.order))
    return c.augment.num_levels


# ----------------------------------------------------------------------------- loading
def _read_yaml(path: str) -> Dict[str, Any]:
    """Reads a YAML config: a file path, or else the name of a shipped config (hac_tf/configs/)."""
    if not os.path.isfile(path):
        from hac_tf.training.shipped_configs import shipped_config_names, shipped_config_path

        shipped = shipped_config_path(path)
        if shipped is None:
            raise ConfigError(f"config file {path!r} does not exist and is not the name of a shipped config; "
                              f"shipped configs: {', '.join(shipped_config_names())}")
        path = shipped
    with open(path, "r", encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path!r} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _override(config: ExperimentConfig, params: Union[str, Dict[str, Any]], origin: str) -> None:
    try:
        if isinstance(params, dict):
            config.override(params, is_strict=True)
        else:
            hyperparams.override_params_dict(config, params, is_strict=True)
    except KeyError as e:
        msg = str(e).strip("\"'")
        match = re.search(r"key '([^']+)' does not exist in <class '[\w.]+\.(\w+)'>", msg)
        if match:
            key, cls = match.groups()
            section = _SECTION_OF_CLASS.get(cls, cls)
            allowed = sorted(f.name for f in dataclasses.fields(_CLASS_BY_NAME[cls])) if cls in _CLASS_BY_NAME else []
            where = f"{section}.{key}" if section else key
            raise ConfigError(f"{origin}: unknown key {where!r}; allowed keys{' in ' + section if section else ''}: "
                              f"{allowed}") from None
        raise ConfigError(f"{origin}: {msg}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{origin}: {e}") from None


_SECTION_OF_CLASS = {"DataConfig": "data", "AugmentConfig": "augment", "ModelConfig": "model",
                     "OptimizerConfig": "optimizer", "TrainConfig": "train", "EvalConfig": "eval",
                     "ExportConfig": "export", "ExperimentConfig": "", "PluginsConfig": "plugins",
                     **{cls.__name__: f"plugins.{name}" for name, cls in PLUGIN_SECTIONS.items()}}
_CLASS_BY_NAME = {"DataConfig": DataConfig, "AugmentConfig": AugmentConfig, "ModelConfig": ModelConfig,
                  "OptimizerConfig": OptimizerConfig, "TrainConfig": TrainConfig, "EvalConfig": EvalConfig,
                  "ExportConfig": ExportConfig, "ExperimentConfig": ExperimentConfig, "PluginsConfig": PluginsConfig,
                  **{cls.__name__: cls for cls in PLUGIN_SECTIONS.values()}}


def load_config(config_file: Optional[str] = None, params_override: Sequence[str] | str = ()) -> ExperimentConfig:
    """Defaults <- YAML file <- overrides (each ``a.b=v,...`` or a YAML string); validated."""
    config = ExperimentConfig()
    if config_file:
        _override(config, _read_yaml(config_file), config_file)
    if isinstance(params_override, str):
        params_override = [params_override] if params_override else []
    for item in params_override:
        if not item:
            continue
        text = item.strip()
        if "=" in text.split(":", 1)[0] or "=" in text and ":" not in text:
            _override(config, text, "--params_override")
        else:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ConfigError(f"--params_override is neither a=b pairs nor valid YAML: {e}") from None
            if not isinstance(data, dict):
                raise ConfigError(f"--params_override YAML must be a mapping, got {text!r}")
            _override(config, data, "--params_override")
    # hyperparams turns YAML lists into lists: store tuples for hashability/immutability
    return validate(config)


def to_yaml(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.as_dict(), sort_keys=False)
