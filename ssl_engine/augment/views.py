"""Augmented views: one recipe per view, applied to whole batches on their device.

A `ViewConfig` is the recipe of one view, in the order of SimCLR (Chen et al., 2020,
appendix A) and BYOL (Grill et al., 2020, appendix B): random resized crop and horizontal
flip, colour jitter (applied with probability `jitter_p`, ops in a random order), random
greyscale, Gaussian blur, solarisation. `ViewAugmenter` turns a batch of images into one
batch per view; every sample draws its own parameters from a CPU `torch.Generator`, so a seed
gives the same views on any device.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from ..errors import ConfigError, Problem
from ..params import hyper, validate
from . import ops


@dataclass
class ViewConfig:
    """One augmented view's recipe (torchvision semantics, per-sample random draws)."""

    crop_scale_min: float = hyper(0.08, gt=0, le=1,
                                  help="smallest crop, as a fraction of the image area")
    crop_scale_max: float = hyper(1.0, gt=0, le=1,
                                  help="largest crop, as a fraction of the image area")
    flip_p: float = hyper(0.5, ge=0, le=1, help="probability of a horizontal flip")
    jitter_p: float = hyper(0.8, ge=0, le=1, help="probability of applying colour jitter")
    brightness: float = hyper(0.4, ge=0,
                              help="brightness jitter: factor uniform in [max(0, 1-b), 1+b]")
    contrast: float = hyper(0.4, ge=0,
                            help="contrast jitter: factor uniform in [max(0, 1-c), 1+c]")
    saturation: float = hyper(0.4, ge=0,
                              help="saturation jitter: factor uniform in [max(0, 1-s), 1+s]")
    hue: float = hyper(0.1, ge=0, le=0.5, help="hue jitter: shift uniform in [-h, h] turns")
    grayscale_p: float = hyper(0.2, ge=0, le=1, help="probability of converting to greyscale")
    blur_p: float = hyper(0.0, ge=0, le=1, help="probability of a Gaussian blur")
    blur_sigma_min: float = hyper(0.1, gt=0, help="smallest blur sigma, in pixels")
    blur_sigma_max: float = hyper(2.0, gt=0, help="largest blur sigma, in pixels")
    solarize_p: float = hyper(0.0, ge=0, le=1,
                              help="probability of solarising (x -> 1 - x where x >= 0.5)")
    output_size: int = hyper(0, ge=0, le=1024,
                             help="side of this view in pixels (0: the data's image size; smaller for multi-crop's local views)")


def check_view(view: ViewConfig, where: str) -> list[Problem]:
    """Problems between fields of one view (at address `where`), e.g. a crop range min above max."""
    problems = []
    if view.crop_scale_min > view.crop_scale_max:
        problems.append(Problem(f"{where}.crop_scale_min", f"must be <= crop_scale_max "
                                                           f"({view.crop_scale_min:g} > {view.crop_scale_max:g})"))
    if view.blur_sigma_min > view.blur_sigma_max:
        problems.append(Problem(f"{where}.blur_sigma_min", f"must be <= blur_sigma_max "
                                                           f"({view.blur_sigma_min:g} > {view.blur_sigma_max:g})"))
    return problems


@dataclass
class ViewParams:
    """The random draws of one view for a batch of N samples (CPU tensors)."""

    boxes: Tensor           # (N, 4) crop (top, left, height, width) in input pixels
    flip: Tensor            # (N,) bool
    jitter: Tensor          # (N,) bool, colour jitter applied
    jitter_factors: Tensor  # (N, 4) brightness, contrast, saturation factors, hue shift
    jitter_order: Tensor    # (N, 4) per-sample permutation of the four jitter ops
    grayscale: Tensor       # (N,) bool
    blur: Tensor            # (N,) bool
    blur_sigma: Tensor      # (N,)
    solarize: Tensor        # (N,) bool

    def rows(self, part: slice) -> "ViewParams":
        """The draws of samples `part` only."""
        return ViewParams(*(getattr(self, f.name)[part] for f in fields(self)))


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device="cpu")


