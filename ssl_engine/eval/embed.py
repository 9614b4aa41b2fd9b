"""Frozen features of a whole image tensor: the input of every evaluation (kNN, linear probe, projections)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..models.modes import evaluation_mode


@torch.no_grad()
def embed(backbone: nn.Module, images_uint8: torch.Tensor, *, mean: Sequence[float],
          std: Sequence[float], batch_size: int = 512, device: torch.device | str | None = None,
          amp: bool = False, for_evaluation: bool = True,
          transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """(N, 3, H, W) uint8 images -> (N, D) float32 features on the CPU.

    Each batch is moved to `device` (default: the backbone's device), scaled to [0, 1],
    normalised per channel with `mean`/`std`, and passed through `backbone` in eval mode without
    gradients; `amp=True` runs it under bfloat16 autocast on CUDA (ignored elsewhere). Every
    submodule's train/eval mode is restored afterwards. A ViT gives its evaluation features
    (class token or mean patch token, as configured); `for_evaluation=False` gives what the
    method trains on instead (its forward), for methods that cluster the training set.
    `transform` maps each batch of [0, 1] images before the normalisation (e.g. to greyscale).
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
        raise ValueError(f"embed expects (N, C, H, W) uint8 images, got {images_uint8.dtype} "
                         f"of shape {tuple(images_uint8.shape)}")
    if device is None:
        first_parameter = next(backbone.parameters(), None)
        device = first_parameter.device if first_parameter is not None else torch.device("cpu")
    device = torch.device(device)
    channel_mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    channel_std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    encode = backbone.evaluation_features if for_evaluation and hasattr(backbone, "evaluation_features") \
        else backbone
    chunks = []
    with evaluation_mode(backbone):
        for start in range(0, images_uint8.shape[0], batch_size):
            batch = images_uint8[start:start + batch_size].to(device, non_blocking=True)
            batch = batch.float() / 255.0
            if transform is not None:
                batch = transform(batch)
            batch = (batch - channel_mean) / channel_std
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                                enabled=amp and device.type == "cuda"):
                features = encode(batch)
            chunks.append(features.float().cpu())
    if not chunks:
        return torch.empty(0, getattr(backbone, "feature_dim", 0))
    return torch.cat(chunks)
