"""Per-channel mean and standard deviation of an image set, for normalising its views."""

from __future__ import annotations

import torch


def channel_stats(images_uint8: torch.Tensor, max_images: int = 10000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Mean and std per channel, in [0, 1] units, over up to `max_images` images drawn with `seed`."""
    n = len(images_uint8)
    if n > max_images:
        index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images]
        images_uint8 = images_uint8[index]
    pixels = images_uint8.to(torch.float64).div_(255.0).transpose(0, 1).reshape(3, -1)
    mean = pixels.mean(dim=1)
    std = pixels.std(dim=1).clamp_min(1e-3)  # a constant channel must not divide by zero
    return mean.tolist(), std.tolist()
