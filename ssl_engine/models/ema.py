"""Exponential moving averages of a network: the momentum targets of BYOL, MoCo, DINO, iBOT, MSN
and I-JEPA.

    target <- m * target + (1 - m) * online        (parameters)
    target <- online                               (buffers: BatchNorm running statistics)

with m following one of three schedules, from m_base at step 0 over a run of K steps:
    cosine   (BYOL, MoCo v3, DINO; Grill et al. 2020, section 3.2):
             m_k = 1 - (1 - m_base) * (cos(pi * k / K) + 1) / 2
    linear   (I-JEPA, MSN):  m_k = min(1, m_base + (1 - m_base) * k / (h K)), reaching 1 at h K
    constant (MoCo v2):      m_k = m_base

`MomentumTargets` is what a method uses: it makes the frozen copies, knows the schedule and
updates every copy after each optimiser step (solo-learn's momentum-target base, as a part).
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


def linear_momentum(step: int, horizon: float, base: float) -> float:
    """A momentum rising linearly from `base` at step 0 to 1 at step `horizon`, then staying there:
    min(1, base + (1 - base) * step / horizon)."""
    return min(1.0, base + (1 - base) * step / horizon)


SCHEDULES = ("cosine", "linear", "constant")


class MomentumTargets:
    """A method's momentum targets: frozen copies of some of its modules, each an EMA of its
    online module, all following one momentum schedule.

        self.ema = MomentumTargets(params.base_momentum)            # cosine, to 1 at the run's end
        self.target_backbone = self.ema.copy(self.backbone)
        ...
        def after_optimizer_step(self, step):
            self.ema.update(step, self.total_steps)

    `schedule` is "cosine" (`cosine_momentum`), "linear" (`linear_momentum`, reaching 1 at
    `horizon` x the run's steps) or "constant" (`base` throughout). The pairs are held by
    reference, updated in the order they were copied: a module moved by `.to()` or whose
    BatchNorm layers are swapped in place (`synchronise_batch_norm`) stays the same object. The
    method keeps the copies as its own attributes, so checkpoints name them as before; the total
    steps come with each call, as a time budget sets the run's length after the method is built.
    """

    def __init__(self, base: float, schedule: str = "cosine", horizon: float = 1.0):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.base, self.schedule, self.horizon = base, schedule, horizon
        self.pairs: list[tuple[nn.Module, nn.Module]] = []

    def copy(self, online: nn.Module) -> nn.Module:
        """A frozen copy of `online` (`copy_as_frozen`), from now on updated towards it."""
        target = copy_as_frozen(online)
        self.pairs.append((online, target))
        return target

    def momentum(self, step: int, total_steps: int) -> float:
        """The schedule's momentum at `step` of a run of `total_steps`."""
        if self.schedule == "cosine":
            return cosine_momentum(step, total_steps, base=self.base)
        if self.schedule == "linear":
            return linear_momentum(step, self.horizon * total_steps, self.base)
        return self.base

    @torch.no_grad()
    def update(self, step: int, total_steps: int) -> float:
        """Every target <- its EMA step towards its online module at the momentum of `step`;
        returns that momentum."""
        momentum = self.momentum(step, total_steps)
        for online, target in self.pairs:
            ema_update(target, online, momentum)
        return momentum
