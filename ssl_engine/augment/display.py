"""Image tensors as the uint8 arrays that views, thumbnails and screens show."""

from __future__ import annotations

import numpy as np
import torch


def to_display(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] or uint8 -> uint8 (N, H, W, 3) numpy, a copy."""
    if images.dtype != torch.uint8:
        images = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).contiguous().cpu().numpy().copy()
