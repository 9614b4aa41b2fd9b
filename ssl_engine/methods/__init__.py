"""SSL methods, one module each, registered by name in `METHODS`."""

from . import barlow_twins, byol, moco_v2, simclr, simsiam, vicreg  # noqa: F401  (registers them)
from .base import FAMILIES, METHODS, Method, StepOutput, register


def get_method(name: str) -> type[Method]:
    """The method class registered under `name`."""
    from ..errors import ConfigError

    if name not in METHODS:
        raise ConfigError([f"method.name must be one of {', '.join(sorted(METHODS))}, got {name!r}"])
    return METHODS[name]


__all__ = ["FAMILIES", "METHODS", "Method", "StepOutput", "get_method", "register"]
