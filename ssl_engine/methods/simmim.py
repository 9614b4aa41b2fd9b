"""SimMIM (Xie et al., "SimMIM: A Simple Framework for Masked Image Modeling", CVPR 2022).

Replace a random 60% of each image's patches by a learnt mask token at the encoder's input (the
encoder sees every position, hidden or not); a one-layer head maps each output patch token to
its patch's raw pixels, and the loss is their L1 distance to the input's, on the hidden pixels
only. With x_i the (normalised) pixels of patch i, m_i = 1 for a hidden patch, x^_i = W h_i + b
the prediction from the patch's output token h_i,

    loss = sum_i m_i ||x^_i - x_i||_1 / D  /  sum_i m_i          (losses.masked_pixel_l1)

The SimMIM code can also standardise each target pixel by the mean and variance of the pixels in
a window around it (its NORM_TARGET, a 47 px window at 192 px; off in the paper's
configurations): `norm_target_window`, off by default. Only the target changes; the input stays.

The paper masks squares of 32 px (2 x 2 patches of ViT-B/16 at 224 px): `mask_patch_size`. On
small images a 32 px square is the whole image, so the default hides single ViT patches (the
mask patch is the ViT patch). Augmentation: one crop (0.67-1, aspect 3/4-4/3) and flip, preset
"simmim". The head is dropped after pre-training: evaluation averages the encoder's patch tokens.
The encoder is the shared ViT with the SimMIM code's choices for ViTs: a relative position bias
shared by its blocks instead of absolute position embeddings, and LayerScale from 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..errors import ConfigError, Problem
from ..masking import RandomPatches
from ..models.vit import patchify, unpatchify
from ..params import hyper
from .base import StepOutput, register
from .masked import MaskedMethod
from ..recipes import NO_SMALL_RECIPE, QUICK_MASKED_LR, QUICK_VIT, Setting


@dataclass
class SimMIMParams:
    mask_ratio: float = hyper(0.6, gt=0, lt=1, help="share of each image's patches replaced by the mask token (0.6 in the paper)")
    mask_patch_size: int = hyper(0, ge=0, le=256, help="side of the masked squares in pixels, a multiple of the ViT patch "
                                                       "(32 at 224 px in the paper; 0: the ViT patch, for small images)")
    norm_target_window: int = hyper(0, ge=0, le=255, help="odd side in pixels of the window whose mean and variance standardise each "
                                                          "target pixel (the code's NORM_TARGET: 47 at 192 px; 0: raw pixels, as in the paper)")


@register
class SimMIM(MaskedMethod):
    name = "simmim"
    family = "masked image modelling"
    summary = "mask tokens replace 60% of the patches; a linear head predicts their raw pixels (L1)"
    paper = "Xie et al., CVPR 2022"
    objective = ('L = mean over masked pixels of |x̂ − x|: mask tokens in place of the hidden patches, a linear '
                 'head predicts their pixels')
    Params = SimMIMParams
    backbones = ("vit_tiny", "vit_small")
    uses_mask_token = True
    # the paper evaluates average-pooled patch tokens (its head is per patch; the class token is untrained)
    vit_features = "mean_patch"
    # the SimMIM code's ViT: a relative position bias shared by the blocks instead of absolute
    # embeddings (USE_APE False, USE_SHARED_RPB True), and LayerScale from 0.1 (INIT_VALUES)
    position_embedding = "relative"
    layer_scale = "on"
    augment_preset = "simmim"
    small_recipe = (
        Setting("backbone.patch_size", 4, NO_SMALL_RECIPE.format("SimMIM") + "; 4 px patches, as solo-learn's ViTs on CIFAR (mae.yaml)"),
    )
    quick_recipe = (
        *QUICK_VIT,
        Setting("optim.lr", 1e-3, QUICK_MASKED_LR),
        Setting("backbone.position_embedding", "sincos", "quick: at 13 epochs on shapes kNN 0.157 (random 0.137) with sin-cos against 0.130 (0.124) with the relative bias, which starts at zero"),
        Setting("backbone.layer_scale", "off", "quick: LayerScale from 0.1 slows a short run (kNN 0.125 against 0.130 without)"),
        Setting("method.norm_target_window", 7, "quick: targets standardised in 7 px windows: kNN 0.173 against 0.157 with raw pixels (mostly hue and background) at 13 epochs on shapes"),
    )
    matrix_names = ()
    # The ViT-B configuration of the SimMIM code: AdamW (betas 0.9, 0.999), BASE_LR 1e-4 per 512
    # images (so 5e-5 per 256; 4e-4 at its batch of 2048), weight decay 0.05, 10 warm-up epochs,
    # gradients clipped at 5 (the code's default). The paper's 8e-4 is for Swin-B at batch 2048
    # (the code's 2e-4 per 512). The ViT run decays the rate tenfold for its last 100 of 800
    # epochs; here the engine's cosine, to the Swin configuration's MIN_LR / BASE_LR = 0.05.
    optim_defaults = {"name": "adamw", "lr": 5e-5, "weight_decay": 0.05, "momentum": 0.9,
                      "warmup_epochs": 10.0, "min_lr_ratio": 0.05, "grad_clip": 5.0}

    def __init__(self, backbone, params: SimMIMParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        size = params.mask_patch_size or backbone.patch_size
        if size % backbone.patch_size or (backbone.grid * backbone.patch_size) % size:
            raise ConfigError([Problem("method.mask_patch_size", f"({size}) must be a multiple of backbone.patch_size "
                               f"({backbone.patch_size}) and divide the image size ({backbone.grid * backbone.patch_size})")])
        self.patches_per_mask_side = size // backbone.patch_size
        window = params.norm_target_window
        if window and (window % 2 == 0 or window < 3):
            raise ConfigError([Problem("method.norm_target_window", f"must be 0 (off) or odd and at least 3 (a window "
                               f"centred on its pixel), got {window}")])
        # the paper's one-layer prediction head (a 1 x 1 convolution over the patch tokens)
        self.head = nn.Linear(backbone.dim, backbone.patch_size ** 2 * 3)
        self.seed_masks()

    def mask_strategy(self):
        """`mask_ratio` of the mask squares, each covering patches_per_mask_side^2 patches (the
        code's MaskGenerator, upscaled to the patch grid)."""
        return RandomPatches(self.params.mask_ratio, square=self.patches_per_mask_side)

    def masked_loss(self, images: Tensor, mask: Tensor) -> Tensor:
        target = patchify(self._target(images), self.backbone.patch_size)
        return losses.masked_pixel_l1(self.predict_masked(images, mask), target, mask)

    def forward(self, views, step, indices=None):
        images = views[0]
        loss = self.masked_loss(images, self.step_masks(images, step))
        return StepOutput(loss, {"reconstruction": loss.detach()})

    def _target(self, images: Tensor) -> Tensor:
        """What the head predicts: the images, or with `norm_target_window` their pixels
        standardised by their windows' statistics."""
        window = self.params.norm_target_window
        if not window:
            return images
        mean, std = window_statistics(images, window)
        return (images - mean) / std

    @torch.no_grad()
    def pictures(self, images):
        """"mask" (N, 1, H, W), 1 on hidden patches, and "reconstruction" (N, 3, H, W): visible
        patches from the input, hidden ones as predicted (with `norm_target_window`, brought back
        to pixels with the true windows' mean and standard deviation, as MAE's demo does)."""
        mask = self.picture_masks(images)
        prediction = self.predict_masked(images, mask).float()
        if self.params.norm_target_window:
            mean, std = window_statistics(images.float(), self.params.norm_target_window)
            prediction = prediction * patchify(std, self.backbone.patch_size) + patchify(mean, self.backbone.patch_size)
        target = patchify(images.float(), self.backbone.patch_size)
        pasted = torch.where(mask.unsqueeze(-1), prediction, target)
        return {"mask": self.mask_picture(mask, images), "reconstruction": unpatchify(pasted, self.backbone.patch_size)}


def window_statistics(images: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Per pixel and channel, the mean and standard deviation of the `window` x `window` pixels
    around it (those inside the image; the variance unbiased, plus 1e-6 under the root), as the
    SimMIM code's target normalisation computes them. Both (N, C, H, W)."""
    pad = window // 2
    mean = F.avg_pool2d(images, window, stride=1, padding=pad, count_include_pad=False)
    mean_square = F.avg_pool2d(images.square(), window, stride=1, padding=pad, count_include_pad=False)
    inside = F.avg_pool2d(torch.ones_like(images[:1, :1]), window, stride=1, padding=pad,
                          count_include_pad=True) * window ** 2          # pixels of each window in the image
    variance = ((mean_square - mean.square()) * inside / (inside - 1)).clamp_min(0)
    return mean, (variance + 1e-6).sqrt()
