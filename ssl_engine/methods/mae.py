"""MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022).

Hide a random 75% of each image's patches; the encoder (the ViT being trained) sees only the
visible ones, with no mask tokens; a light decoder gets the encoded visible patches back in
place, a shared learnt mask token at every hidden patch and fixed 2-D sin-cos position
embeddings, and predicts each hidden patch's pixels. With x_i the pixels of patch i (normalised
by the patch's own mean and variance: `norm_pix_loss`, the paper's default), m_i = 1 for a
hidden patch and x^_i the prediction,

    loss = sum_i m_i ||x^_i - x_i||^2 / D  /  sum_i m_i          (losses.masked_patch_mse)

Only the hidden patches count. The decoder is dropped after pre-training: evaluation averages the
encoder's patch tokens on whole images, as the MAE code's fine-tuning does by default (its linear
probe reads the class token, `backbone.vit_features=class_token`). Augmentation: a single crop
(0.2-1) and flip, preset "mae".
The encoder is the shared ViT with fixed 2-D sin-cos position embeddings, as in the MAE code; the
decoder's are sin-cos too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import losses
from ..errors import ConfigError, Problem
from ..masking import RandomPatches, visible_indices
from ..models.vit import Block, patchify, sincos_position_embedding, unpatchify
from ..params import hyper
from .base import StepOutput, register
from .masked import MaskedMethod
from ..recipes import QUICK_MASKED_LR, QUICK_VIT, SOLO_LEARN, Setting


@dataclass
class MAEParams:
    mask_ratio: float = hyper(0.75, gt=0, lt=1, help="share of each image's patches hidden from the encoder (0.75 in the paper)")
    # The paper's decoder (512 wide, 8 blocks, 16 heads) is light next to ViT-L (1024 wide, 24
    # blocks) but would cost ~20 times a ViT-Tiny encoder's compute per step (all patches x 8
    # blocks at 512, against a quarter of them x 12 blocks at 192). 256 x 4 with 8 heads keeps the
    # paper's head width (32) and its light-decoder spirit; its table 1 gives 256 x 4 a few points
    # less linear accuracy than 512 x 8 and the same fine-tuning accuracy.
    decoder_dim: int = hyper(256, ge=8, le=4096, help="decoder width (512 in the paper; 256 suits ViT-Tiny and ViT-Small)")
    decoder_depth: int = hyper(4, ge=1, le=32, help="decoder transformer blocks (8 in the paper)")
    decoder_heads: int = hyper(8, ge=1, le=64, help="decoder attention heads, dividing its width (16 in the paper, at width 512)")
    norm_pix_loss: bool = hyper(True, help="predict each patch's pixels normalised by the patch's mean and variance (on in the paper)")


class MAEDecoder(nn.Module):
    """Encoded visible patches (N, 1 + K, encoder width) and their indices (N, K) ->
    predicted pixels of every patch (N, P, patch_size^2 * 3)."""

    def __init__(self, encoder_dim: int, params: MAEParams, patch_size: int, grid: int):
        super().__init__()
        if params.decoder_dim % params.decoder_heads:
            raise ConfigError([Problem("method.decoder_heads", f"({params.decoder_heads}) must divide "
                               f"method.decoder_dim ({params.decoder_dim})")])
        dim = params.decoder_dim
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("position", sincos_position_embedding(dim, grid), persistent=False)
        self.blocks = nn.ModuleList(Block(dim, params.decoder_heads) for _ in range(params.decoder_depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.predict = nn.Linear(dim, patch_size ** 2 * 3)
        # the MAE code's initialisation: mask token normal(0.02), Linear xavier-uniform, zero bias
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, encoded: Tensor, visible: Tensor, num_patches: int) -> Tensor:
        x = self.embed(encoded)
        n, dim = len(x), x.shape[-1]
        patches = self.mask_token.to(x.dtype).expand(n, num_patches, dim).clone()
        patches.scatter_(1, visible.unsqueeze(-1).expand(-1, -1, dim), x[:, 1:])   # back in place
        grid = math.isqrt(num_patches)
        position = self.position if self.position.shape[1] == 1 + num_patches else \
            sincos_position_embedding(dim, grid).to(x.device)
        x = torch.cat([x[:, :1], patches], dim=1) + position.to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.predict(self.norm(x))[:, 1:]                 # drop the class token


@register
class MAE(MaskedMethod):
    name = "mae"
    family = "masked image modelling"
    summary = "hide 75% of the patches; the encoder sees the rest and a light decoder predicts the hidden pixels"
    paper = "He et al., CVPR 2022"
    objective = ('L = mean over masked patches p of ‖x̂ₚ − norm(xₚ)‖²: the encoder sees only the visible patches, a '
                 'light decoder predicts the hidden')
    Params = MAEParams
    backbones = ("vit_tiny", "vit_small")
    augment_preset = "mae"
    # solo-learn's CIFAR recipe: ViT-Small with 4 px patches, an 8-block decoder of width 512,
    # AdamW at 2e-4 per 256 (betas 0.9, 0.95), weight decay 0.05, crop 0.08-1 and a flip
    small_recipe = (
        Setting("backbone.name", "vit_small", f"{SOLO_LEARN.format('mae')}: backbone vit_small"),
        Setting("backbone.patch_size", 4, f"{SOLO_LEARN.format('mae')}: patch_size 4"),
        Setting("optim.lr", 2e-4, f"{SOLO_LEARN.format('mae')}: optimizer.lr, per 256 images"),
        Setting("optim.weight_decay", 0.05, f"{SOLO_LEARN.format('mae')}: weight_decay 0.05"),
        Setting("optim.warmup_epochs", 10.0, "solo-learn's scheduler.warmup_epochs default (10)"),
        Setting("train.batch_size", 256, f"{SOLO_LEARN.format('mae')}: batch_size 256"),
        Setting("method.decoder_dim", 512, f"{SOLO_LEARN.format('mae')}: decoder_embed_dim 512"),
        Setting("method.decoder_depth", 8, f"{SOLO_LEARN.format('mae')}: decoder_depth 8"),
        Setting("method.decoder_heads", 16, f"{SOLO_LEARN.format('mae')}: decoder_num_heads 16"),
        Setting("augment.crop_scale_min", 0.08, f"{SOLO_LEARN.format('augmentations/reconstruction')}: rrc.crop_min_scale"),
    )
    quick_recipe = (
        *QUICK_VIT,
        Setting("optim.lr", 1.5e-3, QUICK_MASKED_LR),
        Setting("method.decoder_dim", 128, "quick: a light decoder, which at 8 blocks of 512 costs more than the encoder"),
        Setting("method.decoder_depth", 2, "quick: a light decoder"),
        Setting("method.decoder_heads", 4, "quick: a light decoder"),
    )
    position_embedding = "sincos"  # the MAE code's encoder and decoder both fix them
    # The class token is a dummy here: nothing but the decoder's attention trains it (the paper:
    # MAE "works similarly well without it (with average pooling)"). After 5 CPU minutes on
    # `shapes` its kNN stays at its random initialisation's while the mean patch token's rises.
    vit_features = "mean_patch"
    matrix_names = ()
    # The paper's pre-training (appendix A.1): AdamW, base lr 1.5e-4 per 256 images, weight decay
    # 0.05, 40 warm-up epochs, cosine decay to 0, no gradient clipping. Its betas are (0.9, 0.95).
    optim_defaults = {"name": "adamw", "lr": 1.5e-4, "weight_decay": 0.05, "momentum": 0.9, "beta2": 0.95,
                      "warmup_epochs": 40.0, "min_lr_ratio": 0.0, "grad_clip": 0.0}

    def __init__(self, backbone, params: MAEParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        patches = backbone.grid ** 2
        if round(params.mask_ratio * patches) >= patches:
            raise ConfigError([Problem("method.mask_ratio", f"({params.mask_ratio:g}) hides all {patches} patches: "
                               f"the encoder needs at least one")])
        self.decoder = MAEDecoder(backbone.dim, params, backbone.patch_size, backbone.grid)
        self.seed_masks()

    def mask_strategy(self):
        return RandomPatches(self.params.mask_ratio)

    def _reconstruct(self, images: Tensor, mask: Tensor) -> Tensor:
        """Predicted pixels of every patch, (N, P, patch_size^2 * 3), the encoder seeing only
        the patches where `mask` is False."""
        visible = visible_indices(mask)
        encoded = self.backbone.tokens(images, keep=visible)
        return self.decoder(encoded, visible, mask.shape[1])

    def masked_loss(self, images: Tensor, mask: Tensor) -> Tensor:
        target = patchify(images, self.backbone.patch_size)
        return losses.masked_patch_mse(self._reconstruct(images, mask), target, mask, self.params.norm_pix_loss)

    def forward(self, views, step, indices=None):
        images = views[0]
        loss = self.masked_loss(images, self.step_masks(images, step))
        return StepOutput(loss, {"reconstruction": loss.detach()})

    @torch.no_grad()
    def pictures(self, images):
        """"mask" (N, 1, H, W), 1 on hidden patches, and "reconstruction" (N, 3, H, W): visible
        patches from the input, hidden ones from the prediction (with `norm_pix_loss`, brought back
        to pixels with each true patch's mean and standard deviation, as the MAE demo does)."""
        mask = self.picture_masks(images)
        prediction = self._reconstruct(images, mask).float()
        target = patchify(images.float(), self.backbone.patch_size)
        if self.params.norm_pix_loss:
            mean, std = losses.patch_mean_std(target)
            prediction = prediction * std + mean
        pasted = torch.where(mask.unsqueeze(-1), prediction, target)
        return {"mask": self.mask_picture(mask, images), "reconstruction": unpatchify(pasted, self.backbone.patch_size)}
