"""The batched view pipeline against torchvision's semantics, its per-sample randomness and the presets."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from ssl_engine.augment import (PRESETS, ViewAugmenter, ViewConfig, check_view, draw_view_params,
                                preset_views)
from ssl_engine.augment import ops
from ssl_engine.errors import ConfigError
from ssl_engine.params import describe, validate

# A view that does nothing but resample the whole image: each test switches on what it checks.
PLAIN = ViewConfig(crop_scale_min=1.0, crop_scale_max=1.0, flip_p=0.0, jitter_p=0.0,
                   grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=generator(seed))


def coordinate_images(n: int, size: int) -> torch.Tensor:
    """Channel 0 holds (x + 0.5) / size, channel 1 (y + 0.5) / size, channel 2 a constant."""
    ramp = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    x = ramp.view(1, size).expand(size, size)
    y = ramp.view(size, 1).expand(size, size)
    return torch.stack((x, y, torch.full((size, size), 0.5))).expand(n, 3, size, size).clone()


# ---------------------------------------------------------------- the augmenter as a whole

def test_identical_images_get_different_views():
    images = random_images(1, 32).expand(2, 3, 32, 32)
    for view in ViewAugmenter(preset_views("byol", 32), 32)(images, generator()):
        assert not torch.allclose(view[0], view[1])


def test_same_seed_same_views_other_seed_other_views():
    images = random_images(8, 32)
    augmenter = ViewAugmenter(preset_views("simclr", 64), 24)
    first = augmenter(images, generator(3))
    again = augmenter(images, generator(3))
    other = augmenter(images, generator(4))
    for a, b, c in zip(first, again, other):
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_shape_range_dtype(dtype):
    images = random_images(5, 40)
    images = (images * 255).to(torch.uint8) if dtype == torch.uint8 else images.to(dtype)
    views = ViewAugmenter(preset_views("byol", 64), 24)(images, generator())
    assert len(views) == 2
    for view in views:
        assert view.shape == (5, 3, 24, 24)
        assert view.dtype == torch.float32
        assert view.min() >= 0 and view.max() <= 1
        assert torch.isfinite(view).all()


def test_uint8_input_is_scaled_to_unit_range():
    images = random_images(4, 16)
    as_bytes = (images * 255).round().to(torch.uint8)
    augmenter = ViewAugmenter([PLAIN], 16)
    (from_bytes,) = augmenter(as_bytes, generator())
    assert torch.allclose(from_bytes, as_bytes.float() / 255, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_views():
    images = random_images(16, 32)
    augmenter = ViewAugmenter(preset_views("byol", 64), 32)
    on_cpu = augmenter(images, generator(1))
    on_gpu = augmenter(images.cuda(), generator(1))
    for a, b in zip(on_cpu, on_gpu):
        assert b.device.type == "cuda"
        assert torch.allclose(a, b.cpu(), atol=1e-4)


def test_invalid_views_are_refused():
    with pytest.raises(ConfigError) as error:
        ViewAugmenter([ViewConfig(crop_scale_min=0.9, crop_scale_max=0.5, flip_p=1.5)], 32)
    assert "views[0].flip_p must be <= 1, got 1.5" in error.value.problems
    assert "views[0].crop_scale_min must be <= crop_scale_max (0.9 > 0.5)" in error.value.problems


# ---------------------------------------------------------------- crop and flip

@pytest.mark.parametrize("output_size", [20, 32, 48])
def test_full_crop_is_a_resize(output_size):
    images = random_images(4, 32)
    boxes = ops.sample_crop_boxes(4, 32, 32, (1.0, 1.0), generator(), ratio=(1.0, 1.0))
    assert torch.equal(boxes, torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 4))
    out = ops.resized_crop_flip(images, boxes, torch.zeros(4, dtype=torch.bool), output_size)
    expected = F.interpolate(images, size=(output_size, output_size), mode="bilinear",
                             align_corners=False)
    assert torch.allclose(out, expected, atol=1e-5)


def test_crop_and_flip_is_the_affine_grid_of_the_box():
    images = random_images(16, 24)
    boxes = ops.sample_crop_boxes(16, 24, 24, (0.1, 1.0), generator())
    flip = torch.arange(16) % 2 == 0
    top, left, height, width = boxes.unbind(1)
    zero = torch.zeros(16)
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.stack((torch.stack((sign * width / 24, zero, (2 * left + width) / 24 - 1), 1),
                         torch.stack((zero, height / 24, (2 * top + height) / 24 - 1), 1)), 1)
    grid = F.affine_grid(theta, [16, 3, 12, 12], align_corners=False)
    expected = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    assert torch.allclose(ops.resized_crop_flip(images, boxes, flip, 12), expected, atol=1e-5)


def test_flip_reverses_columns():
    images = random_images(6, 16)
    (out,) = ViewAugmenter([dataclasses.replace(PLAIN, flip_p=1.0)], 16)(images, generator())
    assert torch.allclose(out, images.flip(-1), atol=1e-5)


def test_crop_boxes_fit_and_follow_the_scale_and_ratio():
    boxes = ops.sample_crop_boxes(2000, 60, 80, (0.08, 1.0), generator())
    top, left, height, width = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + height <= 60).all() and (left + width <= 80).all()
    area = height * width / (60 * 80)
    assert area.min() > 0.07 and area.max() <= 1.0
    aspect = width / height
    assert aspect.min() > 0.7 and aspect.max() < 1.4
    assert torch.equal(boxes, boxes.round())


def test_crop_falls_back_to_a_centre_crop_clamped_to_the_ratio():
    # a 10 x 100 strip: no crop of the whole area has an aspect ratio within [3/4, 4/3]
    boxes = ops.sample_crop_boxes(5, 10, 100, (1.0, 1.0), generator())
    assert torch.equal(boxes, torch.tensor([[0.0, 43.0, 10.0, 13.0]] * 5))


def test_quarter_scale_crop_covers_a_quarter_of_the_image():
    size, out_size = 64, 16
    images = coordinate_images(200, size)
    view = dataclasses.replace(PLAIN, crop_scale_min=0.25, crop_scale_max=0.25)
    params = draw_view_params(view, 200, size, size, generator())
    out = ops.resized_crop_flip(images, params.boxes, params.flip, out_size)
    # the ramps sampled at the output pixel centres span (S - 1) / S of the crop's side
    stretch = out_size / (out_size - 1)
    width = (out[:, 0, :, -1] - out[:, 0, :, 0]).mean(1) * stretch
    height = (out[:, 1, -1, :] - out[:, 1, 0, :]).mean(1) * stretch
    assert torch.allclose(width * height, torch.full((200,), 0.25), atol=0.02)
    top, left, box_h, box_w = params.boxes.unbind(1)
    assert torch.allclose(width, box_w / size, atol=1e-4)
    assert torch.allclose(height, box_h / size, atol=1e-4)
    assert torch.allclose(out[:, 0, 0, 0], (left + 0.5 * box_w / out_size) / size, atol=1e-4)
    assert torch.allclose(out[:, 1, 0, 0], (top + 0.5 * box_h / out_size) / size, atol=1e-4)


# ---------------------------------------------------------------- colour

def test_grayscale_uses_torchvision_weights():
    images = random_images(4, 16)
    (out,) = ViewAugmenter([dataclasses.replace(PLAIN, grayscale_p=1.0)], 16)(images, generator())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    expected = TF.rgb_to_grayscale(images, num_output_channels=3)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("name, ours, theirs, factors, atol", [
    ("brightness", ops.adjust_brightness, TF.adjust_brightness, [0.0, 0.6, 1.0, 1.7], 1e-5),
    ("contrast", ops.adjust_contrast, TF.adjust_contrast, [0.0, 0.6, 1.0, 1.7], 1e-5),
    ("saturation", ops.adjust_saturation, TF.adjust_saturation, [0.0, 0.6, 1.0, 1.7], 1e-5),
    ("hue", ops.adjust_hue, TF.adjust_hue, [-0.5, -0.2, 0.0, 0.35], 1e-4),
])
def test_colour_ops_match_torchvision(name, ours, theirs, factors, atol):
    images = random_images(len(factors), 16, seed=5)
    out = ours(images, torch.tensor(factors))
    for i, factor in enumerate(factors):
        assert torch.allclose(out[i], theirs(images[i], factor), atol=atol), (name, factor)


def test_colour_jitter_applies_each_samples_ops_in_its_own_order():
    n = 24
    images = random_images(n, 12, seed=2)
    g = generator(7)
    factors = torch.stack([0.5 + torch.rand(n, generator=g), 0.5 + torch.rand(n, generator=g),
                           0.5 + torch.rand(n, generator=g), torch.rand(n, generator=g) - 0.5], 1)
    order = torch.rand(n, 4, generator=g).argsort(1)
    selected = torch.rand(n, generator=g) < 0.7
    out = ops.color_jitter(images, factors, order, selected)
    functions = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in range(n):
        expected = images[i]
        if selected[i]:
            for op_index in order[i].tolist():
                expected = functions[op_index](expected, factors[i, op_index].item())
        assert torch.allclose(out[i], expected, atol=1e-4), i


def test_jitter_ops_with_zero_strength_are_skipped():
    images = random_images(8, 12)
    view = dataclasses.replace(PLAIN, jitter_p=1.0, brightness=0.0, contrast=0.0, saturation=0.0,
                               hue=0.0)
    (out,) = ViewAugmenter([view], 12)(images, generator())
    assert torch.allclose(out, images, atol=1e-6)


# ---------------------------------------------------------------- blur and solarisation

def test_solarize_inverts_the_bright_half():
    images = random_images(4, 16)
    (out,) = ViewAugmenter([dataclasses.replace(PLAIN, solarize_p=1.0)], 16)(images, generator())
    assert torch.allclose(out, torch.where(images >= 0.5, 1 - images, images), atol=1e-6)


def test_blur_with_tiny_sigma_is_near_identity_and_keeps_the_mean():
    images = random_images(4, 32)
    sharp = ops.gaussian_blur(images, torch.full((4,), 0.05))
    assert torch.allclose(sharp, images, atol=1e-5)
    blurred = ops.gaussian_blur(images, torch.full((4,), 2.0))
    assert blurred.std() < 0.5 * images.std()
    assert torch.allclose(blurred.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=0.01)


def test_blur_matches_torchvision_per_sample():
    images = random_images(3, 40)
    sigmas = [0.3, 1.0, 2.0]
    out = ops.gaussian_blur(images, torch.tensor(sigmas))
    size = ops.blur_kernel_size(40)
    assert size == 5
    for i, sigma in enumerate(sigmas):
        expected = TF.gaussian_blur(images[i], [size, size], [sigma, sigma])
        assert torch.allclose(out[i], expected, atol=1e-5)


def test_blur_kernel_size_is_a_tenth_of_the_side_odd_and_at_least_three():
    assert [ops.blur_kernel_size(s) for s in (8, 32, 64, 96, 224)] == [3, 3, 7, 9, 23]


def test_normalize():
    images = random_images(2, 4)
    out = ops.normalize(images, (0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    assert torch.allclose(out, TF.normalize(images, [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]))


# ---------------------------------------------------------------- probabilities

N_RATE = 4000


def applied_rate(view: ViewConfig, images: torch.Tensor, was_applied) -> float:
    (out,) = ViewAugmenter([view], images.shape[-1])(images, generator(11))
    return was_applied(out).float().mean().item()


def test_flip_rate():
    images = coordinate_images(N_RATE, 8)
    rate = applied_rate(dataclasses.replace(PLAIN, flip_p=0.3), images,
                        lambda out: out[:, 0, 0, 0] > out[:, 0, 0, -1])
    assert abs(rate - 0.3) < 0.04


def test_jitter_rate():
    images = torch.full((N_RATE, 3, 8, 8), 0.5)
    view = dataclasses.replace(PLAIN, jitter_p=0.6, brightness=0.5, contrast=0.0, saturation=0.0,
                               hue=0.0)
    rate = applied_rate(view, images, lambda out: (out[:, 0, 0, 0] - 0.5).abs() > 1e-6)
    assert abs(rate - 0.6) < 0.04


def test_grayscale_rate():
    images = random_images(N_RATE, 8)
    rate = applied_rate(dataclasses.replace(PLAIN, grayscale_p=0.3), images,
                        lambda out: (out[:, 0] == out[:, 1]).all(dim=(1, 2)))
    assert abs(rate - 0.3) < 0.04


def test_blur_rate():
    checkerboard = (torch.arange(16).view(1, 16) + torch.arange(16).view(16, 1)) % 2
    images = checkerboard.float().expand(N_RATE, 3, 16, 16)
    rate = applied_rate(dataclasses.replace(PLAIN, blur_p=0.4, blur_sigma_min=0.5), images,
                        lambda out: (out - images).abs().amax(dim=(1, 2, 3)) > 0.05)
    assert abs(rate - 0.4) < 0.04


def test_solarize_rate():
    images = torch.full((N_RATE, 3, 8, 8), 0.75)
    rate = applied_rate(dataclasses.replace(PLAIN, solarize_p=0.25), images,
                        lambda out: out[:, 0, 0, 0] < 0.5)
    assert abs(rate - 0.25) < 0.04


# ---------------------------------------------------------------- config and presets

def test_view_config_declares_ranges_and_help():
    assert validate(ViewConfig(), "view") == []
    rows = describe(ViewConfig)
    assert len(rows) == 14 and all(help_text for *_, help_text in rows)
    assert validate(ViewConfig(hue=0.6, crop_scale_min=0.0), "v") == [
        "v.crop_scale_min must be > 0, got 0", "v.hue must be <= 0.5, got 0.6"]
    assert [problem.address for problem in validate(ViewConfig(hue=0.6, crop_scale_min=0.0), "v")] == [
        "v.crop_scale_min", "v.hue"]


def test_check_view_messages():
    assert check_view(ViewConfig(), "augment.views[0]") == []
    bad = ViewConfig(crop_scale_min=0.9, crop_scale_max=0.5, blur_sigma_min=3.0, blur_sigma_max=2.0)
    assert check_view(bad, "augment.views[0]") == [
        "augment.views[0].crop_scale_min must be <= crop_scale_max (0.9 > 0.5)",
        "augment.views[0].blur_sigma_min must be <= blur_sigma_max (3 > 2)",
    ]
    assert [problem.address for problem in check_view(bad, "augment.views[0]")] == [
        "augment.views[0].crop_scale_min", "augment.views[0].blur_sigma_min"]


def test_simclr_preset():
    first, second = preset_views("simclr", 224)
    assert first == second
    assert (first.crop_scale_min, first.crop_scale_max, first.flip_p) == (0.08, 1.0, 0.5)
    assert (first.jitter_p, first.brightness, first.contrast, first.saturation, first.hue) == (
        0.8, 0.8, 0.8, 0.8, 0.2)
    assert (first.grayscale_p, first.blur_p, first.solarize_p) == (0.2, 0.5, 0.0)
    assert (first.blur_sigma_min, first.blur_sigma_max) == (0.1, 2.0)
    assert all(view.blur_p == 0.0 for view in preset_views("simclr", 32))


@pytest.mark.parametrize("name", ["moco_v2", "simsiam"])
def test_moco_v2_and_simsiam_presets(name):
    first, second = preset_views(name, 224)
    assert first == second
    assert (first.crop_scale_min, first.flip_p, first.jitter_p) == (0.2, 0.5, 0.8)
    assert (first.brightness, first.contrast, first.saturation, first.hue) == (0.4, 0.4, 0.4, 0.1)
    assert (first.grayscale_p, first.blur_p, first.solarize_p) == (0.2, 0.5, 0.0)


@pytest.mark.parametrize("name", ["byol", "barlow_twins", "vicreg"])
def test_byol_preset_and_aliases(name):
    first, second = preset_views(name, 224)
    assert first != second
    assert (first.blur_p, first.solarize_p) == (1.0, 0.0)
    assert (second.blur_p, second.solarize_p) == (0.1, 0.2)
    for view in (first, second):
        assert (view.crop_scale_min, view.flip_p, view.jitter_p, view.grayscale_p) == (0.08, 0.5, 0.8, 0.2)
        assert (view.brightness, view.contrast, view.saturation, view.hue) == (0.4, 0.4, 0.2, 0.1)
    small = preset_views(name, 32)
    assert [v.blur_p for v in small] == [0.0, 0.0] and small[1].solarize_p == 0.2


def test_presets_are_named_valid_and_fresh():
    assert set(PRESETS) == {"simclr", "moco_v2", "byol", "barlow_twins", "vicreg", "simsiam", "swav", "dino",
                            "mae", "simmim", "maskfeat", "ijepa", "beit"}
    for name in PRESETS:
        for view in preset_views(name, 96):
            assert validate(view, name) + check_view(view, name) == []
    preset_views("byol", 224)[0].blur_p = 0.3
    assert preset_views("byol", 224)[0].blur_p == 1.0
    with pytest.raises(ConfigError, match="simclr"):
        preset_views("nope", 32)


@pytest.mark.parametrize("name, crops, local_scale", [("swav", 6, (0.05, 0.14)), ("dino", 8, (0.05, 0.4))])
def test_multi_crop_presets_give_two_global_and_smaller_local_views(name, crops, local_scale):
    views = preset_views(name, 224)
    assert [v.output_size for v in views] == [0, 0] + [96] * crops  # the papers' 2 x 224 + M x 96
    assert all((v.crop_scale_min, v.crop_scale_max) == local_scale for v in views[2:])
    assert [v.output_size for v in preset_views(name, 32)][2:] == [16] * crops  # multiple of 8 for ViT patches
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    out = ViewAugmenter(preset_views(name, 32), 32)(images, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in out] == [(3, 3, 32, 32)] * 2 + [(3, 3, 16, 16)] * crops


def test_dino_global_views_keep_byols_asymmetry():
    first, second = preset_views("dino", 224)[:2]
    assert (first.blur_p, first.solarize_p, second.blur_p, second.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert first.crop_scale_min == 0.4
