"""The backbone an experiment config describes, and a backbone's weights inside a checkpoint."""

from __future__ import annotations

from torch import nn

from ..config import ExperimentConfig, layer_scale_for, position_embedding_for, vit_features_for
from .backbones import build_backbone


def build_backbone_for(config: ExperimentConfig) -> nn.Module:
    """The backbone of `config` (its ViT layout and evaluation pooling included), untrained."""
    stem = {"auto": None, "on": True, "off": False}[config.backbone.small_stem]
    backbone = build_backbone(config.backbone.name, small_stem=stem, image_size=config.data.image_size,
                              patch_size=config.backbone.patch_size, vit_depth=config.backbone.vit_depth,
                              position_embedding=position_embedding_for(config), layer_scale=layer_scale_for(config))
    if hasattr(backbone, "evaluation_pooling"):
        backbone.evaluation_pooling = vit_features_for(config)
    return backbone


def backbone_state(checkpoint: dict) -> dict:
    """The backbone's weights inside a checkpoint's method state."""
    prefix = "backbone."
    return {k[len(prefix):]: v for k, v in checkpoint["method"].items() if k.startswith(prefix)}
