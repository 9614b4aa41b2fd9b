"""iBOT (Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022).

DINO plus masked image modelling, with the teacher as an online tokenizer. Student and teacher
are ViTs with a DINO head applied to every output token; the teacher is an EMA of the student
and sees the global views whole. The student sees the global views with some patches replaced by
its mask token (BEiT's block-wise masking), and the local views (multi-crop) whole. Two losses:

    L_cls   = DINO's loss on the class tokens: each teacher global view against every other
              student view, global and local                              (losses.dino_loss)
    L_patch = on the masked patches of each global view v, the cross-entropy between the
              teacher's centred, sharpened patch distribution and the student's:
              P_t = softmax((t_vp - center_patch) / teacher_patch_temp), P_s = softmax(s_vp / student_temp)
              mean over the masked patches of each image, then images, then views
                                                                            (losses.ibot_patch_loss)
    loss    = lambda1 L_cls + lambda2 L_patch

The patch tokens thus learn to predict, for a hidden patch, what the teacher's head makes of the
visible one: the teacher is the tokenizer, learnt online. Each output has its own centre (an EMA
of the teacher's mean output: over the batch for the class token, over patches and batch for
the patches) and its own teacher temperature, both warmed up linearly over the first epochs
(class 0.04 -> teacher_temp, patch 0.04 -> 0.07, as in the code). As for ViT-S/B in the paper,
one head serves both (`shared_head`); unshared, the patches get their own last layer on the shared
MLP, as in the code's iBOTHead (the teacher then mirrors the student; the code's teacher keeps a
shared head by default).

Masks, as the code's defaults for ViT-S/B (pred_ratio 0 0.3, pred_ratio_var 0 0.2): each global
view of each image is left whole with probability 0.5 (`mask_probability`), and otherwise a ratio
r uniform in [0.1, 0.5] of its patches is masked in blocks (`masking.SometimesBlocks`), with the
code's smallest block, max(1, (grid // 3)^2) patches; exactly round(r * grid^2) patches, where the
code stops at the first count at or above r * grid^2. Masks are drawn per step for the whole
global batch from a seeded generator, so a resumed run and N processes mask alike. The app's "mask" picture is a first global view's mask
(about half the images are left whole).

Everything else is DINO's (this class extends `dino.DINO`): the head, the EMA teacher with its
cosine momentum, the frozen last layer(s) in the first epoch, the teacher prototype usage for the
app, and its safeguard, centring and sharpening, which `centering` and `sharpening` switch off for
the patch tokens' teacher as for the class token's. Its weight decay rises 0.04 -> 0.4 on a cosine, as in the code. Not here: the code's drop path
0.1 in the student; the code's multi-crop for ViT-S (10 local
views, global crops 0.25-1, local 0.05-0.25) is replaced by DINO's preset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..distributed import all_reduce_mean
from ..errors import ConfigError, Problem
from ..masking import SometimesBlocks
from ..params import hyper
from .base import features_by_resolution, register
from .masked import MaskedMethod
from ..recipes import NO_SMALL_RECIPE, QUICK_COLOUR, QUICK_LOCAL_VIEWS, QUICK_MOMENTUM, QUICK_VIT, Setting
from .dino import DINO, DINOHead, DINOParams, DINOStepOutput, global_view_count, weight_normalised_layer


class IBOTHead(DINOHead):
    """DINO's head over every token: (N, D) features -> (N, out_dim) as DINOHead; (N, 1 + P, D)
    tokens -> the class token's (N, out_dim) and the patches' (N, P, patch_out_dim) outputs, the
    patches through the same MLP and the same last layer (`shared`) or their own last layer."""

    def __init__(self, in_dim: int, out_dim: int, patch_out_dim: int, hidden_dim: int, bottleneck_dim: int,
                 norm_last_layer: bool, shared: bool):
        super().__init__(in_dim, out_dim, hidden_dim, bottleneck_dim, norm_last_layer)
        self.patch_last_layer = None if shared else weight_normalised_layer(bottleneck_dim, patch_out_dim,
                                                                            norm_last_layer)

    def forward(self, features: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if features.dim() == 2:
            return super().forward(features)
        bottleneck = self.bottleneck(features)
        patch_layer = self.last_layer if self.patch_last_layer is None else self.patch_last_layer
        return self.last_layer(bottleneck[:, 0]), patch_layer(bottleneck[:, 1:])


@dataclass
class IBOTParams(DINOParams):
    # the README's ViT-S/16 command: --out_dim 8192 --shared_head true --norm_last_layer false --teacher_temp 0.07
    out_dim: int = hyper(8192, ge=2, le=262144, help="outputs (prototypes) of the head for the class token (paper: 8192)")
    norm_last_layer: bool = hyper(False, help="fix the norm of the last layer's weights (the paper: off for ViT-S, on for ViT-B)")
    teacher_temp: float = hyper(0.07, gt=0, le=10, help="temperature of the teacher's class-token softmax after the warm-up")
    patch_out_dim: int = hyper(8192, ge=2, le=262144, help="outputs of the patch head when not shared (paper: 8192)")
    shared_head: bool = hyper(True, help="one head for the class and patch tokens (the paper's choice for ViT-S/B)")
    warmup_teacher_patch_temp: float = hyper(0.04, gt=0, le=10, help="teacher temperature of the patches at the first epoch")
    teacher_patch_temp: float = hyper(0.07, gt=0, le=10, help="teacher temperature of the patches after the warm-up")
    mask_probability: float = hyper(0.5, ge=0, le=1, help="probability that a global view is masked at all (0.5 in the code)")
    mask_ratio_min: float = hyper(0.1, ge=0, lt=1, help="smallest share of a masked view's patches hidden (0.3 - 0.2 in the code)")
    mask_ratio_max: float = hyper(0.5, ge=0, lt=1, help="largest share of a masked view's patches hidden (0.3 + 0.2 in the code)")
    lambda1: float = hyper(1.0, ge=0, le=100, help="weight of the class-token (DINO) loss")
    lambda2: float = hyper(1.0, ge=0, le=100, help="weight of the masked patch-token loss")


@register
class IBOT(DINO, MaskedMethod):
    name = "ibot"
    family = "hybrid"
    summary = "DINO on the class token plus masked patch tokens distilled from the EMA teacher, the online tokenizer"
    paper = "Zhou et al., ICLR 2022"
    objective = ("L = DINO's loss on the class tokens + Σ over masked patches −softmax(tₚ/τₜ) · log softmax(sₚ/τₛ), "
                 'patch targets from the EMA teacher')
    Params = IBOTParams
    backbones = ("vit_tiny", "vit_small")
    uses_mask_token = True
    augment_preset = "dino"
    small_recipe = (
        Setting("backbone.patch_size", 4, NO_SMALL_RECIPE.format("iBOT") + "; 4 px patches, as solo-learn's ViTs on CIFAR (mae.yaml)"),
    )
    quick_recipe = (
        *QUICK_VIT,
        *QUICK_COLOUR,
        QUICK_LOCAL_VIEWS,
        QUICK_MOMENTUM,
        Setting("method.out_dim", 1024, "quick: the head runs on every patch token of both global views, in student and teacher; at 8192 outputs it is most of a CPU step (1 epoch in 5 minutes, 4 with 1024 and 512)"),
        Setting("method.hidden_dim", 512, "quick: a narrower head on every patch token"),
    )
    # The code's defaults, as DINO's (main_ibot.py, utils.py): AdamW at 5e-4 x batch/256, 10
    # warm-up epochs, cosine to min_lr 1e-6 (1/500 of 5e-4), weight decay from 0.04 to 0.4 on a
    # cosine and none on biases and norm layers (get_params_groups), each parameter's gradient
    # clipped at a norm of 3 on its own (clip_gradients).
    optim_defaults = {"name": "adamw", "lr": 5e-4, "weight_decay": 0.04, "weight_decay_schedule": "cosine",
                      "weight_decay_end": 0.4, "momentum": 0.9, "warmup_epochs": 10.0,
                      "min_lr_ratio": 1e-6 / 5e-4, "grad_clip": 3.0, "grad_clip_mode": "per_parameter",
                      "decay_exclusions": "bias_and_norm"}

    def __init__(self, backbone, params: IBOTParams, total_steps: int):
        if params.mask_ratio_min > params.mask_ratio_max:
            raise ConfigError([Problem("method.mask_ratio_min", f"({params.mask_ratio_min:g}) must be at most "
                               f"method.mask_ratio_max ({params.mask_ratio_max:g})")])
        super().__init__(backbone, params, total_steps)
        patch_dim = params.out_dim if params.shared_head else params.patch_out_dim
        self.register_buffer("patch_center", torch.zeros(1, patch_dim))
        self.seed_masks()

    def build_head(self, in_dim: int, params: IBOTParams) -> nn.Module:
        return IBOTHead(in_dim, params.out_dim, params.patch_out_dim, params.hidden_dim, params.bottleneck_dim,
                        params.norm_last_layer, params.shared_head)

    def teacher_patch_temperature(self) -> float:
        return self._warmed_up(self.params.warmup_teacher_patch_temp, self.params.teacher_patch_temp)

    def mask_strategy(self):
        p = self.params
        return SometimesBlocks(p.mask_probability, p.mask_ratio_min, p.mask_ratio_max)

    # No masked_loss (so no held_out_loss): the loss compares two global views, and forward moves
    # the patch centre (and DINO's class centre) as it computes it.
    def forward(self, views, step, indices=None):
        global_count = global_view_count(views)
        global_views = torch.cat(views[:global_count])
        masks = self.step_masks(views[0], step, views=global_count)
        student_cls, student_patches = self.head(self.backbone.tokens(global_views, mask=masks))
        student_logits = list(student_cls.chunk(global_count))
        local_views = views[global_count:]
        if local_views:  # the local views are not masked: their class tokens only
            local_features = torch.cat(features_by_resolution(self.backbone, local_views))
            student_logits += list(self.head(local_features).chunk(len(local_views)))
        with torch.no_grad():
            teacher_cls, teacher_patches = self.teacher_head(self.teacher_backbone.tokens(global_views))
        class_loss, terms, assignments = self._class_token_loss(student_logits, list(teacher_cls.chunk(global_count)))
        patch_temperature = self.teacher_patch_temperature()
        patch_loss = losses.ibot_patch_loss(list(student_patches.chunk(global_count)),
                                            list(teacher_patches.chunk(global_count)),
                                            self.used_center(self.patch_center), list(masks.chunk(global_count)),
                                            self.params.student_temp, patch_temperature)
        # the code's two centre momenta are both 0.9: one hyperparameter serves both
        self.update_used_center(self.patch_center, teacher_patches.detach())
        loss = self.params.lambda1 * class_loss + self.params.lambda2 * patch_loss
        terms.update({"class loss": class_loss.detach(), "patch loss": patch_loss.detach(),
                      "patch teacher temperature": torch.tensor(patch_temperature),
                      "patch center norm": self.patch_center.norm(), "masked share": all_reduce_mean(masks.float().mean())})
        embeddings = (student_logits[0].detach(), student_logits[1].detach()) if len(views) > 1 else None
        return DINOStepOutput(loss, terms, embeddings, teacher_assignments=assignments)