def _coin(n: int, p: float, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator, device="cpu") < p


def draw_view_params(view: ViewConfig, n: int, height: int, width: int,
                     generator: torch.Generator) -> ViewParams:
    """Draw every random parameter of `view` for N images of size (height, width).

    Everything is drawn every time, whatever the probabilities, so that the generator's
    stream (and thus the other views) does not depend on which ops happen to be enabled.
    """
    boxes = ops.sample_crop_boxes(n, height, width, (view.crop_scale_min, view.crop_scale_max),
                                  generator)
    flip = _coin(n, view.flip_p, generator)
    jitter = _coin(n, view.jitter_p, generator)
    factors = torch.stack([
        _uniform(n, max(0.0, 1 - view.brightness), 1 + view.brightness, generator),
        _uniform(n, max(0.0, 1 - view.contrast), 1 + view.contrast, generator),
        _uniform(n, max(0.0, 1 - view.saturation), 1 + view.saturation, generator),
        _uniform(n, -view.hue, view.hue, generator),
    ], dim=1)
    order = torch.rand(n, len(ops.JITTER_OPS), generator=generator, device="cpu").argsort(dim=1)
    grayscale = _coin(n, view.grayscale_p, generator)
    blur = _coin(n, view.blur_p, generator)
    sigma = _uniform(n, view.blur_sigma_min, view.blur_sigma_max, generator)
    solarize = _coin(n, view.solarize_p, generator)
    return ViewParams(boxes, flip, jitter, factors, order, grayscale, blur, sigma, solarize)


def apply_view(images: Tensor, view: ViewConfig, params: ViewParams, output_size: int) -> Tensor:
    """One view of float images (N, 3, H, W) in [0, 1]: crop+flip, jitter, greyscale, blur, solarise."""
    out = ops.resized_crop_flip(images, params.boxes, params.flip, output_size)
    strengths = (view.brightness, view.contrast, view.saturation, view.hue)
    out = ops.color_jitter(out, params.jitter_factors, params.jitter_order, params.jitter,
                           enabled=[s > 0 for s in strengths])
    # `out` is ours from the crop on, so the probabilistic ops may write into it
    out = ops.apply_to_selected(out, params.grayscale, ops.grayscale, inplace=True)
    out = ops.apply_to_selected(out, params.blur, ops.gaussian_blur, params.blur_sigma, inplace=True)
    return ops.apply_to_selected(out, params.solarize, ops.solarize, inplace=True)


def as_float_images(images: Tensor) -> Tensor:
    """uint8 images to float32 in [0, 1]; float images to float32 unchanged in value."""
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    return images.float()


class ViewAugmenter:
    """Turns a batch of images into one augmented batch per view, on the images' device."""

    def __init__(self, views: list[ViewConfig], output_size: int):
        """`output_size` is the side of every view that does not set its own `output_size`."""
        problems = [] if output_size > 0 else [Problem("output_size", f"must be > 0, got {output_size}")]
        for i, view in enumerate(views):
            problems += validate(view, f"views[{i}]") + check_view(view, f"views[{i}]")
        if problems:
            raise ConfigError(problems)
        self.views = list(views)
        self.output_size = output_size

    def __call__(self, images: Tensor, generator: torch.Generator, *, rows: slice | None = None,
                 total: int | None = None) -> list[Tensor]:
        """uint8 (N,3,H,W) or float in [0,1] on any device -> one float32 tensor (N,3,S,S) in [0,1] per view
        (S: the view's own output_size, or the augmenter's).

        With `total` and `rows`, the draws are made for a global batch of `total` images and
        `images` are its rows `rows`: each of N processes, given its slice, gets exactly the
        views that one process would give those images.
        """
        images = as_float_images(images)
        n, _, height, width = images.shape
        total = n if total is None else total
        out = []
        for view in self.views:
            params = draw_view_params(view, total, height, width, generator)
            out.append(apply_view(images, view, params if rows is None else params.rows(rows),
                                  view.output_size or self.output_size))
        return out
