"""2D projections of embeddings for the embedding map."""

from __future__ import annotations

import numpy as np
import torch


def pca_2d(features: torch.Tensor) -> np.ndarray:
    """The first two principal components of `features` (M, D) as a float32 (M, 2) array.

    Each axis' sign is fixed (its largest loading is positive) so that successive snapshots of
    a slowly changing embedding do not flip the picture.
    """
    x = features.detach().float().cpu()
    x = x - x.mean(dim=0, keepdim=True)
    if len(x) < 2:
        return np.zeros((len(x), 2), dtype=np.float32)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:2]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    axes = axes * torch.where(signs == 0, torch.ones_like(signs), signs)
    projection = x @ axes.T
    if projection.shape[1] < 2:
        projection = torch.nn.functional.pad(projection, (0, 2 - projection.shape[1]))
    return projection.numpy().astype(np.float32)
