"""Projection and prediction heads: small MLPs that methods compose (lightly style).

A Linear that feeds a BatchNorm has no bias (the BatchNorm's shift makes it redundant).
"""

from __future__ import annotations

import torch
from torch import nn


class ScaledBatchNorm1d(nn.Module):
    """A BatchNorm with a learnt per-feature scale and no shift (TensorFlow's `center=False`):
    y = gamma * (x - mean) / sqrt(var + eps). The normalisation is a plain `nn.BatchNorm1d`
    without affine parameters, so that it is synchronised over processes like any other."""

    def __init__(self, features: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(features, affine=False)
        self.weight = nn.Parameter(torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.weight


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                   batch_norm: bool = True, last_batch_norm: bool = False,
                   last_bn_affine: bool = True, last_bn_shift: bool = True, bias: bool = True) -> nn.Sequential:
    """[Linear-BN-ReLU] x (num_layers - 1), then Linear (+ BN on the output if `last_batch_norm`).

    SimCLR: 2 layers with a last BN that learns a scale but no shift (`last_bn_shift=False`, its
    code's center=False). Barlow Twins / VICReg: 3 layers (Linear-BN-ReLU x 2 + Linear).
    SimSiam: 3 layers with a last BN (`last_bn_affine=False` for a BN without learnt scale/shift).
    `batch_norm=False` drops the hidden BatchNorms. `num_layers=1` is a single Linear. A Linear
    that no BN follows has a bias unless `bias=False` (MoCo v3: no Linear has one).
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=bias and not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=bias and not last_batch_norm))
    if last_batch_norm and last_bn_affine and not last_bn_shift:
        layers.append(ScaledBatchNorm1d(out_dim))
    elif last_batch_norm:
        layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
    return nn.Sequential(*layers)


def prediction_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear: the predictor of BYOL (Grill et al. 2020) and SimSiam (Chen & He 2021)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )
