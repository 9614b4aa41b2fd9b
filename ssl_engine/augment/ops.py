"""Batched image operations for SSL views, with one random draw per sample.

Every function works on a whole float batch (N, 3, H, W) in [0, 1], on whatever device it
lives on, and takes its random parameters as per-sample tensors of shape (N,) or (N, k), so
that each image of the batch gets its own crop, colour factors and blur. The parameters are
drawn on the CPU (`sample_crop_boxes`, and `views.draw_view_params` for the rest) from a
`torch.Generator`, so a seed gives the same views on the CPU and on a GPU.

The semantics follow torchvision's `RandomResizedCrop`, `ColorJitter`, `RandomGrayscale`,
`GaussianBlur` and `RandomSolarize`, which implement the augmentations of
SimCLR (Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", appendix A) and BYOL (Grill et al., 2020, "Bootstrap Your Own Latent",
appendix B, which adds solarisation). Where a batched version must differ, the docstring says so.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale (which follows TensorFlow).
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)

# Order of the colour-jitter operations in `factors` and `order` of `color_jitter`.
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def apply_to_selected(images: Tensor, selected: Tensor, op: Callable[..., Tensor],
                      *per_sample: Tensor, inplace: bool = False) -> Tensor:
    """`op(images, *per_sample)` on the samples where `selected` (N,) holds; the rest unchanged.

    Only the selected samples are computed (gathered with `index_select`, written back with
    `index_copy`), so an operation applied with probability p costs about p of a full pass.
    With `inplace=True` the result may be written into `images` (use the returned tensor).
    `selected` and `per_sample` are best kept on the CPU, where they were drawn: the indices
    are then found without synchronising with the images' device.
    """
    selected = selected.to("cpu", torch.bool)
    if not bool(selected.any()):
        return images
    if bool(selected.all()):
        return op(images, *(p.to(images.device) for p in per_sample))
    index = selected.nonzero().squeeze(1)
    params = [p.index_select(0, index.to(p.device)).to(images.device) for p in per_sample]
    index = index.to(images.device)
    result = op(images.index_select(0, index), *params)
    return images.index_copy_(0, index, result) if inplace else images.index_copy(0, index, result)


def sample_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float],
                      generator: torch.Generator, ratio: tuple[float, float] = (3 / 4, 4 / 3),
                      attempts: int = 10) -> Tensor:
    """Crop boxes (N, 4) as (top, left, height, width) in whole pixels, one per sample.

    torchvision's `RandomResizedCrop.get_params`, vectorised: each sample draws `attempts`
    candidates at once (area a fraction in `scale` of the image's, aspect ratio log-uniform
    in `ratio`, sides rounded to pixels) and keeps the first that fits in the image; a
    sample with none that fits falls back to the centre crop with the aspect ratio clamped
    to `ratio`. The offsets are uniform over the positions where the box fits.
    """
    cpu = dict(device="cpu", dtype=torch.float64)
    area = height * width
    scale_lo, scale_hi = scale
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    target_area = area * (scale_lo + (scale_hi - scale_lo)
                          * torch.rand(n, attempts, generator=generator, **cpu))
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, attempts, generator=generator, **cpu))
    crop_w = torch.round(torch.sqrt(target_area * aspect))
    crop_h = torch.round(torch.sqrt(target_area / aspect))
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)     # first candidate that fits
    found = fits.any(dim=1)
    crop_w = crop_w.gather(1, first).squeeze(1)
    crop_h = crop_h.gather(1, first).squeeze(1)

    in_ratio = width / height
    if in_ratio < min(ratio):
        fallback_w, fallback_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fallback_w, fallback_h = int(round(height * max(ratio))), height
    else:
        fallback_w, fallback_h = width, height
    crop_w = torch.where(found, crop_w, torch.full_like(crop_w, fallback_w))
    crop_h = torch.where(found, crop_h, torch.full_like(crop_h, fallback_h))

    offsets = torch.rand(n, 2, generator=generator, **cpu)
    top = torch.floor(offsets[:, 0] * (height - crop_h + 1))
    left = torch.floor(offsets[:, 1] * (width - crop_w + 1))
    top = torch.where(found, top, torch.full_like(top, (height - fallback_h) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fallback_w) // 2))
    return torch.stack((top, left, crop_h, crop_w), dim=1).float()


def resized_crop_flip(images: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Crop each image to its box, resize it to (size, size) and mirror it where `flip` holds.

    One bilinear `grid_sample` (align_corners=False) does all three. The sampling grid is
    the affine map of the output square onto the box, x_in = ±(w / W) u + c_x and
    y_in = (h / H) v + c_y in normalised coordinates, a flip being the negative x scale:
    `F.affine_grid` with theta [[±w/W, 0, c_x], [0, h/H, c_y]], built here by broadcasting
    because a batched matrix product costs ten times more on the CPU for the same grid.
    Pixels near the box edge interpolate with the image's pixels just outside the box
    (torchvision crops first and clamps at the box edge), and a downscale has no
    antialiasing (torchvision antialiases); both differ by a fraction of a pixel's blur.

    boxes: (N, 4) as (top, left, height, width) in pixels; flip: (N,) bool.
    """
    _, _, height, width = images.shape
    top, left, crop_h, crop_w = boxes.to(images.device, images.dtype).unbind(dim=1)
    sign = 1.0 - 2.0 * flip.to(images.device, images.dtype)
    # output pixel centres in normalised coordinates (align_corners=False)
    centres = (2 * torch.arange(size, device=images.device, dtype=images.dtype) + 1) / size - 1
    grid_x = (sign * crop_w / width).view(-1, 1, 1) * centres.view(1, 1, size) \
        + ((2 * left + crop_w) / width - 1).view(-1, 1, 1)
    grid_y = (crop_h / height).view(-1, 1, 1) * centres.view(1, size, 1) \
        + ((2 * top + crop_h) / height - 1).view(-1, 1, 1)
    grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _per_sample(values: Tensor, images: Tensor) -> Tensor:
    """(N,) values shaped (N, 1, 1, 1) to broadcast over a batch of images."""
    return values.to(images.device, images.dtype).view(-1, 1, 1, 1)


