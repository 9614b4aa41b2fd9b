"""MaskFeat (Wei et al., "Masked Feature Prediction for Self-Supervised Visual Pre-Training", CVPR 2022).

Replace 40% of each image's patches, in blocks (BEiT's block-wise masking, the paper's choice
for images), by a learnt mask token at the encoder's input; a linear head maps each output patch
token to that patch's Histograms of Oriented Gradients, and the loss is the squared error on the
hidden patches only. With h_i the HOG of patch i (`ssl_engine.hog`: Sobel gradients per RGB
channel, 9 unsigned orientation bins, histograms over cells of half a patch side, each
L2-normalised, concatenated per patch), m_i = 1 for a hidden patch and h^_i = W t_i + b the
prediction from the patch's output token t_i,

    loss = sum_i m_i ||h^_i - h_i||^2 / D  /  sum_i m_i      (losses.masked_patch_mse, no target normalisation)

HOG is a hand-crafted feature: it keeps the local shape (edges and their orientation) and drops
what is easy to copy (colour, brightness), and its per-cell normalisation makes it unmoved by
contrast. Targets are computed on the encoder's (normalised) input: HOG does not change under a
per-channel affine map. The head is dropped after pre-training; evaluation averages the encoder's
patch tokens. Augmentation: one crop (0.5-1) and flip, preset "maskfeat".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import losses
from ..errors import ConfigError, Problem
from ..hog import default_cell_size, hog_feature_dim, hog_patch_targets, hog_picture
from ..masking import Blocks, RandomPatches
from ..models.vit import VisionTransformer
from ..params import hyper
from .base import StepOutput, register
from .masked import MaskedMethod
from ..recipes import NO_SMALL_RECIPE, QUICK_MASKED_LR, QUICK_VIT, Setting


@dataclass
class MaskFeatParams:
    # 0.4 block-wise: the paper's image setting and SlowFast's in1k_VIT_B_MaskFeat_PT (MASK_RATIO 0.4)
    mask_ratio: float = hyper(0.4, gt=0, lt=1, help="share of each image's patches replaced by the mask token (0.4 in the paper)")
    masking: str = hyper("block", choices=("block", "random"),
                         help="block: BEiT's block-wise masking (the paper's for images); random: patches uniformly at random")
    hog_bins: int = hyper(9, ge=2, le=36, help="HOG orientation bins over 0-180 degrees (9 in the paper)")
    hog_cell_size: int = hyper(0, ge=0, le=64, help="HOG cell side in pixels, dividing the ViT patch "
                                                    "(8 px in 16 px patches in the paper; 0: half the patch)")


@register
class MaskFeat(MaskedMethod):
    name = "maskfeat"
    family = "masked image modelling"
    summary = "mask tokens replace 40% of the patches, in blocks; a linear head predicts their HOG features"
    paper = "Wei et al., CVPR 2022"
    objective = ("L = mean over masked patches p of ‖ĥₚ − HOG(xₚ)‖²: a linear head predicts each hidden patch's "
                 'histogram of gradients')
    Params = MaskFeatParams
    backbones = ("vit_tiny", "vit_small")
    uses_mask_token = True
    # the paper's ViTs are evaluated on average-pooled patch tokens (the loss is per patch)
    vit_features = "mean_patch"
    augment_preset = "maskfeat"
    small_recipe = (
        Setting("backbone.patch_size", 4, NO_SMALL_RECIPE.format("MaskFeat") + "; 4 px patches, as solo-learn's ViTs on CIFAR (mae.yaml)"),
    )
    quick_recipe = (
        *QUICK_VIT,
        Setting("optim.lr", 1e-3, QUICK_MASKED_LR),
    )
    matrix_names = ()
    # SlowFast's in1k_VIT_B_MaskFeat_PT: AdamW (momentum 0.9), BASE_LR 2e-4 for its batch of 256
    # (the paper's table: 2e-3 at batch 2048, 2.5e-4 per 256), weight decay 0.05, 30 warm-up
    # epochs, cosine to 1e-6 (min_lr_ratio 1e-6 / 2e-4), gradients clipped at an L2 norm of 0.02.
    optim_defaults = {"name": "adamw", "lr": 2e-4, "weight_decay": 0.05, "momentum": 0.9,
                      "warmup_epochs": 30.0, "min_lr_ratio": 0.005, "grad_clip": 0.02}

    def __init__(self, backbone, params: MaskFeatParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        self.cell_size = params.hog_cell_size or default_cell_size(backbone.patch_size)
        if backbone.patch_size % self.cell_size:
            raise ConfigError([Problem("method.hog_cell_size", f"({self.cell_size}) must divide backbone.patch_size "
                               f"({backbone.patch_size})")])
        # a linear head from each patch token to its patch's HOG (the reference's separate head)
        self.head = nn.Linear(backbone.dim, hog_feature_dim(backbone.patch_size, bins=params.hog_bins,
                                                            cell_size=self.cell_size))
        VisionTransformer._init_weights(self.head)
        self.seed_masks()

    def mask_strategy(self):
        strategy = Blocks if self.params.masking == "block" else RandomPatches
        return strategy(self.params.mask_ratio)

    def _targets(self, images: Tensor) -> Tensor:
        return hog_patch_targets(images, self.backbone.patch_size, bins=self.params.hog_bins,
                                 cell_size=self.cell_size)

    def masked_loss(self, images: Tensor, mask: Tensor) -> Tensor:
        return losses.masked_patch_mse(self.predict_masked(images, mask), self._targets(images), mask,
                                       normalize_target=False)

    def forward(self, views, step, indices=None):
        images = views[0]
        loss = self.masked_loss(images, self.step_masks(images, step))
        return StepOutput(loss, {"hog mse": loss.detach()})

    @torch.no_grad()
    def pictures(self, images):
        """"mask" (N, 1, H, W), 1 on hidden patches; "target_hog" and "predicted_hog" (N, 1, H, W)
        in [0, 1], HOG drawn as glyphs (`hog.hog_picture`: in every cell a stroke along each
        orientation's edge direction, as bright as its histogram value): the targets of every
        patch, and the head's predictions on the hidden patches only (visible ones stay black)."""
        mask = self.picture_masks(images)
        prediction = torch.where(mask.unsqueeze(-1), self.predict_masked(images, mask).float(), 0.0)
        size = tuple(images.shape[-2:])

        def draw(hog: Tensor) -> Tensor:
            return hog_picture(hog, size, self.backbone.patch_size, bins=self.params.hog_bins, cell_size=self.cell_size)

        return {"mask": self.mask_picture(mask, images), "target_hog": draw(self._targets(images)),
                "predicted_hog": draw(prediction)}
