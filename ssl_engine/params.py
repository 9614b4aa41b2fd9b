"""Declared parameters: a default, a valid range and one line of help per dataclass field.

Every config section and every method's hyperparameters are dataclasses whose fields are made
with `hyper(...)`. That single declaration drives validation (one message per bad field),
the TOML round trip, `python main.py methods`, and the app's forms. A problem names its field
by address (`prefix.field`, e.g. `method.temperature`) and says what is wrong after it.

    @dataclass
    class SimCLRParams:
        temperature: float = hyper(0.5, gt=0, le=10, help="softmax temperature of NT-Xent")
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import typing
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, Problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Spec:
    """What a field accepts: bounds (inclusive ge/le, strict gt/lt), choices, and help."""

    help: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None

    def range_text(self) -> str:
        """The valid range as a user reads it, e.g. '> 0, <= 1' or 'one of a, b'."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        parts = []
        if self.gt is not None:
            parts.append(f"> {self.gt:g}")
        if self.ge is not None:
            parts.append(f">= {self.ge:g}")
        if self.lt is not None:
            parts.append(f"< {self.lt:g}")
        if self.le is not None:
            parts.append(f"<= {self.le:g}")
        return ", ".join(parts)


def hyper(default: Any, *, help: str, ge=None, gt=None, le=None, lt=None, choices=None):
    """A dataclass field with a default, a valid range and a line of help."""
    spec = Spec(help=help, ge=ge, gt=gt, le=le, lt=lt,
                choices=tuple(choices) if choices is not None else None)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"spec": spec})
    return dataclasses.field(default=default, metadata={"spec": spec})


def spec_of(field: dataclasses.Field) -> Spec:
    return field.metadata.get("spec", Spec())


@functools.cache
def field_types(cls) -> dict[str, Any]:
    """Resolved annotations of a dataclass (works with `from __future__ import annotations`);
    cached, as every value read from a table asks for its field's type."""
    return typing.get_type_hints(cls)


def _type_name(kind) -> str:
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind)))


def value_from_text(text: str) -> Any:
    """A value typed as text (a command line's --set, a form's number field) as TOML would read
    it: 0.5, 3, true, "name", or a bare word as itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def coerce(value: Any, kind, where: str) -> Any:
    """Convert a TOML or command-line value to the field's type, or raise ConfigError naming
    address `where`."""
    wrong = ConfigError([Problem(where, f"must be {_type_name(kind)}, got {value!r}")])
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise wrong
        return float(value)
    if kind is int:
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind is str:
        if not isinstance(value, str):
            raise wrong
        return value
    return value


def check_value(value: Any, spec: Spec) -> str | None:
    """What is wrong with `value` under `spec` ('must be > 0, got -1'), or None when it is valid."""
    if spec.choices is not None:
        if value not in spec.choices:
            return f"must be {spec.range_text()}, got {value!r}"
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        for bound, ok, op in ((spec.gt, lambda v, b: v > b, ">"), (spec.ge, lambda v, b: v >= b, ">="),
                              (spec.lt, lambda v, b: v < b, "<"), (spec.le, lambda v, b: v <= b, "<=")):
            if bound is not None and not ok(value, bound):
                return f"must be {op} {bound:g}, got {value:g}"
    return None


def validate(obj, prefix: str) -> list[Problem]:
    """One problem per field of dataclass `obj` that is out of its declared range, each at
    address `prefix.field`."""
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            problems += validate(value, f"{prefix}.{f.name}")
            continue
        problem = check_value(value, spec_of(f))
        if problem:
            problems.append(Problem(f"{prefix}.{f.name}", problem))
    return problems


def with_value(obj, name: str, value: Any, prefix: str):
    """Dataclass `obj` with field `name` set to `value`, converted to the field's type; a
    ConfigError at address `prefix.name` when there is no such field or the value cannot be
    converted. Range checks are left to `validate`."""
    where = f"{prefix}.{name}"
    known = [f.name for f in dataclasses.fields(obj)]
    if name not in known:
        raise ConfigError([Problem(where, f"is not a known setting (known: {', '.join(known)})")])
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        value = from_dict(type(current), value, where, base=current)
    else:
        value = coerce(value, field_types(type(obj))[name], where)
    return dataclasses.replace(obj, **{name: value})


def from_dict(cls, data: dict, prefix: str, base=None):
    """Build dataclass `cls` from a TOML table, on top of `base` (or the declared defaults).

    Unknown keys and values of the wrong type are all collected and raised as one
    ConfigError; range checks are left to `validate` so that they run once, on the whole config.
    """
    if not isinstance(data, dict):
        raise ConfigError([Problem(prefix, f"must be a table, got {data!r}")])
    obj = base if base is not None else cls()
    problems = []
    for key, value in data.items():
        try:
            obj = with_value(obj, key, value, prefix)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return obj


def to_dict(obj) -> dict:
    """A dataclass as a TOML-ready dict (nested dataclasses become tables)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def describe(cls) -> list[tuple[str, Any, str, str]]:
    """(name, default, range, help) for each field of a parameter dataclass."""
    rows = []
    defaults = cls()
    for f in dataclasses.fields(cls):
        spec = spec_of(f)
        rows.append((f.name, getattr(defaults, f.name), spec.range_text(), spec.help))
    return rows
