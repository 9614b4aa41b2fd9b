"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float = 0.0,
                  start: tuple[int, float] = (-1, 0.0)) -> float:
    """Learning rate at `step` (0-based): linear from peak/warmup to peak over `warmup_steps`,
    then a half cosine from peak down to `floor` at `total_steps`.

    The warm-up is the line from `start` (a step and its rate; by default the rate 0 just before
    step 0) to the peak at step warmup_steps - 1. A run whose length changes mid-warm-up (a time
    budget, once its speed is measured) restarts the line from the rate it had reached, so the
    rate never jumps.

    The cosine is that of DINO's and iBOT's cosine_scheduler and of Barlow Twins' and VICReg's
    adjust_learning_rate, floor + (peak - floor) (1 + cos(pi t / T)) / 2 over the T steps after
    the warm-up; their warm-ups start at 0 where this one starts at peak / warmup_steps, one
    step ahead, so that no step is spent at a rate of 0."""
    if warmup_steps > 0 and step < warmup_steps:
        from_step, from_rate = start
        return from_rate + (peak - from_rate) * (step - from_step) / max(1, warmup_steps - 1 - from_step)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

