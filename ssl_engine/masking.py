"""Patch masks for masked image modelling, shared by every method that hides patches.

A ViT sees an image as a grid x grid array of patches, numbered row by row (index
row * grid + column, the order of `VisionTransformer.tokens`). Three ways to hide them:

    mask = random_patch_mask(n, grid * grid, 0.75)    # MAE, SimMIM, MaskFeat: uniform at random
    mask = block_mask(n, grid, 0.4)                    # BEiT: rectangles of patches
    context, targets = ijepa_masks(n, grid)            # I-JEPA: one context block, 4 target blocks
    keep = visible_indices(mask)                       # for vit.tokens(images, keep=keep)
    picture = mask_picture(mask, grid, image_size)     # (n, 1, H, W), 1 on the masked pixels

Masks are bool (N, P) tensors with True = masked, index sets are sorted long tensors. Every
row masks the same number of patches, so masks and indices stack into batches. Each function
takes an optional `torch.Generator`: the same seed gives the same masks (the UI draws its
pictures from a fixed seed so that an image keeps its mask from step to step); without one
they draw from torch's global generator. A training step should draw its masks from
`methods.base.step_generator` for the whole global batch, so that a resumed run and each of N
processes get the masks of one uninterrupted process.

A method names its masking as a strategy with one interface, `draw(rows, grid, generator)`, so
that the masked methods' base (`methods.masked.MaskedMethod`) draws every method's step and
picture masks the same way:

    RandomPatches(0.75)             # MAE, MaskFeat; RandomPatches(0.6, square=2): SimMIM's squares
    Blocks(0.4)                     # BEiT, MaskFeat
    SometimesBlocks(0.5, 0.1, 0.5)  # iBOT: half the rows whole, the others in blocks
    MultiBlock(4)                   # I-JEPA: (context, targets)
    RandomKeep(0.15)                # MSN: the indices of the patches each row keeps
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

# BEiT's block masking on its 14 x 14 grid: blocks of at least 16 patches (section 2.5)
_BEIT_MIN_BLOCK, _BEIT_PATCHES = 16, 196


def _python_random(generator: torch.Generator | None) -> random.Random:
    """A Python RNG seeded by one draw from `generator` (or torch's global generator): the
    block samplers loop over scalars, which Python does faster than torch."""
    device = generator.device if generator is not None else "cpu"
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=device))
    return random.Random(seed)


def random_patch_mask(batch: int, num_patches: int, ratio: float, *,
                      generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> Tensor:
    """(batch, num_patches) bool, True = masked: exactly round(ratio * num_patches) patches of
    every row, chosen uniformly at random (MAE's per-sample shuffle: argsort of uniform noise)."""
    masked = round(ratio * num_patches)
    noise_device = generator.device if generator is not None else device
    noise = torch.rand(batch, num_patches, generator=generator, device=noise_device)
    ranks = noise.argsort(dim=1).argsort(dim=1)          # each patch's place in the shuffle
    return (ranks < masked).to(device if device is not None else noise.device)


def block_mask(batch: int, grid: int, ratio: float, *, min_patches: int | None = None,
               aspect: tuple[float, float] = (0.3, 1 / 0.3),
               generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> Tensor:
    """(batch, grid * grid) bool, True = masked: BEiT's block-wise masking (Bao et al., ICLR 2022,
    algorithm 1), with exactly round(ratio * grid^2) masked patches in every row.

    Rectangles are added until the count is reached: each has a random area between
    `min_patches` and the patches still to mask, a log-uniform aspect ratio in `aspect`, sides
    smaller than the grid, and a random place; a rectangle is kept only if it adds between 1 and
    the still-needed patches. As in BEiT's code, ten failed draws in a row end the search; the
    few patches then missing are added at random (BEiT would leave the row short), so that rows
    stack. The count never overshoots.

    `min_patches` defaults to BEiT's 16 of 196 patches scaled to the grid's area,
    max(1, round(16 * grid^2 / 196)): 16 on 14 x 14, 5 on 8 x 8, 1 on 4 x 4.
    """
    patches = grid * grid
    target = round(ratio * patches)
    if min_patches is None:
        min_patches = max(1, round(_BEIT_MIN_BLOCK * patches / _BEIT_PATCHES))
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    rng = _python_random(generator)
    rows = []
    for _ in range(batch):
        mask = [[False] * grid for _ in range(grid)]
        count = 0
        while count < target:
            added = _add_block(mask, rng, min_patches, target - count, log_aspect)
            if added == 0:
                break
            count += added
        flat = [cell for row in mask for cell in row]
        unmasked = [i for i, cell in enumerate(flat) if not cell]
        for i in rng.sample(unmasked, target - count):    # top up, at random
            flat[i] = True
        rows.append(flat)
    return torch.tensor(rows, dtype=torch.bool, device=device).reshape(batch, patches)


def _add_block(mask: list[list[bool]], rng: random.Random, min_patches: int, most: int,
               log_aspect: tuple[float, float]) -> int:
    """One step of BEiT's block masking: up to ten tries at a rectangle that adds 1 to `most`
    new patches to `mask`; returns how many it added (0: every try failed)."""
    grid = len(mask)
    for _ in range(10):
        area = rng.uniform(min_patches, most)
        aspect = math.exp(rng.uniform(*log_aspect))
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if not (0 < h < grid and 0 < w < grid):
            continue
        top, left = rng.randint(0, grid - h), rng.randint(0, grid - w)
        new = [(i, j) for i in range(top, top + h) for j in range(left, left + w) if not mask[i][j]]
        if 0 < len(new) <= most:
            for i, j in new:
                mask[i][j] = True
            return len(new)
    return 0


def ijepa_masks(batch: int, grid: int, *, num_targets: int = 4,
                target_scale: tuple[float, float] = (0.15, 0.2),
                target_aspect: tuple[float, float] = (0.75, 1.5),
                context_scale: tuple[float, float] = (0.85, 1.0),
                generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """I-JEPA's multi-block masks (Assran et al., CVPR 2023, section 3; the defaults are the
    paper's and its ImageNet configuration's): `context` (batch, Kc) and `targets`
    (batch, num_targets, Kt), sorted patch indices.

    As in the reference collator (src/masks/multiblock.py), one target block size and one context
    block size are drawn per batch: area int(scale * grid^2) for a scale uniform in the range, an
    aspect ratio h / w uniform in `target_aspect` (1 for the square context), sides rounded and
    kept below the grid side. Each image then places its `num_targets` target blocks (they may
    overlap each other) and one context block at random, and the context loses every target
    patch, so the context never shows what it must predict. A context placement left with no
    patch is redrawn (20 times, then the image's targets are redrawn too). Index lists are cut
    to the batch's shortest, keeping the first in row-major order, as the reference does.

    Departures from the reference, for small grids: a block may touch the last row and column
    (the reference's randint stops one short), scale and aspect are drawn independently (the
    reference reuses one uniform draw for both), and a context needs only one patch (the
    reference's min_keep is 4 or 10, more than a 4 x 4 grid can spare).
    """
    rng = _python_random(generator)
    target_size = _block_size(rng, grid, target_scale, target_aspect)
    context_size = _block_size(rng, grid, context_scale, (1.0, 1.0))
    contexts, targets = [], []
    for _ in range(batch):
        for _ in range(100):
            blocks = [_place_block(rng, grid, target_size) for _ in range(num_targets)]
            covered = set().union(*blocks)
            for _ in range(20):
                context = _place_block(rng, grid, context_size) - covered
                if context:
                    break
            if context:
                break
        else:
            raise ValueError(f"no context block of {context_size} patches avoids {num_targets} target "
                             f"blocks of {target_size} on a {grid} x {grid} grid")
        contexts.append(sorted(context))
        targets.append([sorted(block) for block in blocks])
    kc = min(len(c) for c in contexts)
    kt = min(len(block) for image in targets for block in image)
    context_indices = torch.tensor([c[:kc] for c in contexts], dtype=torch.long, device=device)
    target_indices = torch.tensor([[block[:kt] for block in image] for image in targets],
                                  dtype=torch.long, device=device)
    return context_indices, target_indices


def _block_size(rng: random.Random, grid: int, scale: tuple[float, float],
                aspect: tuple[float, float]) -> tuple[int, int]:
    """(h, w) of a block of about scale * grid^2 patches and aspect ratio h / w, each side in
    1..grid-1 (the reference keeps blocks smaller than the grid; a 1 x 1 grid allows 1)."""
    area = int(grid * grid * rng.uniform(*scale))
    ratio = rng.uniform(*aspect)
    largest = max(1, grid - 1)
    h = min(largest, max(1, round(math.sqrt(area * ratio))))
    w = min(largest, max(1, round(math.sqrt(area / ratio))))
    return h, w


def _place_block(rng: random.Random, grid: int, size: tuple[int, int]) -> set[int]:
    """The patch indices of an h x w block at a random place on the grid."""
    h, w = size
    top, left = rng.randint(0, grid - h), rng.randint(0, grid - w)
    return {i * grid + j for i in range(top, top + h) for j in range(left, left + w)}


def visible_indices(mask: Tensor) -> Tensor:
    """(N, K) long: the sorted indices of each row's unmasked patches; every row of the bool
    (N, P) `mask` must mask the same number of patches."""
    visible = ~mask
    counts = visible.sum(dim=1)
    if len(counts) and not bool((counts == counts[0]).all()):
        raise ValueError(f"rows mask different numbers of patches: {counts.tolist()}")
    k = int(counts[0]) if len(counts) else 0
    return visible.nonzero()[:, 1].reshape(len(mask), k)   # nonzero lists row by row, sorted


def mask_picture(mask: Tensor, grid: int, image_size: int | tuple[int, int]) -> Tensor:
    """(N, 1, H, W) float in {0, 1}: a patch mask drawn at image size, 1 on the chosen patches,
    for the UI to lay over the images.

    `mask` is either a bool (N, grid^2) mask (True = masked) or long patch indices (N, ..., K),
    e.g. I-JEPA's (N, num_targets, Kt) targets, all of which are drawn.
    """
    n = len(mask)
    if mask.dtype == torch.bool:
        chosen = mask.reshape(n, grid * grid).float()
    else:
        chosen = torch.zeros(n, grid * grid, device=mask.device)
        chosen.scatter_(1, mask.reshape(n, -1), 1.0)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return F.interpolate(chosen.reshape(n, 1, grid, grid), size=size, mode="nearest")


# -- mask strategies: one `draw(rows, grid, generator)` for every method ------------------------

class MaskStrategy(Protocol):
    """How a method hides patches: `draw` returns masks (or index sets, or a tuple of them) with
    one row per image for `rows` images of grid x grid patches, from `generator`'s draws only, on
    the generator's device."""

    def draw(self, rows: int, grid: int, generator: torch.Generator) -> Tensor | tuple[Tensor, ...]: ...


@dataclass(frozen=True)
class RandomPatches:
    """`ratio` of the patches uniformly at random (`random_patch_mask`), in squares of
    `square` x `square` patches (SimMIM's mask patch: the coarse grid's mask, upscaled; 1: single
    patches, MAE's). (rows, grid^2) bool."""

    ratio: float
    square: int = 1

    def draw(self, rows: int, grid: int, generator: torch.Generator) -> Tensor:
        coarse = grid // self.square
        mask = random_patch_mask(rows, coarse * coarse, self.ratio, generator=generator)
        mask = mask.reshape(-1, coarse, coarse).repeat_interleave(self.square, 1).repeat_interleave(self.square, 2)
        return mask.flatten(1)


@dataclass(frozen=True)
class Blocks:
    """BEiT's block-wise masking of `ratio` of the patches (`block_mask`). (rows, grid^2) bool."""

    ratio: float

    def draw(self, rows: int, grid: int, generator: torch.Generator) -> Tensor:
        return block_mask(rows, grid, self.ratio, generator=generator)


@dataclass(frozen=True)
class SometimesBlocks:
    """iBOT's masks: each row left whole with probability 1 - `probability`, else a ratio uniform
    in [ratio_min, ratio_max] of it masked in blocks, with the iBOT code's smallest block,
    max(1, (grid // 3)^2) patches (16 on 14 x 14, as BEiT's). (rows, grid^2) bool.

    `block_mask` takes one ratio per call, so it is called once per masked row; it masks exactly
    round(r * grid^2) patches where the code stops at the first count at or above r * grid^2."""

    probability: float
    ratio_min: float
    ratio_max: float

    def draw(self, rows: int, grid: int, generator: torch.Generator) -> Tensor:
        masked = torch.rand(rows, generator=generator) < self.probability
        ratios = self.ratio_min + (self.ratio_max - self.ratio_min) * torch.rand(rows, generator=generator)
        smallest_block = max(1, (grid // 3) ** 2)  # the iBOT code's `low`
        mask = torch.zeros(rows, grid * grid, dtype=torch.bool)
        for row in torch.nonzero(masked).flatten().tolist():
            mask[row] = block_mask(1, grid, float(ratios[row]), min_patches=smallest_block, generator=generator)[0]
        return mask


@dataclass(frozen=True)
class MultiBlock:
    """I-JEPA's multi-block masks (`ijepa_masks`): (context (rows, Kc), targets (rows, T, Kt))."""

    num_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)
    context_scale: tuple[float, float] = (0.85, 1.0)

    def draw(self, rows: int, grid: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return ijepa_masks(rows, grid, num_targets=self.num_targets, target_scale=self.target_scale,
                           target_aspect=self.target_aspect, context_scale=self.context_scale,
                           generator=generator)


@dataclass(frozen=True)
class RandomKeep:
    """MSN's patch dropping: the indices of the max(1, int(grid^2 (1 - ratio))) patches each row
    keeps, uniformly at random and in random order (the first of a random permutation; a ViT's
    `tokens(keep=...)` takes them in any order). (rows, kept) long."""

    ratio: float

    def draw(self, rows: int, grid: int, generator: torch.Generator) -> Tensor:
        patches = grid * grid
        kept = max(1, int(patches * (1 - self.ratio)))
        return torch.rand(rows, patches, generator=generator).argsort(dim=1)[:, :kept]
