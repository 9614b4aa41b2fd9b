"""Projection and prediction heads: small MLPs that methods compose (lightly style).

A Linear that feeds a BatchNorm has no bias (the BatchNorm's shift makes it redundant).
"""

from __future__ import annotations

from torch import nn


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                   batch_norm: bool = True, last_batch_norm: bool = False,
                   last_bn_affine: bool = True) -> nn.Sequential:
    """[Linear-BN-ReLU] x (num_layers - 1), then Linear (+ BN on the output if `last_batch_norm`).

    SimCLR: 2 layers, no last BN. Barlow Twins / VICReg: 3 layers (Linear-BN-ReLU x 2 + Linear).
    SimSiam: 3 layers with a last BN (`last_bn_affine=False` for a BN without learnt scale/shift).
    `batch_norm=False` drops the hidden BatchNorms. `num_layers=1` is a single Linear.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_batch_norm))
    if last_batch_norm:
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
