"""Probes of the fixed sample images: their augmented views, the method's pictures (masks,
reconstructions) and a ViT's attention."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..augment.display import to_display
from .base import ProbeContext, probe

# Views and pictures are cheap next to a step (8 small images): a window asks for them every 10.
IMAGE_EVERY_STEPS = 10


@dataclass
class AugmentedViews:
    originals: np.ndarray      # uint8 (n, H, W, 3)
    views: list[np.ndarray]    # one uint8 (n, S, S, 3) array per view


@dataclass
class MethodPictures:
    """A masked method's own pictures (`Method.pictures`), name -> float32 (n, H, W, C) in 0..1:
    C = 3 for images (a reconstruction, de-normalised), C = 1 for masks and maps to lay over
    the originals."""
    originals: np.ndarray      # uint8 (n, H, W, 3)
    pictures: dict[str, np.ndarray]


@dataclass
class Attention:
    """A ViT's last-block class-token attention over the patches, float32 (n, heads, grid, grid),
    each map scaled to a maximum of 1."""
    originals: np.ndarray      # uint8 (n, H, W, 3)
    attention: np.ndarray


@probe("views", per="step", every=IMAGE_EVERY_STEPS, display="views", first_step=True,
       help="the sample images and their augmented views, as this step's augmentation draws them")
def augmented_views(context: ProbeContext) -> AugmentedViews:
    views = context.augment(context.samples)
    return AugmentedViews(originals=context.shown, views=[to_display(v) for v in views])


@probe("pictures", per="step", every=IMAGE_EVERY_STEPS, display="pictures", first_step=True,
       help="what a masked method shows of the sample images: masks, reconstructions, targets")
@torch.no_grad()
def method_pictures(context: ProbeContext) -> MethodPictures | None:
    mean, std = (t.view(1, -1, 1, 1) for t in context.mean_std)
    pictures = {}
    for name, picture in context.method.pictures(context.normalised_samples).items():
        picture = picture.float()
        if picture.shape[1] == 3:  # an image, normalised like the input
            picture = picture * std + mean
        pictures[name] = picture.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy().copy()
    return MethodPictures(originals=context.shown, pictures=pictures) if pictures else None


@probe("attention", per="step", every=IMAGE_EVERY_STEPS, display="attention", first_step=True,
       help="a ViT's last-block class-token attention over the sample images' patches, per head")
@torch.no_grad()
def class_token_attention(context: ProbeContext) -> Attention | None:
    backbone = context.backbone
    if not hasattr(backbone, "class_token_attention"):
        return None
    attention = backbone.class_token_attention(context.normalised_samples).cpu().numpy().copy()
    return Attention(originals=context.shown, attention=attention)
