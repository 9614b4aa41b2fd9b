"""Optimisers (SGD, AdamW and LARS) and gradient clipping, as each method's recipe has them.

What the weight decay and LARS's adaptation reach is the recipe's `decay_exclusions`: biases and
normalisation layers are left out in SimCLR, BYOL, Barlow Twins, VICReg, DINO, iBOT, MSN, MAE,
BEiT and SimMIM's code, while SwAV, MoCo v2, MoCo v3 (AdamW), SimSiam, DeepCluster and SeLa hand
every parameter to their optimiser. Gradients are clipped by their global norm or, as DINO and
iBOT's `clip_gradients` does, parameter by parameter (`grad_clip_mode`)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import OptimConfig

CLIP_EPS = 1e-6
"""Added to a parameter's gradient norm in per-parameter clipping (DINO's clip_gradients)."""


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al., 2017), as used by SimCLR, BYOL, Barlow Twins
    and VICReg: SGD with momentum whose update for each weight tensor is scaled by the trust
    ratio eta * ||w|| / ||grad + wd * w||, optionally clipped so that the adapted rate never
    exceeds the scheduled one (`clip`, LARC's clip mode). Groups with `lars_exclude` (biases, norm layers,
    where the recipe's decay_exclusions is bias_and_norm) get plain SGD with momentum and no
    weight decay; SwAV's LARC adapts and decays every parameter (decay_exclusions none)."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, eta: float = 0.001,
                 clip: bool = False):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta,
                                      lars_exclude=False, clip=clip))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if not group["lars_exclude"]:
                    update = update.add(p, alpha=group["weight_decay"])
                    param_norm, update_norm = torch.norm(p), torch.norm(update)
                    trust = torch.where((param_norm > 0) & (update_norm > 0),
                                        group["eta"] * param_norm / update_norm, torch.ones_like(param_norm))
                    if group["clip"]:
                        # LARC's clipping (solo-learn's clip_lr): the adapted rate eta * ||w|| / ||update||
                        # never exceeds the scheduled rate; at a rate of 0 the step is 0 either way
                        trust = torch.clamp(trust / max(group["lr"], 1e-12), max=1.0)
                    update = update.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(update).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def _is_excluded(name: str, param: nn.Parameter) -> bool:
    """Biases and normalisation parameters (1-d tensors) get no decay or adaptation, nor does a
    ViT's relative position bias table (the SimMIM and BEiT codes skip it too)."""
    return param.ndim <= 1 or name.endswith(".bias") or name.endswith("relative_position.table")


def split_decay_groups(method: nn.Module, groups: list[dict], bias_lr_ratio: float = 1.0,
                       exclusions: str = "bias_and_norm") -> list[dict]:
    """Split each of the method's parameter groups into its weights and its biases and norm
    layers; the second part's learning rate is `bias_lr_ratio` times the group's (`lr_scale`).

    With `exclusions` "bias_and_norm" the second part gets no weight decay and no LARS
    adaptation; with "none" it gets both, like the weights (the part still exists, for its
    learning rate and so that the groups are the same whichever the recipe).

    Parts whose weight decay is settled here (the excluded ones, and groups where the method
    sets its own, e.g. MSN's undecayed prototypes) are marked `fixed_weight_decay`: a weight
    decay schedule leaves them alone."""
    if exclusions not in ("bias_and_norm", "none"):
        raise ValueError(f"exclusions must be bias_and_norm or none, got {exclusions!r}")
    names = {id(p): n for n, p in method.named_parameters()}
    result = []
    for group in groups:
        extra = {k: v for k, v in group.items() if k != "params"}
        decay, exclude = [], []
        for p in group["params"]:
            (exclude if _is_excluded(names.get(id(p), ""), p) else decay).append(p)
        if decay:
            result.append({"params": decay, **extra, "fixed_weight_decay": "weight_decay" in extra})
        if exclude and exclusions == "bias_and_norm":
            result.append({"params": exclude, "weight_decay": 0.0, "lars_exclude": True, **extra,
                           "fixed_weight_decay": True, "lr_scale": bias_lr_ratio})
        elif exclude:
            result.append({"params": exclude, **extra, "fixed_weight_decay": "weight_decay" in extra,
                           "lr_scale": bias_lr_ratio})
    return result


@torch.no_grad()
def clip_gradients(parameters, max_norm: float, mode: str = "global") -> None:
    """Clip the gradients of `parameters` in place (nothing when `max_norm` is 0).

    "global": scale all of them by min(1, max_norm / ||g||), with ||g|| the norm of every
    gradient together (torch's clip_grad_norm_, as in the MSN, BEiT, SimMIM and MaskFeat code).
    "per_parameter": scale each parameter's gradient g_p on its own by max_norm / (||g_p|| +
    1e-6) where that is below 1 (DINO's and iBOT's utils.clip_gradients): a tensor is only
    shortened when its own norm passes max_norm, so the clip is much looser than the global one."""
    if max_norm <= 0:
        return
    if mode == "global":
        nn.utils.clip_grad_norm_(parameters, max_norm)
    elif mode == "per_parameter":
        grads = [p.grad for p in parameters if p.grad is not None]
        if grads:  # two fused kernels over every gradient, not two per parameter
            norms = torch.stack(torch._foreach_norm(grads))
            torch._foreach_mul_(grads, list((max_norm / (norms + CLIP_EPS)).clamp(max=1.0).unbind()))
    else:
        raise ValueError(f"mode must be global or per_parameter, got {mode!r}")


def build_optimizer(method: nn.Module, groups: list[dict], config: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """The optimiser named in `config`, over `groups` (from `Method.parameter_groups`)."""
    groups = split_decay_groups(method, groups, config.bias_lr_ratio, config.decay_exclusions)
    if config.name == "sgd":
        for g in groups:
            g.pop("lars_exclude", None)
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    elif config.name == "adamw":
        for g in groups:
            g.pop("lars_exclude", None)
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=(config.momentum, config.beta2),
                                      weight_decay=config.weight_decay)
    else:
        optimizer = LARS(groups, lr=lr, weight_decay=config.weight_decay, momentum=config.momentum, eta=config.lars_eta,
                         clip=config.lars_clip)
    set_learning_rate(optimizer, lr, lr)  # each group's scale applied from the first step
    return optimizer


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Apply the scheduled weight decay to every group but those marked `fixed_weight_decay`
    (biases, norm layers, and groups whose method set their decay)."""
    for group in optimizer.param_groups:
        if not group.get("fixed_weight_decay"):
            group["weight_decay"] = weight_decay


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float, peak_lr: float) -> None:
    """Apply the scheduled rate to every group, except groups marked `fixed_lr` (kept at peak),
    times the group's `lr_scale` (biases and norm layers, see `split_decay_groups`)."""
    for group in optimizer.param_groups:
        group["lr"] = (peak_lr if group.get("fixed_lr") else lr) * group.get("lr_scale", 1.0)
