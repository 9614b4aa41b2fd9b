"""Backbones by name (timm style): an image encoder that returns pooled features.

    backbone = build_backbone("resnet18", image_size=32)    # CIFAR stem chosen automatically
    features = backbone(images)                              # (N, 3, H, W) -> (N, 512)

ResNets come from torchvision with random weights (nothing is ever downloaded) and their
classifier removed. Vision Transformers (`vit_tiny`, `vit_small`) live in vit.py. The "small stem" is the CIFAR variant of He et al. 2016 used by the
SimCLR and MoCo CIFAR-10 experiments: the 7x7 stride-2 first convolution becomes 3x3 stride 1
and the max-pool goes, so a 32 px image still reaches the last stage at 4x4 instead of 1x1.
Adding a backbone is one function decorated with `@register_backbone("name")`, taking the
keywords `small_stem`, `image_size` and `patch_size` (each uses what concerns it).
"""

from __future__ import annotations

from typing import Callable

import torch
import torchvision
from torch import nn

from ..errors import ConfigError, Problem
from .vit import VisionTransformer, build_vit


class Backbone(nn.Module):
    """An image encoder: (N, 3, H, W) float images in, (N, feature_dim) pooled features out.

    The network runs in channels-last memory format (weights converted here, each input batch
    in `forward`): about 30% faster convolutions on the CPU, and the layout tensor cores want.
    """

    def __init__(self, net: nn.Module, *, feature_dim: int, name: str, small_stem: bool):
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)
        self.feature_dim = feature_dim
        self.name = name
        self.small_stem = small_stem

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=torch.channels_last))


BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str):
    """Decorator: add a builder `(*, small_stem, image_size, patch_size) -> module` under `name`."""
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BACKBONES[name] = builder
        return builder
    return add


def backbone_names() -> list[str]:
    return list(BACKBONES)


def build_backbone(name: str, *, small_stem: bool | None = None, image_size: int = 32,
                   patch_size: int = 4, vit_depth: int = 12, position_embedding: str = "learnt",
                   layer_scale: float = 0.0) -> nn.Module:
    """A freshly initialised backbone with `feature_dim`, `name` and `small_stem` attributes.
    `small_stem=None` turns the small stem on for images <= 64 px (ResNets, small_cnn);
    `patch_size`, `vit_depth` (blocks), `position_embedding` ("learnt", "sincos" or "relative")
    and `layer_scale` (LayerScale's initial value, 0 for none) shape the ViTs."""
    if name not in BACKBONES:
        raise ConfigError([Problem("backbone.name", f"must be one of {', '.join(BACKBONES)}, got {name!r}")])
    if small_stem is None:
        small_stem = image_size <= 64
    return BACKBONES[name](small_stem=small_stem, image_size=image_size, patch_size=patch_size, depth=vit_depth,
                           position=position_embedding, layer_scale=layer_scale)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@register_backbone("small_cnn")
def small_cnn(*, small_stem: bool, **_) -> Backbone:
    """Four conv-BN-ReLU stages (32-64-128-256 channels), max-pool between them, global average pool.

    Built for quick CPU runs on 32-96 px images. With the small stem the first convolution
    keeps full resolution (a 32 px image is pooled at 4x4); without it the first convolution
    has stride 2, which keeps 64-96 px images cheap.
    """
    widths = (32, 64, 128, 256)
    layers: list[nn.Module] = [_conv_bn_relu(3, widths[0], stride=1 if small_stem else 2)]
    for in_channels, out_channels in zip(widths, widths[1:]):
        layers += [nn.MaxPool2d(2), _conv_bn_relu(in_channels, out_channels)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Backbone(nn.Sequential(*layers), feature_dim=widths[-1], name="small_cnn",
                    small_stem=small_stem)


def _resnet(name: str, small_stem: bool) -> Backbone:
    net = getattr(torchvision.models, name)(weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if small_stem:
        net.conv1 = nn.Conv2d(3, net.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    return Backbone(net, feature_dim=feature_dim, name=name, small_stem=small_stem)


@register_backbone("resnet18")
def resnet18(*, small_stem: bool, **_) -> Backbone:
    """ResNet-18 (He et al. 2016), 512 features."""
    return _resnet("resnet18", small_stem)


@register_backbone("resnet34")
def resnet34(*, small_stem: bool, **_) -> Backbone:
    """ResNet-34 (He et al. 2016), 512 features."""
    return _resnet("resnet34", small_stem)


@register_backbone("resnet50")
def resnet50(*, small_stem: bool, **_) -> Backbone:
    """ResNet-50 (He et al. 2016), bottleneck blocks, 2048 features."""
    return _resnet("resnet50", small_stem)


@register_backbone("vit_tiny")
def vit_tiny(*, image_size: int, patch_size: int, depth: int = 12, position: str = "learnt",
             layer_scale: float = 0.0, **_) -> VisionTransformer:
    """ViT-Tiny (DeiT widths): 192 wide, 3 heads, 12 blocks (or `depth`)."""
    return build_vit("vit_tiny", image_size, patch_size, depth, position, layer_scale)


@register_backbone("vit_small")
def vit_small(*, image_size: int, patch_size: int, depth: int = 12, position: str = "learnt",
              layer_scale: float = 0.0, **_) -> VisionTransformer:
    """ViT-Small: 384 wide, 6 heads, 12 blocks (or `depth`)."""
    return build_vit("vit_small", image_size, patch_size, depth, position, layer_scale)
