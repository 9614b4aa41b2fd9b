"""Schedules: the learning rate's linear warm-up and cosine decay to a floor, and the cosine
weight-decay ramp of DINO, iBOT, MSN and I-JEPA."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float = 0.0) -> float:
    """Learning rate at `step` (0-based): linear from peak/warmup to peak over `warmup_steps`,
    then a half cosine from peak down to `floor` at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_ramp(step: int, total_steps: int, start: float, end: float) -> float:
    """A half cosine from `start` at step 0 to `end` at `total_steps` (DINO's cosine_scheduler
    without warm-up, which its weight decay uses: 0.04 -> 0.4)."""
    progress = min(1.0, step / max(1, total_steps))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
