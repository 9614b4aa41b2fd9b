"""Live views as probes (see base): the registry, and the built-in probes, registered on import."""

from . import batch, diagnostics, embedding, images  # noqa: F401  (registers the built-in probes)
from .base import PROBES, Probe, ProbeContext, check_probe_names, default_rates, probe

__all__ = ["PROBES", "Probe", "ProbeContext", "check_probe_names", "default_rates", "probe"]
