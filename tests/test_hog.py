"""HOG targets: orientation bins of known edges, flat images, shapes and layout, and a plain
per-pixel loop over the reference's formulas (SlowFast's HOGLayerC) on random images."""

import math

import numpy as np
import pytest
import torch

from ssl_engine.hog import default_cell_size, hog_cells, hog_feature_dim, hog_patch_targets, hog_picture


def reference_cells(image: np.ndarray, cell: int, bins: int) -> np.ndarray:
    """(C, bins, H / cell, W / cell) for one (C, H, W) image, one pixel at a time."""
    channels, height, width = image.shape
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    weights = np.array([1.0, 2.0, 1.0])
    histograms = np.zeros((channels, bins, height // cell, width // cell))
    for c in range(channels):
        for y in range(height):
            for x in range(width):
                window = padded[c, y:y + 3, x:x + 3]
                # Sobel: [1, 2, 1]-weighted left column minus right column, top row minus bottom row
                gx = window[:, 0] @ weights - window[:, 2] @ weights
                gy = window[0] @ weights - window[2] @ weights
                b = math.floor(math.atan2(gx, gy) / math.pi * bins) % bins
                histograms[c, b, y // cell, x // cell] += math.hypot(gx, gy)
    norms = np.sqrt((histograms ** 2).sum(axis=1, keepdims=True))
    return histograms / np.maximum(norms, 1e-12)


def edge(height=32, width=32, direction=(1.0, 0.0)):
    """An image that steps from 0 to 1 across the line through the centre normal to `direction`
    (x, y): its gradients point along `direction`."""
    y, x = torch.meshgrid(torch.arange(height) - height / 2 + 0.5, torch.arange(width) - width / 2 + 0.5,
                          indexing="ij")
    step = (x * direction[0] + y * direction[1] > 0).double()
    return step.expand(3, height, width).unsqueeze(0).clone()


def bin_mass(images, cell=4, bins=9):
    """Each bin's share of all histogram mass, summed over channels and cells."""
    totals = hog_cells(images, cell, bins=bins).sum(dim=(0, 1, 3, 4))
    return totals / totals.sum()


def test_a_vertical_edge_fills_the_horizontal_gradient_bin():
    # horizontal gradients are 90 degrees from the vertical axis: bin floor(90 / 20) = 4
    mass = bin_mass(edge(direction=(1.0, 0.0)))
    assert mass[4] == pytest.approx(1.0)
    # the same edge rotated by 90 degrees (a horizontal edge): vertical gradients, bin 0
    mass = bin_mass(torch.rot90(edge(direction=(1.0, 0.0)), 1, dims=(2, 3)))
    assert mass[0] == pytest.approx(1.0)


@pytest.mark.parametrize("direction, expected", [((1.0, 1.0), 2), ((1.0, -1.0), 6), ((-1.0, -1.0), 2)])
def test_a_diagonal_edge_moves_the_mass_to_its_bin(direction, expected):
    # down-right gradients are 45 degrees from the vertical (bin 2), up-right ones 135 (bin 6);
    # orientation is unsigned, so the opposite step lands in the same bin
    mass = bin_mass(edge(direction=direction))
    assert int(mass.argmax()) == expected
    assert mass[expected] > 0.8  # the rest: the image border's reflected pixels


def test_a_flat_image_gives_zeros_and_no_nan():
    flat = torch.full((2, 3, 16, 16), 0.7)
    targets = hog_patch_targets(flat, 8)
    assert torch.equal(targets, torch.zeros(2, 4, 108))


def test_shapes_follow_patches_cells_and_bins():
    images = torch.rand(2, 3, 32, 32)
    assert default_cell_size(16) == 8 and default_cell_size(8) == 4 and default_cell_size(1) == 1
    assert hog_patch_targets(images, 8).shape == (2, 16, 3 * 9 * 2 * 2)
    assert hog_patch_targets(images, 8, cell_size=2).shape == (2, 16, 3 * 9 * 4 * 4)
    assert hog_patch_targets(images, 4, bins=6).shape == (2, 64, 3 * 6 * 2 * 2)
    assert hog_feature_dim(8) == 108 and hog_feature_dim(8, cell_size=2, bins=6) == 288
    assert hog_patch_targets(torch.rand(1, 3, 16, 32), 8).shape == (1, 8, 108)  # not square
    with pytest.raises(ValueError, match="does not split into cells of 3 px"):
        hog_patch_targets(images, 8, cell_size=3)


def test_cells_and_patch_targets_match_a_per_pixel_loop():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 16, generator=generator, dtype=torch.float64)
    cells = hog_cells(images, 4)
    expected = np.stack([reference_cells(image, 4, 9) for image in images.numpy()])
    np.testing.assert_allclose(cells.numpy(), expected, rtol=1e-9, atol=1e-12)
    # patch (i, j) of 8 px holds cells 2i..2i+1, 2j..2j+1, laid out channel, bin, cell row, cell column
    targets = hog_patch_targets(images, 8).numpy()
    for n in range(2):
        for i in range(2):
            for j in range(2):
                block = expected[n, :, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                np.testing.assert_allclose(targets[n, i * 2 + j], block.reshape(-1), rtol=1e-9, atol=1e-12)
    # float32 on the same images: the same up to rounding
    assert torch.allclose(hog_cells(images.float(), 4).double(), cells, atol=1e-4)


def test_every_cell_histogram_has_unit_norm_per_channel():
    cells = hog_cells(torch.rand(3, 3, 32, 32), 4)
    assert torch.allclose(cells.norm(dim=2), torch.ones(3, 3, 8, 8), atol=1e-5)
    assert (cells >= 0).all()


def test_the_picture_draws_a_vertical_stroke_for_a_vertical_edge():
    image = edge(32, 32, direction=(1.0, 0.0)).float()
    targets = hog_patch_targets(image, 8)
    picture = hog_picture(targets, (32, 32), 8)
    assert picture.shape == (1, 1, 32, 32) and 0 <= picture.min() and picture.max() <= 1
    # edge cells are those touching the step (columns 12..19); elsewhere nothing is drawn
    assert picture[..., :12].abs().sum() == 0 and picture[..., 20:].abs().sum() == 0
    cell = picture[0, 0, 8:12, 16:20]  # a cell just right of the step, its glyph a vertical line
    assert cell[:, 1:3].mean() > 2 * cell[:, [0, 3]].mean()
    flat = hog_picture(torch.zeros(2, 16, 108), (32, 32), 8)
    assert torch.equal(flat, torch.zeros(2, 1, 32, 32))
    assert torch.equal(hog_picture(-targets, (32, 32), 8), torch.zeros(1, 1, 32, 32))  # negatives: zero
