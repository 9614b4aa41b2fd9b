"""Histograms of Oriented Gradients (Dalal & Triggs, CVPR 2005) as MaskFeat's targets.

MaskFeat (Wei et al., "Masked Feature Prediction for Self-Supervised Visual Pre-Training",
CVPR 2022) predicts the HOG of masked patches. This module computes it the way the reference
code does (SlowFast's `HOGLayerC`, used by its `MaskMViT` with 9 bins and 8 px cells), batched
on the images' device, without gradients:

    gx, gy   = Sobel filters on each RGB channel (reflect padding)
    angle    = atan2(gx, gy): the gradient's angle from the image's vertical axis, turning
               towards the horizontal one; orientation is unsigned (modulo 180 degrees)
    bin      = floor(angle / 180 deg x bins) mod bins   (bins of 180 / bins degrees, hard assignment)
    h[c, b, cell] = sum over the cell's pixels of |(gx, gy)| where bin = b  (channel c)
    h[c, :, cell] <- h[c, :, cell] / ||h[c, :, cell]||_2                (per cell and channel)

So bin 0 holds vertical gradients (horizontal edges) and, with 9 bins, bin 4 horizontal ones
(vertical edges); a gradient pointing down-right (45 degrees) falls in bin 2. A flat cell
has no gradient and gives zeros. The reference weights magnitudes with no Gaussian window
(its `gaussian_window` is 0 in MaskFeat) and normalises each cell's histogram on its own
(local contrast normalisation), which is what this does; as the normalisation is per channel,
a per-channel affine input normalisation (mean/std) does not change the result.

A ViT patch's target is the concatenation of the histograms of its cells, channel-major then
bin then cell row and column, as the reference unfolds them: with the paper's 16 px patches
and 8 px cells that is 3 x 9 x 2 x 2 = 108 numbers. Cells scale with the patch: by default a
cell is half a patch side (`default_cell_size`), so every patch holds the paper's 2 x 2 cells
(4 px cells for 8 px patches at 32 px, 2 px cells for 4 px patches).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BINS = 9  # the paper's orientation bins over 0-180 degrees
NORMALIZE_EPS = 1e-12  # floor on a cell histogram's norm: a flat cell gives zeros, not NaN


def default_cell_size(patch_size: int) -> int:
    """Half the patch side (at least 1 px): the paper's 2 x 2 cells of 8 px in a 16 px patch."""
    return max(1, patch_size // 2)


def _working_copy(images: Tensor) -> Tensor:
    """float64 stays float64 (exact comparisons); anything else is computed in float32."""
    return images if images.dtype == torch.float64 else images.float()


def _sobel(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel Sobel responses (gx, gy), the reference's cross-correlations with
    [[1, 0, -1], [2, 0, -2], [1, 0, -1]] and its transpose, after reflect padding.

    Written as differences of [1, 2, 1]-smoothed neighbours: the same numbers, but exactly zero
    where the two neighbours are equal (a flat region, or across the reflected border), where a
    3 x 3 convolution leaves rounding noise that the per-cell normalisation would blow up."""
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    smooth_y = padded[..., :-2, :] + 2 * padded[..., 1:-1, :] + padded[..., 2:, :]   # (N, C, H, W + 2)
    smooth_x = padded[..., :-2] + 2 * padded[..., 1:-1] + padded[..., 2:]            # (N, C, H + 2, W)
    return smooth_y[..., :-2] - smooth_y[..., 2:], smooth_x[..., :-2, :] - smooth_x[..., 2:, :]


@torch.no_grad()
def hog_cells(images: Tensor, cell_size: int, *, bins: int = BINS) -> Tensor:
    """Per-cell, per-channel L2-normalised orientation histograms: (N, C, bins, H / cell, W / cell).

    `images` (N, C, H, W), H and W multiples of `cell_size`. Runs on the images' device in
    float32 (float64 kept) with autocast off."""
    n, channels, height, width = images.shape
    if height % cell_size or width % cell_size:
        raise ValueError(f"image of {height} x {width} px does not split into cells of {cell_size} px")
    with torch.autocast(device_type=images.device.type, enabled=False):
        x = _working_copy(images)
        gx, gy = _sobel(x)
        magnitude = torch.sqrt(gx * gx + gy * gy)
        # atan2 in [-pi, pi] -> [-bins, bins]; floor then modulo folds opposite gradients together
        orientation = torch.floor(torch.atan2(gx, gy) / math.pi * bins).long() % bins
        cells_high, cells_wide = height // cell_size, width // cell_size
        rows = torch.arange(height, device=images.device) // cell_size
        columns = torch.arange(width, device=images.device) // cell_size
        cell_of_pixel = rows[:, None] * cells_wide + columns[None, :]            # (H, W)
        index = orientation * (cells_high * cells_wide) + cell_of_pixel          # (N, C, H, W)
        histograms = magnitude.new_zeros(n * channels, bins * cells_high * cells_wide)
        histograms.scatter_add_(1, index.reshape(n * channels, -1), magnitude.reshape(n * channels, -1))
        histograms = histograms.reshape(n, channels, bins, cells_high, cells_wide)
        return F.normalize(histograms, p=2, dim=2, eps=NORMALIZE_EPS)


@torch.no_grad()
def hog_patch_targets(images: Tensor, patch_size: int, *, bins: int = BINS,
                      cell_size: int | None = None) -> Tensor:
    """MaskFeat's target for every ViT patch: (N, P, C x bins x k x k), k = patch_size / cell_size.

    Patches in row-major order (the ViT's token order); within a patch the features run
    channel, bin, cell row, cell column. `cell_size` defaults to half the patch side."""
    cell_size = cell_size or default_cell_size(patch_size)
    if patch_size % cell_size:
        raise ValueError(f"a patch of {patch_size} px does not split into cells of {cell_size} px")
    cells = hog_cells(images, cell_size, bins=bins)                              # (N, C, B, Hc, Wc)
    n, channels, _, cells_high, cells_wide = cells.shape
    k = patch_size // cell_size
    if cells_high % k or cells_wide % k:
        raise ValueError(f"image of {images.shape[-2]} x {images.shape[-1]} px is not a whole number "
                         f"of {patch_size} px patches")
    grid_high, grid_wide = cells_high // k, cells_wide // k
    cells = cells.reshape(n, channels, bins, grid_high, k, grid_wide, k)
    return cells.permute(0, 3, 5, 1, 2, 4, 6).reshape(n, grid_high * grid_wide, channels * bins * k * k)


def hog_feature_dim(patch_size: int, *, bins: int = BINS, cell_size: int | None = None, channels: int = 3) -> int:
    """Length of one patch's target: channels x bins x (patch_size / cell_size)^2."""
    cell_size = cell_size or default_cell_size(patch_size)
    return channels * bins * (patch_size // cell_size) ** 2


@torch.no_grad()
def hog_picture(targets: Tensor, image_size: tuple[int, int], patch_size: int, *, bins: int = BINS,
                cell_size: int | None = None, channels: int = 3) -> Tensor:
    """Draw per-patch HOG vectors (N, P, D), as `hog_patch_targets` lays them out, as (N, 1, H, W)
    images in [0, 1]: the classic HOG glyphs.

    Every cell shows, for each orientation bin, a line through the cell's centre along the edge
    direction of that bin (perpendicular to its gradients), as bright as the bin's value averaged
    over the colour channels; a vertical edge draws a vertical stroke, a flat cell stays black.
    Negative values (a prediction can have them) are drawn as zero."""
    cell_size = cell_size or default_cell_size(patch_size)
    height, width = image_size
    k = patch_size // cell_size
    grid_high, grid_wide = height // patch_size, width // patch_size
    n = targets.shape[0]
    values = targets.detach().float().clamp_min(0).reshape(n, grid_high, grid_wide, channels, bins, k, k)
    values = values.mean(dim=3).permute(0, 3, 1, 4, 2, 5)                       # (N, B, Gh, k, Gw, k)
    values = values.reshape(n, bins, grid_high * k, grid_wide * k)             # per cell: (N, B, Hc, Wc)
    # one stencil per bin: pixels within a pixel of the line through the cell centre whose normal
    # is the bin's central gradient direction (angle a from the vertical: normal (sin a, cos a))
    offsets = torch.arange(cell_size, device=targets.device, dtype=torch.float32) - (cell_size - 1) / 2
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    angles = (torch.arange(bins, device=targets.device, dtype=torch.float32) + 0.5) * math.pi / bins
    distance = (dx[None] * torch.sin(angles)[:, None, None] + dy[None] * torch.cos(angles)[:, None, None]).abs()
    stencils = (1 - distance).clamp_min(0)                                      # (B, cell, cell)
    picture = torch.einsum("nbhw,bij->nhiwj", values, stencils)
    return picture.reshape(n, 1, height, width).clamp(0, 1)
