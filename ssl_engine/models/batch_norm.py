"""BatchNorm over the global batch, so that N processes normalise as one process does.

Under DDP each process sees only its share of the batch; a plain BatchNorm would normalise
with that share's moments, and N processes would not take the single-process step. On GPUs
torch's `SyncBatchNorm` all-reduces the moments (NCCL). It refuses CPU tensors, so CPU
processes (gloo) use `GlobalBatchNorm`: the same all-reduced moments, with their gradients,
written with `all_reduce_sum_with_grad`.

`synchronise_batch_norm` swaps every BatchNorm of a method for one of the two, except in the
submodules the method names in `local_batch_norm` (MoCo v2's key encoder, whose shuffled
BatchNorm deliberately normalises over parts of the batch).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..distributed import all_reduce_sum_with_grad, world_size


class GlobalBatchNorm(_BatchNorm):
    """A BatchNorm of any dimension (N, C, ...) whose training-mode moments are those of the
    batch of every process together: mean = sum / count and the biased variance of the centred
    values (two passes, as exact as one process's), each summed over the processes with its
    gradient. The running statistics take the unbiased variance over the global count, as
    `nn.BatchNorm` does. In eval mode, or in a world of 1, it is a plain BatchNorm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {input.dim()}-D)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        x = input.float()
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local_count = x.numel() // x.shape[1]
        # the count rides with the sums, so one all-reduce gives both (in float64, which counts
        # exactly past float32's 2^24)
        sums = torch.cat([x.sum(dims).double(), torch.tensor([local_count], dtype=torch.float64, device=x.device)])
        totals = all_reduce_sum_with_grad(sums)
        count = totals[-1].detach()
        mean = (totals[:-1] / count).float()
        centred = x - mean.view(shape)
        variance = (all_reduce_sum_with_grad(centred.square().sum(dims).double()) / count).float()
        output = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            self._update_running_statistics(mean.detach(), variance.detach(), count)
        return output.to(input.dtype)

    @torch.no_grad()
    def _update_running_statistics(self, mean: torch.Tensor, variance: torch.Tensor, count: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = variance * count / (count - 1).clamp(min=1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def _swapped(layer: _BatchNorm, kind: type[_BatchNorm]) -> _BatchNorm:
    """A `kind` BatchNorm holding `layer`'s parameters (the same objects) and statistics."""
    swapped = kind(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
    if layer.affine:
        swapped.weight, swapped.bias = layer.weight, layer.bias
    if layer.track_running_stats:
        swapped.running_mean, swapped.running_var = layer.running_mean, layer.running_var
        swapped.num_batches_tracked = layer.num_batches_tracked
    swapped.train(layer.training)
    return swapped


def _convert(module: nn.Module, kind: type[_BatchNorm], skip: frozenset[str], prefix: str = "") -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, (nn.SyncBatchNorm, GlobalBatchNorm)):
        return _swapped(module, kind)
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if path not in skip:
            setattr(module, name, _convert(child, kind, skip, path + "."))
    return module


def synchronise_batch_norm(method: nn.Module, device: torch.device) -> nn.Module:
    """`method` with every BatchNorm (outside its `local_batch_norm` submodules) normalising over
    the global batch: `nn.SyncBatchNorm` on CUDA, `GlobalBatchNorm` elsewhere. In place."""
    kind = nn.SyncBatchNorm if device.type == "cuda" else GlobalBatchNorm
    return _convert(method, kind, frozenset(getattr(method, "local_batch_norm", ())))
