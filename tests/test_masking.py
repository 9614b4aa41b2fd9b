"""The shared patch masks: exact ratios, shapes, seeded reproducibility, BEiT's rectangles,
I-JEPA's disjoint context and target blocks, the pictures drawn from them, and the mask
strategies' one `draw(rows, grid, generator)` interface."""

import math

import pytest
import torch

from ssl_engine.masking import (Blocks, MultiBlock, RandomKeep, RandomPatches, SometimesBlocks, block_mask,
                                ijepa_masks, mask_picture, random_patch_mask, visible_indices)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("patches, ratio", [(16, 0.75), (64, 0.6), (196, 0.75), (49, 0.5)])
def test_random_patch_mask_masks_exactly_the_ratio_in_every_row(patches, ratio):
    mask = random_patch_mask(32, patches, ratio, generator=seeded(0))
    assert mask.shape == (32, patches) and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == round(ratio * patches)).all()
    assert len({tuple(row.tolist()) for row in mask}) > 1     # rows differ: per-sample masks


def test_masks_are_reproducible_from_a_seed_and_change_with_it():
    for make in (lambda g: random_patch_mask(8, 64, 0.75, generator=g),
                 lambda g: block_mask(8, 8, 0.4, generator=g),
                 lambda g: torch.cat([t.flatten(1) for t in ijepa_masks(8, 8, generator=g)], dim=1)):
        assert torch.equal(make(seeded(3)), make(seeded(3)))
        assert not torch.equal(make(seeded(3)), make(seeded(4)))
    torch.manual_seed(5)  # without a generator: torch's global one, which the Trainer seeds
    first = random_patch_mask(4, 16, 0.5)
    torch.manual_seed(5)
    assert torch.equal(first, random_patch_mask(4, 16, 0.5))


def test_visible_indices_lists_the_unmasked_patches_in_order():
    mask = torch.tensor([[True, False, True, False], [False, False, True, True]])
    assert visible_indices(mask).tolist() == [[1, 3], [0, 1]]
    mask = random_patch_mask(5, 16, 0.75, generator=seeded(1))
    keep = visible_indices(mask)
    assert keep.shape == (5, 4)
    assert (keep.diff(dim=1) > 0).all() and not mask.gather(1, keep).any()
    with pytest.raises(ValueError):
        visible_indices(torch.tensor([[True, False], [False, False]]))


def components(grid_mask):
    """Sizes of the 4-connected masked regions of a (grid, grid) bool mask."""
    grid, seen, sizes = len(grid_mask), set(), []
    for start in ((i, j) for i in range(grid) for j in range(grid) if grid_mask[i][j]):
        if start in seen:
            continue
        stack, size = [start], 0
        seen.add(start)
        while stack:
            i, j = stack.pop()
            size += 1
            for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                if 0 <= a < grid and 0 <= b < grid and grid_mask[a][b] and (a, b) not in seen:
                    seen.add((a, b))
                    stack.append((a, b))
        sizes.append(size)
    return sizes


@pytest.mark.parametrize("grid, ratio", [(4, 0.4), (8, 0.4), (14, 75 / 196)])
def test_block_mask_masks_exactly_the_ratio_in_rectangles(grid, ratio):
    mask = block_mask(16, grid, ratio, generator=seeded(2))
    assert mask.shape == (16, grid * grid) and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == round(ratio * grid * grid)).all()
    if grid >= 8:
        # blocks of at least round(16 * P / 196) patches: big connected regions, unlike random masks
        biggest = [max(components(row.reshape(grid, grid).tolist())) for row in mask]
        assert min(biggest) >= max(2, round(16 * grid * grid / 196))
        random_biggest = [max(components(row.reshape(grid, grid).tolist()))
                          for row in random_patch_mask(16, grid * grid, ratio, generator=seeded(2))]
        assert sum(biggest) > sum(random_biggest)


def test_block_mask_honours_min_patches():
    mask = block_mask(8, 8, 0.5, min_patches=9, aspect=(1.0, 1.0), generator=seeded(0))
    assert (mask.sum(dim=1) == 32).all()
    # square blocks of area at least 9: 3 x 3 or bigger, so a 3 x 3 square of masked patches exists
    grids = mask.reshape(8, 8, 8)
    squares = grids.unfold(1, 3, 1).unfold(2, 3, 1).flatten(3).all(dim=3)
    assert squares.flatten(1).any(dim=1).all()


