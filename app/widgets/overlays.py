"""Masks and attention maps drawn over the sample images, for the Training tab.

The engine sends maps in 0..1 at image size (masks) or patch-grid size (attention); these
functions turn them into uint8 (n, H, W, 3) pictures that the image grid lays out.
"""

from __future__ import annotations

import numpy as np

MASK_DIM = 0.2  # what is left of a masked pixel's brightness: hidden patches show almost black

# an "inferno"-like ramp, from black through purple and orange to pale yellow
_HEAT = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """float (...) in 0..1 -> float32 (..., 3) RGB in 0..255 on the heat ramp."""
    position = np.clip(values, 0, 1) * (len(_HEAT) - 1)
    low = np.floor(position).astype(np.int64).clip(0, len(_HEAT) - 2)
    weight = (position - low)[..., None]
    return _HEAT[low] * (1 - weight) + _HEAT[low + 1] * weight


def masked(originals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W, 3) originals with the pixels where float `mask` (n, H, W, 1) is 1 dimmed
    to MASK_DIM of their brightness (values between dim in proportion: I-JEPA's numbered blocks)."""
    keep = 1.0 - (1.0 - MASK_DIM) * np.clip(mask, 0, 1)
    return (originals.astype(np.float32) * keep).round().astype(np.uint8)


def picture_columns(originals: np.ndarray, pictures: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One uint8 column per picture: images (C = 3) as they are, masks (C = 1) over the originals."""
    columns = []
    for picture in pictures.values():
        if picture.shape[-1] == 3:
            columns.append((np.clip(picture, 0, 1) * 255).round().astype(np.uint8))
        else:
            columns.append(masked(originals, picture))
    return columns


def attention_columns(originals: np.ndarray, attention: np.ndarray, opacity: float = 0.7) -> list[np.ndarray]:
    """One uint8 column per head: float (n, heads, grid, grid) maps in 0..1, upsampled to the
    image (each patch a block, as the ViT sees it) and blended over the originals."""
    n, heads, grid, _ = attention.shape
    size = originals.shape[1]
    repeat = max(1, size // grid)
    columns = []
    for head in range(heads):
        maps = attention[:, head].repeat(repeat, axis=1).repeat(repeat, axis=2)[:, :size, :size]
        blended = (1 - opacity) * originals.astype(np.float32) + opacity * heat_colours(maps)
        columns.append(blended.round().astype(np.uint8))
    return columns
