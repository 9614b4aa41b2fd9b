"""What a ViT looks at in any image: the last block's class-token attention per head.

The maps DINO made famous (its emergent segmentation), for an image of the user's folders or
from anywhere: the image is read as the embedding reads it (centre crop at the model's size)
and passed through the model's ViT; other backbones have no attention to show.
"""

from __future__ import annotations

import numpy as np
import torch

from ..augment.ops import normalize
from ..data.folder import UnreadableImage, decode_image
from ..errors import DataError
from .model_source import EvalModel


def has_attention(model: EvalModel) -> bool:
    """Whether the model's backbone is a ViT with attention maps to show."""
    return hasattr(model.backbone, "class_token_attention")


def image_attention(model: EvalModel, path: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (S, S, 3) as the model sees the image, maps float32 (heads, grid, grid) in
    0..1); DataError when the image cannot be read, ValueError for a model without attention."""
    if not has_attention(model):
        raise ValueError(f"{model.name} is not a ViT: it has no attention maps")
    try:
        pixels = decode_image(path, model.image_size)
    except UnreadableImage as error:
        raise DataError(f"cannot read {path}: {error}") from None
    image = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    model.backbone.eval()
    maps = model.backbone.class_token_attention(normalize(image, model.mean, model.std))
    return pixels, maps[0].numpy().copy()