def rgb_to_grayscale(images: Tensor) -> Tensor:
    """Luma (N, 1, H, W) with the ITU-R 601-2 weights, as torchvision's rgb_to_grayscale."""
    red, green, blue = images.unbind(dim=1)
    return (LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[1] * green + LUMA_WEIGHTS[2] * blue).unsqueeze(1)


def grayscale(images: Tensor) -> Tensor:
    """The luma replicated to three channels (torchvision's Grayscale(num_output_channels=3))."""
    return rgb_to_grayscale(images).expand_as(images).contiguous()


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """factor * images + (1 - factor) * other, clamped to [0, 1] (torchvision's _blend)."""
    factor = _per_sample(factor, images)
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Scale each image by its factor (N,): 0 gives black, 1 the original."""
    return _blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with the mean of its greyscale version: 0 gives flat grey, 1 the original."""
    mean = rgb_to_grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend each image with its greyscale version: 0 gives greyscale, 1 the original."""
    return _blend(images, rgb_to_grayscale(images), factor)


def rgb_to_hsv(images: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] to HSV with hue in [0, 1), as torchvision's _rgb2hsv.

    Hue is 0 where the pixel is grey (max = min); ties between channels go to red, then green.
    """
    red, green, blue = images.unbind(dim=1)
    value = torch.maximum(torch.maximum(red, green), blue)
    chroma = value - torch.minimum(torch.minimum(red, green), blue)
    saturation = chroma / torch.where(value > 0, value, torch.ones_like(value))
    # hue in sixths of a turn: (G - B) / C on the red sector, 2 + (B - R) / C, 4 + (R - G) / C
    sector = torch.where(value == red, green - blue,
                         torch.where(value == green, 2 * chroma + blue - red, 4 * chroma + red - green))
    hue = torch.remainder(sector / torch.where(chroma > 0, chroma, torch.ones_like(chroma)) / 6.0, 1.0)
    return torch.stack((hue, saturation, value), dim=1)


