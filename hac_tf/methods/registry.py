"""The one registry of base methods: name -> :class:`~hac_tf.methods.base.Method` subclass.

A method module declares its class with ``@register``; :func:`load_method_modules` imports every
module of the ``hac_tf.methods`` package, so a new ``hac_tf/methods/<name>.py`` is found without
being listed anywhere (``import hac_tf.methods`` calls it). Every list of method names in hac_tf
is derived from here: :func:`method_names` with an optional trait filter, e.g.
``method_names(lambda m: m.has_predictor)``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict, Optional, Tuple, Type

from hac_tf.methods.base import Method, MethodSettings

_METHODS: Dict[str, Type[Method]] = {}
_TARGET_KINDS = (None, "momentum", "ema")


def register(cls: Type[Method]) -> Type[Method]:
    """Class decorator: adds a Method subclass under its ``name_`` (checked for consistency)."""
    name = cls.name_
    if not name or not name.isidentifier() or name != name.lower():
        raise ValueError(f"{cls.__name__}.name_ must be a lower-case identifier, got {name!r}")
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"two methods are registered as {name!r}: {_METHODS[name].__name__} and {cls.__name__}")
    if cls.target_kind not in _TARGET_KINDS:
        raise ValueError(f"{cls.__name__}.target_kind must be one of {list(_TARGET_KINDS)}, got {cls.target_kind!r}")
    if not cls.projector_defaults:
        raise ValueError(f"{cls.__name__}.projector_defaults is empty")
    if cls.has_predictor != (cls.predictor_hidden_default is not None):
        raise ValueError(f"{cls.__name__}: predictor_hidden_default must be set exactly when has_predictor")
    if not issubclass(cls.settings_class, MethodSettings):
        raise TypeError(f"{cls.__name__}.settings_class must subclass MethodSettings")
    _METHODS[name] = cls
    return cls


def load_method_modules() -> None:
    """Imports every module of the hac_tf.methods package (each registers its method)."""
    package = importlib.import_module("hac_tf.methods")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        importlib.import_module(f"hac_tf.methods.{info.name}")


def method_names(where: Optional[Callable[[Type[Method]], bool]] = None) -> Tuple[str, ...]:
    """Sorted names of the registered methods (those whose class satisfies ``where``)."""
    return tuple(sorted(n for n, c in _METHODS.items() if where is None or where(c)))


def method_class(name: str) -> Type[Method]:
    """The class registered as ``name``; ValueError naming the known methods otherwise."""
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(method_names())}")
    return _METHODS[name]


def setting_owners(setting: str) -> Tuple[str, ...]:
    """Names of the methods that have the setting ``setting`` (e.g. ``temperature``)."""
    return method_names(lambda c: setting in c.settings_class.names())


def all_setting_names() -> Tuple[str, ...]:
    """Every method setting name (the ``model.<setting>`` config keys), sorted."""
    return tuple(sorted({s for c in _METHODS.values() for s in c.settings_class.names()}))
