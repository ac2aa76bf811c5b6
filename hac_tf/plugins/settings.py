"""Shared pieces of the plug-in configs (the plug-ins' settings dataclasses): validation helpers,
level resolution and the values a config-file section holds.

Every plug-in config is a frozen dataclass with ``from_value`` (accepts the config, a dict of its
fields or None) and ``to_dict``. Levels are written 1-based (``level_k`` batch keys, as in YAML);
``()`` means the plug-in's default levels, resolved by :meth:`resolve_levels` against the number
of view levels of the model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple, Type, TypeVar

from hac_tf import schema
from hac_tf.schema import is_int, is_real

T = TypeVar("T")


def fail(owner: str, field: str, message: str) -> None:
    raise ValueError(f"{owner}.{field}: {message}")


def check_int(owner: str, field: str, value: Any, minimum: int = 1) -> None:
    if not is_int(value) or value < minimum:
        fail(owner, field, f"must be an int >= {minimum}, got {value!r}")


def check_real(owner: str, field: str, value: Any, minimum: float = 0.0, strict: bool = False,
               maximum: Optional[float] = None) -> None:
    ok = is_real(value) and (value > minimum if strict else value >= minimum)
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bound = f"{'>' if strict else '>='} {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        fail(owner, field, f"must be a number {bound}, got {value!r}")


def as_tuple(value: Any) -> Tuple:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        return (value,)
    return tuple(value)


def check_levels(owner: str, levels: Sequence[Any]) -> Tuple[int, ...]:
    levels = as_tuple(levels)
    bad = [v for v in levels if not is_int(v) or v < 1]
    if bad:
        fail(owner, "levels", f"must be 1-based level numbers (level_k), got {list(levels)}")
    if len(set(levels)) != len(levels):
        fail(owner, "levels", f"lists a level twice: {list(levels)}")
    return tuple(int(v) for v in levels)


def resolve_levels(owner: str, levels: Tuple[int, ...], num_levels: int, default: str) -> Tuple[int, ...]:
    """1-based levels checked against ``num_levels``; ``()`` -> ``default`` ("last" | "all")."""
    if not levels:
        return (num_levels,) if default == "last" else tuple(range(1, num_levels + 1))
    bad = [v for v in levels if v > num_levels]
    if bad:
        fail(owner, "levels", f"{list(levels)} names level(s) {bad} but the model has {num_levels} "
             f"view level(s)")
    return tuple(sorted(levels))


def config_from_value(cls: Type[T], value: Any) -> Optional[T]:
    """``cls`` instance from an instance, a dict of its fields (lists become tuples) or None."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; allowed: {sorted(names)}")
        kwargs: Dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(v, list):
                v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
            kwargs[k] = v
        return cls(**kwargs)
    raise ValueError(f"expected a {cls.__name__}, a dict or None, got {type(value).__name__}")


def section_values(section: Any, config_cls: type) -> Dict[str, Any]:
    """The fields of ``config_cls`` (a plug-in config) that a config-file section holds: every
    field that is not CODE_ONLY (run facts are worked out per run), lists as tuples."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        if schema.config_default_of(f) is schema.CODE_ONLY:
            continue
        value = getattr(section, f.name)
        out[f.name] = tuple(value) if isinstance(value, list) else value
    return out
