"""The masks a masked method will draw, for the Augmentations tab, before any training: MAE's
hidden patches, BEiT's blocks, I-JEPA's context and target blocks, with the settings as they are
now (mask ratio, patch size, block sizes).

The method is built once per shape (method, backbone, image size) on a random-init backbone and
asked for its pictures, as the Training tab does; its parameters are swapped in on each draw (the
masks read them when drawn), so moving the mask ratio redraws at once. Only the mask pictures
are kept: a reconstruction from random weights would show nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from ssl_engine.config import ExperimentConfig
from ssl_engine.methods import get_method
from ssl_engine.models.build import build_backbone_for

MASK_PICTURES = ("mask", "context", "targets")  # the masking, not what a network made of it


class MaskPreview:
    def __init__(self):
        self._key = None
        self._method = None

    def pictures(self, config: ExperimentConfig, images: torch.Tensor) -> dict[str, np.ndarray]:
        """{name: (N, H, W, 1) float in [0, 1]} of the masks the method draws on `images` ((N, 3, H,
        W) in [0, 1]); empty for a method that masks nothing. Raises what building the method
        raises for settings it refuses (a ConfigError)."""
        if not config.backbone.is_vit:  # every masked method masks a ViT's patches
            return {}
        method_class = get_method(config.method.name)
        key = (config.method.name, repr(config.backbone), config.data.image_size)
        if key != self._key:
            torch.manual_seed(0)
            self._method = method_class(build_backbone_for(config), config.method.params, total_steps=1).eval()
            self._key = key
        self._method.params = config.method.params
        with torch.no_grad():
            pictures = self._method.pictures(images)
        return {name: picture.float().clamp(0, 1).permute(0, 2, 3, 1).numpy().copy()
                for name, picture in pictures.items() if name in MASK_PICTURES and picture.shape[1] == 1}
