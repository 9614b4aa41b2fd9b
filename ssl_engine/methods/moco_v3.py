"""MoCo v3 (Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision Transformers",
ICCV 2021).

MoCo without a queue: the keys of the current batch are the negatives. A base encoder
(backbone, projector) and a predictor make the queries q; a momentum encoder, an EMA of the
base encoder whose momentum rises from `base_momentum` to 1 on a cosine, makes the keys k.
Each view's query is contrasted with the other view's keys of the whole (global) batch:

    ctr(q, k) = CrossEntropy(q k^T / T, positives on the diagonal) * 2T     (losses.moco_v3_contrastive)
    loss      = ctr(q1, k2) + ctr(q2, k1)

The factor 2T is the reference code's; it makes the gradient's scale independent of T.
The heads follow the backbone as the code's builder.py does: on a ViT (MoCo_ViT) a 3-layer
projector and a 2-layer predictor, both ending in a BatchNorm without affine parameters; on a
ResNet or any other CNN (MoCo_ResNet) a 2-layer projector with that last BatchNorm and a 2-layer
predictor without one. No Linear has a bias. The code's AdamW (the ViT recipe, the default here)
decays every parameter, biases and norm layers included; its LARS (the ResNet recipe) leaves
out every 1-d parameter, i.e. `optim.decay_exclusions=bias_and_norm` with `optim.name=lars`.
For ViTs the paper keeps the patch projection at its random initialisation (section 4.2):
training is then stable at learning rates where a learnt projection makes the accuracy dip. Its
ViTs' position embeddings are fixed 2-D sin-cos (its code's vits.py), and so are they here.

The negatives are its safeguard, as for every contrastive method: `negatives` false scores each
query against its own key alone, `losses.positive_alignment(q, k, T) * 2T` (ctr's positive logit at
the same scale). That is BYOL's loss with MoCo v3's heads: its predictor and momentum encoder,
BYOL's own safeguards, remain, so this switch alone need not collapse it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import losses
from ..distributed import gather_no_grad, rank
from ..models.ema import MomentumTargets
from ..models.heads import projection_mlp
from ..params import hyper
from .base import Method, StepOutput, register
from ..recipes import QUICK_COLOUR, QUICK_LARS, SOLO_ASYMMETRIC, SOLO_LEARN, Setting, solo_learn_lars
from ..safeguards import NEGATIVES, NEGATIVES_HELP


@dataclass
class MoCoV3Params:
    # The ViT recipe: T = 0.2 (the ResNet recipe and the code's default use 1.0).
    temperature: float = hyper(0.2, gt=0, le=10, help="softmax temperature (paper: 0.2 for ViT, 1.0 for ResNet)")
    projection_dim: int = hyper(256, ge=2, le=65536, help="output size of the projector and predictor")
    hidden_dim: int = hyper(4096, ge=2, le=65536, help="hidden size of the projector and predictor")
    projector_layers: int = hyper(0, ge=0, le=5, help="projector depth (0: the code's, 3 on a ViT and 2 on a CNN)")
    base_momentum: float = hyper(0.99, ge=0, le=1, help="momentum encoder's EMA momentum at the start; it rises to 1 on a cosine")
    random_patch_projection: bool = hyper(True, help="ViT only: freeze the patch projection at its random initialisation (the paper's stability fix)")
    negatives: bool = hyper(True, help=NEGATIVES_HELP)


@register
class MoCoV3(Method):
    name = "moco_v3"
    family = "contrastive"
    summary = "a query predicts a momentum encoder's key among the batch's other keys, no queue"
    paper = "Chen, Xie, He, ICCV 2021"
    objective = ('L = 2τ · [CE(q₁k₂ᵀ/τ, i) + CE(q₂k₁ᵀ/τ, i)]: a query q (online, with predictor) finds its own key '
                 "k (momentum encoder) among the batch's")
    Params = MoCoV3Params
    augment_preset = "byol"  # the paper uses BYOL's augmentations
    # solo-learn's CIFAR recipe (ResNet-18; the paper's CIFAR results are ViT transfers)
    small_recipe = (
        *solo_learn_lars("mocov3", 0.3, 1e-6, "CIFAR-10 93.10, CIFAR-100 68.83 linear"),
        Setting("method.hidden_dim", 4096, f"{SOLO_LEARN.format('mocov3')}: proj_hidden_dim and pred_hidden_dim 4096"),
        Setting("method.projection_dim", 256, f"{SOLO_LEARN.format('mocov3')}: proj_output_dim 256"),
        Setting("method.temperature", 0.2, f"{SOLO_LEARN.format('mocov3')}: temperature 0.2"),
        Setting("method.base_momentum", 0.99, f"{SOLO_LEARN.format('mocov3')}: momentum.base_tau 0.99"),
        *SOLO_ASYMMETRIC,
    )
    quick_recipe = (
        *QUICK_LARS,
        *QUICK_COLOUR,
    )
    safeguard = NEGATIVES
    position_embedding = "sincos"
    # The ViT recipe (CONFIG.md): AdamW at 1.5e-4 x batch/256, weight decay 0.1 on every parameter
    # (main_moco.py), 40 warm-up epochs. The ResNet recipe is LARS at 0.6 (0.3 for long runs),
    # weight decay 1e-6, 10 epochs, with no decay or adaptation on 1-d parameters (moco/optimizer.py).
    optim_defaults = {"name": "adamw", "lr": 1.5e-4, "weight_decay": 0.1, "momentum": 0.9, "warmup_epochs": 40.0,
                      "decay_exclusions": "none"}

    def __init__(self, backbone, params: MoCoV3Params, total_steps: int):
        super().__init__(backbone, params, total_steps)
        # Every Linear without bias; a last BatchNorm without affine in the projector, and in the
        # predictor on a ViT only (builder.py's MoCo_ViT and MoCo_ResNet).
        is_vit = hasattr(backbone, "patch_embed")
        self.projector = projection_mlp(backbone.feature_dim, params.hidden_dim, params.projection_dim,
                                        num_layers=params.projector_layers or (3 if is_vit else 2),
                                        last_batch_norm=True, last_bn_affine=False, bias=False)
        self.predictor = projection_mlp(params.projection_dim, params.hidden_dim, params.projection_dim,
                                        num_layers=2, last_batch_norm=is_vit, last_bn_affine=False, bias=False)
        if params.random_patch_projection and is_vit:
            backbone.patch_embed.requires_grad_(False)
        self.ema = MomentumTargets(params.base_momentum)  # a cosine to 1
        self.momentum_backbone = self.ema.copy(self.backbone)
        self.momentum_projector = self.ema.copy(self.projector)

    def forward(self, views, step, indices=None):
        x1, x2 = views[:2]
        z1, z2 = self.projector(self.backbone(x1)), self.projector(self.backbone(x2))
        q1, q2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            k1 = gather_no_grad(self.momentum_projector(self.momentum_backbone(x1)))
            k2 = gather_no_grad(self.momentum_projector(self.momentum_backbone(x2)))
        offset = rank() * len(x1)
        temperature = self.params.temperature
        if self.params.negatives:
            loss = (losses.moco_v3_contrastive(q1, k2, temperature, offset)
                    + losses.moco_v3_contrastive(q2, k1, temperature, offset))
        else:  # each query's own key, this process's rows of the gathered keys
            own = slice(offset, offset + len(x1))
            loss = 2 * temperature * (losses.positive_alignment(q1, k2[own], temperature)
                                      + losses.positive_alignment(q2, k1[own], temperature))
        momentum = torch.tensor(self.ema.momentum(step, self.total_steps))
        return StepOutput(loss, {"contrastive": loss.detach(), "momentum": momentum}, (z1.detach(), z2.detach()))

    @torch.no_grad()
    def after_optimizer_step(self, step):
        self.ema.update(step, self.total_steps)

    def parameter_groups(self):
        modules = (self.backbone, self.projector, self.predictor)
        return [{"params": [p for m in modules for p in m.parameters() if p.requires_grad]}]