@pytest.mark.parametrize("grid", [4, 8, 14])
def test_ijepa_masks_are_disjoint_blocks_inside_the_grid(grid):
    context, targets = ijepa_masks(16, grid, generator=seeded(grid))
    assert context.dtype == targets.dtype == torch.long
    assert context.shape[0] == 16 and context.shape[1] >= 1
    assert targets.shape[:2] == (16, 4) and targets.shape[2] >= 1
    patches = grid * grid
    assert 0 <= int(context.min()) and int(context.max()) < patches
    assert 0 <= int(targets.min()) and int(targets.max()) < patches
    for c, image_targets in zip(context, targets):
        assert len(set(c.tolist()) & set(image_targets.flatten().tolist())) == 0
        assert len(set(c.tolist())) == len(c)
        for block in image_targets:
            rows, cols = block // grid, block % grid
            # one rectangle: its bounding box holds exactly its patches (no truncation here,
            # since every target of a batch has the same size)
            assert (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) == len(block)


def test_ijepa_target_sizes_follow_the_scale_range():
    sizes = []
    for seed in range(20):
        _, targets = ijepa_masks(2, 14, generator=seeded(seed))
        sizes.append(targets.shape[2])
    # the area is int(196 s), s in 0.15..0.2, i.e. 29..39 patches, then each side is rounded:
    # the rounding moves the area by at most half the perimeter (+ 1/4), here at most 6.6 patches
    assert all(29 - 7 <= size <= 39 + 7 for size in sizes)
    assert abs(sum(sizes) / len(sizes) - 0.175 * 196) < 5
    assert len(set(sizes)) > 1
    # the context block, scale 0.85..1 on a 14 x 14 grid, is 13 x 13 less the targets
    context, targets = ijepa_masks(4, 14, generator=seeded(0))
    assert context.shape[1] <= 13 * 13 - targets.shape[2]


def test_ijepa_masks_truncate_the_context_to_the_batch_minimum():
    context, _ = ijepa_masks(64, 8, generator=seeded(1))
    assert (context.diff(dim=1) > 0).all()          # sorted, and each row is a set
    assert context.shape[1] <= 7 * 7


def test_mask_picture_draws_masks_and_indices_at_image_size():
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 0] = mask[1, 5] = True
    picture = mask_picture(mask, 4, 32)
    assert picture.shape == (2, 1, 32, 32) and picture.dtype == torch.float32
    assert picture[0, 0, :8, :8].eq(1).all() and picture[0].sum() == 64
    assert picture[1, 0, 8:16, 8:16].eq(1).all() and picture[1].sum() == 64
    from_indices = mask_picture(torch.tensor([[0], [5]]), 4, 32)
    assert torch.equal(from_indices, picture)
    _, targets = ijepa_masks(3, 4, generator=seeded(0))
    union = mask_picture(targets, 4, (16, 16))
    assert union.shape == (3, 1, 16, 16)
    covered = [len(set(t.flatten().tolist())) for t in targets]
    assert [int(u.sum()) // 16 for u in union] == covered
    assert math.isclose(float(mask_picture(random_patch_mask(1, 64, 0.75), 8, 32).mean()), 0.75)


STRATEGIES = [RandomPatches(0.75), RandomPatches(0.5, square=2), Blocks(0.4), SometimesBlocks(0.5, 0.1, 0.5),
              MultiBlock(), RandomKeep(0.15)]


def _parts(drawn):
    return drawn if isinstance(drawn, tuple) else (drawn,)


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: type(s).__name__)
def test_every_strategy_draws_one_row_per_image_from_its_generator_only(strategy):
    torch.manual_seed(5)
    global_state = torch.get_rng_state()
    first = _parts(strategy.draw(6, 8, seeded(3)))
    assert torch.equal(torch.get_rng_state(), global_state)  # torch's own generator is left alone
    assert all(len(part) == 6 for part in first)
    assert all(torch.equal(a, b) for a, b in zip(first, _parts(strategy.draw(6, 8, seeded(3)))))
    assert not all(torch.equal(a, b) for a, b in zip(first, _parts(strategy.draw(6, 8, seeded(4)))))


