"""Dataclass fields that carry their own rule: the allowed range or choices sit next to the field.

    @dataclasses.dataclass(frozen=True)
    class MoCoSettings(MethodSettings):
        temperature: float = ranged(0.2, 0.0, 100.0, lo_inclusive=False)
        moco_queue_size: int = ranged(4096, 1, 1 << 22)

:func:`rule_of` reads a field's rule back (a :class:`Range` or :class:`Choices`), :func:`check`
applies it with a one-line error ``ValueError("<owner>.<field>: ...")``. The method settings
(hac_tf/methods), the model spec (hac_tf/methods/spec.py), the plug-in configs (hac_tf/plugins)
and the experiment config (hac_tf/training/config.py) declare their rules this way, so each rule
is written once, beside the field it checks.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Optional, Tuple, Union

RULE_KEY = "hac_tf_rule"
#: metadata key: the value a config file's key starts from when it differs from the field's
#: default (e.g. 0 = "the method's default" where the dataclass says None); CODE_ONLY: not a key
CONFIG_DEFAULT_KEY = "hac_tf_config_default"
CODE_ONLY = object()
_UNSET = object()


def _metadata(rule: Any, config_default: Any) -> dict:
    out = {} if rule is None else {RULE_KEY: rule}
    if config_default is not _UNSET:
        out[CONFIG_DEFAULT_KEY] = config_default
    return out


@dataclasses.dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (each end inclusive or not)."""

    lo: float
    hi: float
    lo_inclusive: bool = True
    hi_inclusive: bool = True

    def contains(self, value: Any) -> bool:
        return (value >= self.lo if self.lo_inclusive else value > self.lo) and (
            value <= self.hi if self.hi_inclusive else value < self.hi)

    def describe(self) -> str:
        """E.g. ``[0.0, 1.0)``."""
        return f"{'[' if self.lo_inclusive else '('}{self.lo}, {self.hi}{']' if self.hi_inclusive else ')'}"

    def as_tuple(self) -> Tuple[float, float, bool, bool]:
        return (self.lo, self.hi, self.lo_inclusive, self.hi_inclusive)


@dataclasses.dataclass(frozen=True)
class Choices:
    """``value in values``."""

    values: Tuple[Any, ...]

    def contains(self, value: Any) -> bool:
        return value in self.values


Rule = Union[Range, Choices]


def ranged(default: Any, lo: float, hi: float, lo_inclusive: bool = True, hi_inclusive: bool = True,
           config_default: Any = _UNSET) -> Any:
    """A dataclass field with ``default`` whose values must lie in the range."""
    return dataclasses.field(default=default, metadata=_metadata(Range(lo, hi, lo_inclusive, hi_inclusive),
                                                                 config_default))


def one_of(default: Any, values, config_default: Any = _UNSET) -> Any:
    """A dataclass field with ``default`` whose values must be among ``values``."""
    return dataclasses.field(default=default, metadata=_metadata(Choices(tuple(values)), config_default))


def free(default: Any, config_default: Any = _UNSET) -> Any:
    """A dataclass field without a range or choices (checked by its owner), e.g. a list or a
    ``config_default=CODE_ONLY`` field that config files do not set."""
    return dataclasses.field(default=default, metadata=_metadata(None, config_default))


def rule_of(field: dataclasses.Field) -> Optional[Rule]:
    """The field's rule, or None (a free or a structured field)."""
    return field.metadata.get(RULE_KEY)


def config_default_of(field: dataclasses.Field) -> Any:
    """What a config file's key starts from: the field's own default unless it declares another
    (CODE_ONLY: the field is not a config key)."""
    return field.metadata.get(CONFIG_DEFAULT_KEY, field.default)


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check(owner: str, name: str, value: Any, rule: Optional[Rule], kind: type = float) -> None:
    """Raises ``ValueError("<owner>.<name>: ...")`` unless ``value`` is a ``kind`` (int: an
    integer; float: a finite number) that satisfies ``rule``."""
    if isinstance(rule, Choices):
        if not rule.contains(value):
            raise ValueError(f"{owner}.{name}: must be one of {list(rule.values)}, got {value!r}")
        return
    if kind is int and not is_int(value):
        raise ValueError(f"{owner}.{name}: must be an int, got {value!r}")
    if kind is float and not is_real(value):
        raise ValueError(f"{owner}.{name}: must be a finite number, got {value!r}")
    if isinstance(rule, Range) and not rule.contains(value):
        raise ValueError(f"{owner}.{name}: must be in {rule.describe()}, got {value!r}")


def check_fields(owner: str, instance: Any) -> None:
    """Checks every field of a dataclass instance that has a rule and a value (see :func:`check`);
    the field's kind is its default's type (int or float)."""
    for field in dataclasses.fields(instance):
        rule = rule_of(field)
        if rule is None or getattr(instance, field.name) is None:  # None: unset (a default to resolve)
            continue
        kind = int if is_int(field.default) else float if isinstance(field.default, float) else object
        check(owner, field.name, getattr(instance, field.name), rule, kind)
