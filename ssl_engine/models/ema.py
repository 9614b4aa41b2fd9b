"""Exponential moving averages of a network: the teacher/target of BYOL, MoCo and DINO.

    target <- m * target + (1 - m) * online        (parameters)
    target <- online                               (buffers: BatchNorm running statistics)

with m following BYOL's cosine schedule (Grill et al. 2020, section 3.2):
    m_k = 1 - (1 - m_base) * (cos(pi * k / K) + 1) / 2
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place: target parameters <- m * target + (1 - m) * online; buffers copied from online.

    `target` and `online` must have the same architecture (e.g. `target = copy_as_frozen(online)`).
    """
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    target_buffers = list(target.buffers())
    online_buffers = list(online.buffers())
    if len(target_params) != len(online_params) or len(target_buffers) != len(online_buffers):
        raise ValueError("ema_update: target and online modules have different structures")
    if target_params:
        # lerp(target, online, 1 - m) = m * target + (1 - m) * online, one fused kernel per device.
        torch._foreach_lerp_(target_params, [p.detach() for p in online_params], 1.0 - momentum)
    for target_buffer, online_buffer in zip(target_buffers, online_buffers):
        target_buffer.copy_(online_buffer)


def copy_as_frozen(module: nn.Module) -> nn.Module:
    """A deep copy of `module` whose parameters do not require gradients (a target network)."""
    frozen = copy.deepcopy(module)
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """BYOL's momentum schedule: `base` at step 0, rising along a half cosine to `final` at total_steps.

    m_k = final - (final - base) * (cos(pi * k / K) + 1) / 2, with k clamped to [0, K].
    """
    if total_steps <= 0:
        return final
    progress = min(max(step, 0), total_steps) / total_steps
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2
