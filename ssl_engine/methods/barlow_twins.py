"""Barlow Twins (Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", ICML 2021).

The cross-correlation matrix of the two views' standardised embeddings is pushed towards the
identity: its diagonal to 1 (invariance), the rest to 0 (no redundancy between dimensions).

The off-diagonal term is its safeguard: the standardisation keeps every dimension's variance at
1, so the embeddings cannot shrink to a point, but with `lambd` 0 nothing stops the dimensions
from all carrying the same feature, and the representation collapses onto a few directions
(a dimensional collapse).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import losses
from ..distributed import gather_with_grad
from ..models.heads import projection_mlp
from ..params import hyper
from .base import Method, StepOutput, register
from ..recipes import QUICK_COLOUR, QUICK_LARS, SOLO_ASYMMETRIC, SOLO_LEARN, Setting, solo_learn_lars
from ..safeguards import Safeguard


@dataclass
class BarlowTwinsParams:
    lambd: float = hyper(0.0051, ge=0, le=10, help="weight of the off-diagonal (redundancy) term, about 1/d for a d-wide "
                        "projector; 0 removes what keeps the dimensions apart, and they collapse into a few")
    projection_dim: int = hyper(8192, ge=2, le=65536, help="width of every projector layer (8192 in the paper; 1024-2048 run much faster on a CPU)")
    projector_layers: int = hyper(3, ge=1, le=6, help="layers of the projector")


@register
class BarlowTwins(Method):
    name = "barlow_twins"
    family = "redundancy reduction"
    summary = "drive the two views' cross-correlation matrix to the identity"
    paper = "Zbontar et al., ICML 2021"
    objective = ("L = Σᵢ (1 − Cᵢᵢ)² + λ Σᵢ Σⱼ≠ᵢ Cᵢⱼ²: C the cross-correlation matrix of the two views' "
                 'batch-normalised embeddings')
    Params = BarlowTwinsParams
    augment_preset = "barlow_twins"
    # solo-learn's CIFAR recipe: a 2048-wide projector (its scale_loss 0.1 is left out: with
    # LARS a constant factor on the loss changes only the balance against weight decay)
    small_recipe = (
        *solo_learn_lars("barlow", 0.3, 1e-4, "CIFAR-10 92.10, CIFAR-100 70.90 linear"),
        Setting("method.projection_dim", 2048, f"{SOLO_LEARN.format('barlow')}: proj_hidden_dim and proj_output_dim 2048"),
        Setting("method.lambd", 0.0051, f"{SOLO_LEARN.format('barlow')}: lamb's default 0.0051"),
        *SOLO_ASYMMETRIC,
    )
    quick_recipe = (
        *QUICK_LARS,
        *QUICK_COLOUR,
        Setting("train.batch_size", 128, "quick: more, smaller steps in a short run"),
        Setting("method.projection_dim", 1024, "quick: a narrower projector leaves the time to the backbone"),
    )
    safeguard = Safeguard(
        name="the off-diagonal term",
        keeps="Pushing the cross-correlation's off-diagonal to 0 makes each dimension carry a different feature; "
              "without it every dimension can learn the same one and the representation collapses onto a few directions.",
        removed=(Setting("method.lambd", 0.0, "Barlow Twins with its redundancy reduction term weighted 0"),),
    )
    matrix_names = ("cross-correlation", "similarity")
    # LARS at 0.2 x batch/256, weight decay 1.5e-6, 10 warm-up epochs, then a cosine to 0.001 of
    # the peak (main.py's adjust_learning_rate: end_lr = base_lr * 0.001); biases and norm layers
    # (its 1-d parameters) at 0.0048 x batch/256, 0.024 of the weights' rate, with no weight decay
    # or LARS adaptation (its exclude_bias_and_norm)
    optim_defaults = {"name": "lars", "lr": 0.2, "weight_decay": 1.5e-6, "momentum": 0.9, "warmup_epochs": 10.0,
                      "bias_lr_ratio": 0.024, "min_lr_ratio": 0.001, "decay_exclusions": "bias_and_norm"}

    def __init__(self, backbone, params: BarlowTwinsParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        d = params.projection_dim
        self.projector = projection_mlp(backbone.feature_dim, d, d, num_layers=params.projector_layers)

    def forward(self, views, step, indices=None):
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        on_diagonal, off_diagonal = losses.barlow_twins_terms(gather_with_grad(z1), gather_with_grad(z2))
        loss = on_diagonal + self.params.lambd * off_diagonal
        return StepOutput(loss, {"on-diagonal": on_diagonal, "off-diagonal": off_diagonal},
                          (z1.detach(), z2.detach()))