def test_strategies_draw_what_the_functions_they_name_draw_for_the_same_generator_state():
    assert torch.equal(RandomPatches(0.75).draw(5, 8, seeded(1)), random_patch_mask(5, 64, 0.75, generator=seeded(1)))
    assert torch.equal(Blocks(0.4).draw(5, 8, seeded(1)), block_mask(5, 8, 0.4, generator=seeded(1)))
    drawn = MultiBlock(3, (0.1, 0.2), (0.5, 2.0), (0.8, 1.0)).draw(5, 8, seeded(1))
    expected = ijepa_masks(5, 8, num_targets=3, target_scale=(0.1, 0.2), target_aspect=(0.5, 2.0),
                           context_scale=(0.8, 1.0), generator=seeded(1))
    assert all(torch.equal(a, b) for a, b in zip(drawn, expected))
    # the defaults are ijepa_masks' (the paper's)
    assert all(torch.equal(a, b) for a, b in zip(MultiBlock().draw(5, 8, seeded(2)), ijepa_masks(5, 8, generator=seeded(2))))


def test_random_patches_in_squares_hide_whole_squares_at_the_ratio_of_the_coarse_grid():
    mask = RandomPatches(0.5, square=2).draw(8, 8, seeded(0))
    assert mask.shape == (8, 64) and mask.dtype == torch.bool
    squares = mask.reshape(8, 4, 2, 4, 2)              # (image, square row, patch row, square column, patch column)
    assert (squares.all(dim=(2, 4)) == squares.any(dim=(2, 4))).all()
    assert (mask.sum(dim=1) == 4 * round(0.5 * 16)).all()
    # the coarse mask is random_patch_mask's on the 4 x 4 grid of squares, upscaled
    assert torch.equal(squares[:, :, 0, :, 0], random_patch_mask(8, 16, 0.5, generator=seeded(0)).reshape(8, 4, 4))


def test_sometimes_blocks_leaves_rows_whole_at_its_probability_and_masks_the_others_in_range():
    never = SometimesBlocks(0.0, 0.1, 0.5).draw(16, 8, seeded(0))
    assert never.shape == (16, 64) and not never.any()
    always = SometimesBlocks(1.0, 0.25, 0.25).draw(16, 8, seeded(0))
    assert (always.sum(dim=1) == 16).all()             # round(0.25 * 64) in every row
    ranged = SometimesBlocks(1.0, 0.1, 0.5).draw(64, 8, seeded(1)).sum(dim=1)
    assert ranged.min() >= round(0.1 * 64) and ranged.max() <= round(0.5 * 64) and len(ranged.unique()) > 3
    half = SometimesBlocks(0.5, 0.1, 0.5).draw(400, 8, seeded(2)).any(dim=1).float().mean()
    assert 0.4 < float(half) < 0.6
    # a masked row is block_mask's with the iBOT code's smallest block, max(1, (grid // 3)^2)
    generator = seeded(3)
    masked = torch.rand(1, generator=generator) < 1.0
    ratio = 0.1 + 0.4 * torch.rand(1, generator=generator)
    assert bool(masked)
    expected = block_mask(1, 8, float(ratio), min_patches=4, generator=generator)
    assert torch.equal(SometimesBlocks(1.0, 0.1, 0.5).draw(1, 8, seeded(3)), expected)


def test_random_keep_lists_distinct_kept_patches_in_random_order():
    keep = RandomKeep(0.15).draw(32, 4, seeded(0))
    assert keep.shape == (32, int(16 * 0.85)) and keep.dtype == torch.long
    assert int(keep.min()) >= 0 and int(keep.max()) < 16
    assert all(len(set(row.tolist())) == keep.shape[1] for row in keep)
    assert not all(torch.equal(row, row.sort().values) for row in keep)   # the permutation's order, not sorted
    assert RandomKeep(0.99).draw(2, 4, seeded(0)).shape == (2, 1)          # at least one patch stays
