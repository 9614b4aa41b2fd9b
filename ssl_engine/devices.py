"""Devices and precision: which device a name means, the autocast dtype a precision setting
gives on it, and waiting for a device's queued work (so a clock read next counts it)."""

from __future__ import annotations

import torch

from .errors import ConfigError, Problem


def synchronise(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU's kernels run asynchronously), so a clock read
    next counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; an unavailable device is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError([Problem("train.device", "is cuda but no CUDA GPU is available (use auto or cpu)")])
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError([Problem("train.device", f"is {name} but only {torch.cuda.device_count()} GPU(s) exist")])
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError([Problem("train.device", "is mps but MPS is not available (use auto or cpu)")])
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32. Mixed precision runs on CUDA only."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
