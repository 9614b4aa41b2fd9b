"""Models: backbones by name, projection/prediction heads, EMA helpers for target networks."""

from .backbones import BACKBONES, Backbone, backbone_names, build_backbone, register_backbone
from .ema import copy_as_frozen, cosine_momentum, ema_update
from .heads import prediction_mlp, projection_mlp

__all__ = [
    "BACKBONES", "Backbone", "backbone_names", "build_backbone", "register_backbone",
    "copy_as_frozen", "cosine_momentum", "ema_update",
    "prediction_mlp", "projection_mlp",
]
