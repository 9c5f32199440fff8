"""The base of every method's settings: a frozen dataclass that checks itself when it is built.

Every method config inherits :class:`MethodConfig`. At construction (before any backbone is loaded or image
encoded) it checks

* every field annotated with ``Literal[...]`` (alone or in a union such as ``bool | Literal["auto"]``)
  generically, from the class's type hints, so a misspelt choice (``points="subregon"``) can never reach a
  method;
* the ranges and combinations a subclass declares in :meth:`MethodConfig.validate` (with the ``check_*``
  helpers below).

Errors are :class:`ConfigError` (an :class:`~roiprompt.errors.InputError`) naming the owner (the method when
built through :func:`~roiprompt.load_method`, else the config class), the field, the bad value and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from typing import Any, Literal

from ..errors import InputError


class ConfigError(InputError):
    """A config value out of its allowed set or range.

    Attributes:
        field: the field at fault (or several, "a, b", for a combination).
        value: the value given.
        expected: what is allowed, in words (e.g. "one of 'auto', 'none'", "an integer >= 1").
        owner: the method name or config class the message starts with.
    """

    def __init__(self, field: str, value: Any, expected: str, owner: str = "") -> None:
        self.field, self.value, self.expected, self.owner = field, value, expected, owner
        prefix = f"{owner}: " if owner else ""
        super().__init__(f"{prefix}{field}={value!r} is not allowed; expected {expected}")

    def owned_by(self, owner: str) -> "ConfigError":
        """The same error with its message starting with ``owner`` (e.g. the method name)."""
        return ConfigError(self.field, self.value, self.expected, owner)


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of every method config (no fields of its own, so subclasses order their defaults freely).

    Subclasses extend :meth:`validate` (calling ``super().validate()``) with their ranges; ``Literal`` fields
    need nothing: they are checked here from the type hints.
    """

    def __post_init__(self) -> None:
        try:
            self.validate()
        except ConfigError as err:
            if err.owner:
                raise
            raise err.owned_by(type(self).__name__) from None

    def validate(self) -> None:
        """Raise :class:`ConfigError` on a bad value. The base checks every ``Literal`` field."""
        for name, (choices, types_) in literal_fields(type(self)).items():
            value = getattr(self, name)
            if _is_choice(value, choices) or (types_ and isinstance(value, types_)):
                continue
            allowed = [repr(c) for c in choices] + [t.__name__ for t in types_]
            raise ConfigError(name, value, "one of " + ", ".join(allowed))


@functools.lru_cache(maxsize=None)
def literal_fields(cls: type) -> dict[str, tuple[tuple[Any, ...], tuple[type, ...]]]:
    """``{field: (literal choices, other accepted types)}`` for every dataclass field of ``cls`` whose type hint
    holds a ``Literal`` (e.g. ``bool | Literal["auto"]`` -> ``(("auto",), (bool,))``)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        members = typing.get_args(hint) if _is_union(hint) else (hint,)
        choices = tuple(c for m in members if typing.get_origin(m) is Literal for c in typing.get_args(m))
        if not choices:
            continue
        others = tuple(type(None) if m is None else m for m in members
                       if typing.get_origin(m) is not Literal and isinstance(m, type))
        out[f.name] = (choices, others)
    return out


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _is_choice(value: Any, choices: tuple[Any, ...]) -> bool:
    # type-exact, so 1 does not pass for True nor True for 1
    return any(type(value) is type(c) and value == c for c in choices)


# -- range checks subclasses call from validate() -------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name: str, value: Any, minimum: int = 0, optional: bool = False) -> None:
    """``value`` is an integer >= ``minimum`` (or None when ``optional``)."""
    if optional and value is None:
        return
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum):
        raise ConfigError(name, value, f"an integer >= {minimum}" + (" or None" if optional else ""))


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    """``value`` is a finite number in the interval given by ``low`` / ``high`` (open ends when asked)."""
    ok = _is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ConfigError(name, value, f"a number in {interval}")


def check_probability(name: str, value: Any) -> None:
    """``value`` is a number in [0, 1]."""
    check_number(name, value, 0.0, 1.0)
