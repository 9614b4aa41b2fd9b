"""Declared parameters: a default, a valid range and one line of help per dataclass field.

Every config section and every method's hyperparameters are dataclasses whose fields are made
with `hyper(...)`. That single declaration drives validation (one message per bad field),
the TOML round trip, `python main.py methods`, and the app's forms.

    @dataclass
    class SimCLRParams:
        temperature: float = hyper(0.5, gt=0, le=10, help="softmax temperature of NT-Xent")
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


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


def field_types(cls) -> dict[str, Any]:
    """Resolved annotations of a dataclass (works with `from __future__ import annotations`)."""
    return typing.get_type_hints(cls)


def _type_name(kind) -> str:
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind)))


def coerce(value: Any, kind, where: str) -> Any:
    """Convert a TOML or command-line value to the field's type, or raise ConfigError."""
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError([f"{where} must be {_type_name(kind)}, got {value!r}"])
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
            raise ConfigError([f"{where} must be {_type_name(kind)}, got {value!r}"])
        return value
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError([f"{where} must be {_type_name(kind)}, got {value!r}"])
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError([f"{where} must be {_type_name(kind)}, got {value!r}"])
        return value
    return value


def check_value(value: Any, spec: Spec, where: str) -> str | None:
    """The problem with `value` under `spec`, as one line, or None when it is valid."""
    if spec.choices is not None:
        if value not in spec.choices:
            return f"{where} must be {spec.range_text()}, got {value!r}"
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where} must be a finite number, got {value!r}"
        for bound, ok, op in ((spec.gt, lambda v, b: v > b, ">"), (spec.ge, lambda v, b: v >= b, ">="),
                              (spec.lt, lambda v, b: v < b, "<"), (spec.le, lambda v, b: v <= b, "<=")):
            if bound is not None and not ok(value, bound):
                return f"{where} must be {op} {bound:g}, got {value:g}"
    return None


def validate(obj, prefix: str) -> list[str]:
    """One line per field of dataclass `obj` that is out of its declared range."""
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            problems += validate(value, f"{prefix}.{f.name}")
            continue
        problem = check_value(value, spec_of(f), f"{prefix}.{f.name}")
        if problem:
            problems.append(problem)
    return problems


def from_dict(cls, data: dict, prefix: str, base=None):
    """Build dataclass `cls` from a TOML table, on top of `base` (or the declared defaults).

    Unknown keys and values of the wrong type are all collected and raised as one
    ConfigError; range checks are left to `validate` so that they run once, on the whole config.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"{prefix} must be a table, got {data!r}"])
    base = base if base is not None else cls()
    types = field_types(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    problems, values = [], {}
    for key, value in data.items():
        where = f"{prefix}.{key}"
        if key not in known:
            problems.append(f"{where} is not a known setting (known: {', '.join(known)})")
            continue
        kind = types[key]
        current = getattr(base, key)
        try:
            if dataclasses.is_dataclass(current):
                values[key] = from_dict(type(current), value, where, base=current)
            else:
                values[key] = coerce(value, kind, where)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(base, **values)


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