def hsv_to_rgb(images: Tensor) -> Tensor:
    """HSV (hue in [0, 1)) back to RGB.

    Channel c = V - V S clamp(min(k, 4 - k), 0, 1) with k = (n + 6 H) mod 6 and n = 5, 3, 1
    for red, green, blue: the same piecewise-linear function as torchvision's sector-by-sector
    _hsv2rgb, written without the six-way select.
    """
    hue, saturation, value = images.unbind(dim=1)
    offsets = torch.tensor((5.0, 3.0, 1.0), device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    k = torch.remainder(offsets + 6.0 * hue.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0, 1)
    value, saturation = value.unsqueeze(1), saturation.unsqueeze(1)
    return (value - value * saturation * ramp).clamp(0, 1)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate each image's hue by its shift (N,) in [-0.5, 0.5] turns, in HSV."""
    hsv = rgb_to_hsv(images)
    hue = torch.remainder(hsv[:, 0:1] + _per_sample(shift, images), 1.0)
    return hsv_to_rgb(torch.cat((hue, hsv[:, 1:]), dim=1))


_JITTER_FUNCTIONS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(images: Tensor, factors: Tensor, order: Tensor, selected: Tensor,
                 enabled: Sequence[bool] = (True, True, True, True)) -> Tensor:
    """torchvision's ColorJitter with each sample's own factors and its own order of the ops.

    factors: (N, 4) brightness, contrast and saturation factors and hue shift (`JITTER_OPS`);
    order: (N, 4) a permutation of 0..3 per sample, the op applied at each position;
    selected: (N,) bool, the samples that are jittered at all (RandomApply's draw);
    enabled: which ops take part (torchvision skips an op whose strength is 0).

    At each of the four positions, each op runs only on the selected samples whose
    permutation puts it there, so the whole jitter costs about one pass of each op.
    """
    selected = selected.to("cpu", torch.bool)
    order = order.to("cpu")
    images = images.clone()  # written in place below, one copy for the whole jitter
    for position in range(len(JITTER_OPS)):
        for op_index, op in enumerate(_JITTER_FUNCTIONS):
            if enabled[op_index]:
                here = selected & (order[:, position] == op_index)
                images = apply_to_selected(images, here, op, factors[:, op_index], inplace=True)
    return images


def blur_kernel_size(side: int) -> int:
    """About 10% of the image side, odd and at least 3 (SimCLR; 23 px at 224 px as BYOL)."""
    return max(3, int(side * 0.1) // 2 * 2 + 1)


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int | None = None) -> Tensor:
    """Blur each image with a Gaussian of its own sigma (N,), separably, with reflect padding.

    The kernel is torchvision's (taps at -k//2..k//2, normalised to sum 1); the per-sample
    kernels run as one grouped convolution over the batch folded into channels.
    """
    n, channels, height, width = images.shape
    size = kernel_size or blur_kernel_size(min(height, width))
    half = size // 2
    taps = torch.linspace(-half, half, size, device=images.device, dtype=images.dtype)
    sigma = sigma.to(images.device, images.dtype).clamp_min(1e-6).view(-1, 1)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    folded = images.reshape(1, n * channels, height, width)
    folded = F.pad(folded, (half, half, half, half), mode="reflect")
    folded = F.conv2d(folded, kernel.view(n * channels, 1, 1, size), groups=n * channels)
    folded = F.conv2d(folded, kernel.view(n * channels, 1, size, 1), groups=n * channels)
    return folded.reshape(n, channels, height, width)


def solarize(images: Tensor, threshold: float = 0.5) -> Tensor:
    """x -> 1 - x where x >= threshold (BYOL's solarisation, torchvision's solarize)."""
    return torch.where(images >= threshold, 1.0 - images, images)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(x - mean) / std per channel."""
    mean_t = torch.as_tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean_t) / std_t
