"""SSL methods, one module each, registered by name in `METHODS`.

Every module of this package is imported here, and each registers its method with `@register`:
adding a method is adding one file.
"""

import importlib
import pkgutil

from .base import FAMILIES, METHODS, Method, StepOutput, register

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")


def get_method(name: str) -> type[Method]:
    """The method class registered under `name`."""
    from ..errors import ConfigError, Problem

    if name not in METHODS:
        raise ConfigError([Problem("method.name", f"must be one of {', '.join(sorted(METHODS))}, got {name!r}")])
    return METHODS[name]


__all__ = ["FAMILIES", "METHODS", "Method", "StepOutput", "get_method", "register"]
