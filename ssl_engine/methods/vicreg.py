"""VICReg (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022).

Three terms on the two views' expanded embeddings: invariance (mean squared distance),
variance (a hinge keeping each dimension's standard deviation above 1) and covariance
(off-diagonal covariances pushed to 0).

The variance term is its safeguard (the paper's ablation of its terms: without it the run
collapses): with `std_coeff` 0 the invariance term is smallest, and the covariance term 0, when
every image has the same embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import losses
from ..distributed import gather_with_grad
from ..models.heads import projection_mlp
from ..params import hyper
from .base import MATRIX_DIMS, Method, StepOutput, register
from ..recipes import QUICK_COLOUR, QUICK_LARS, SOLO_LEARN, Setting, solo_learn_lars
from ..safeguards import Safeguard


@dataclass
class VICRegParams:
    sim_coeff: float = hyper(25.0, ge=0, le=1000, help="weight of the invariance term (lambda)")
    std_coeff: float = hyper(25.0, ge=0, le=1000, help="weight of the variance term (mu), what keeps VICReg from "
                                                      "collapsing; 0: every image ends at the same embedding")
    cov_coeff: float = hyper(1.0, ge=0, le=1000, help="weight of the covariance term (nu)")
    expander_dim: int = hyper(8192, ge=2, le=65536, help="width of every expander layer (8192 in the paper; 1024-2048 run much faster on a CPU)")
    expander_layers: int = hyper(3, ge=1, le=6, help="layers of the expander")


@register
class VICReg(Method):
    name = "vicreg"
    family = "redundancy reduction"
    summary = "invariance, variance and covariance terms keep embeddings informative"
    paper = "Bardes et al., ICLR 2022"
    objective = ("L = λ · MSE(z₁, z₂) + μ · mean_d max(0, 1 − √(Var z_d + ε)) + ν · Σ_{d≠e} Cov(z)²_{de} / D, "
                 "the variance and covariance terms for each view's embeddings z")
    Params = VICRegParams
    augment_preset = "vicreg"
    # solo-learn's CIFAR recipe: a 2048-wide expander, the paper's coefficients, its own views
    # (crop 0.2-1, BYOL's jitter, solarisation 0.1 on both views, no blur)
    small_recipe = (
        *solo_learn_lars("vicreg", 0.3, 1e-4, "CIFAR-10 92.07, CIFAR-100 68.54 linear"),
        Setting("method.expander_dim", 2048, f"{SOLO_LEARN.format('vicreg')}: proj_hidden_dim and proj_output_dim 2048"),
        Setting("augment.crop_scale_min", 0.2, f"{SOLO_LEARN.format('vicreg')}: rrc.crop_min_scale 0.2"),
        Setting("augment.blur_p", 0.0, f"{SOLO_LEARN.format('vicreg')}: gaussian_blur.prob 0"),
        Setting("augment.solarize_p", 0.1, f"{SOLO_LEARN.format('vicreg')}: solarization.prob 0.1, both crops"),
    )
    quick_recipe = (
        *QUICK_LARS,
        *QUICK_COLOUR,
        # the papers' trust coefficient at the CIFAR rate moves a weight by 0.3 x 0.001 of its norm
        # a step; measured over 3 epochs of 10,000 shapes at batch 256 (benchmarks/collapse_demos.py)
        Setting("optim.lr", 3.0, "quick: LARS at trust 0.001 moves a weight by lr x 0.001 of its norm a step; "
                                 "after 3 epochs of shapes kNN 0.453 at 3.0, 0.419 at the CIFAR rate 0.3 (random 0.298)"),
    )
    safeguard = Safeguard(
        name="the variance term",
        keeps="A hinge keeps every embedding dimension's standard deviation over the batch near 1; without it the "
              "invariance and covariance terms are both smallest when every image has the same embedding.",
        removed=(Setting("method.std_coeff", 0.0, "VICReg with its variance term weighted 0"),),
    )
    matrix_names = ("covariance", "cross-correlation", "similarity")
    # LARS at 0.2 x batch/256, weight decay 1e-6, 10 warm-up epochs, then a cosine to 0.001 of the
    # peak (main_vicreg.py's adjust_learning_rate: end_lr = base_lr * 0.001); no weight decay or
    # LARS adaptation on biases and norm layers (its exclude_bias_and_norm)
    optim_defaults = {"name": "lars", "lr": 0.2, "weight_decay": 1e-6, "momentum": 0.9, "warmup_epochs": 10.0,
                      "min_lr_ratio": 0.001, "decay_exclusions": "bias_and_norm"}

    def __init__(self, backbone, params: VICRegParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        d = params.expander_dim
        self.projector = projection_mlp(backbone.feature_dim, d, d, num_layers=params.expander_layers)

    def forward(self, views, step, indices=None):
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        invariance, variance, covariance = losses.vicreg_terms(gather_with_grad(z1), gather_with_grad(z2))
        p = self.params
        loss = p.sim_coeff * invariance + p.std_coeff * variance + p.cov_coeff * covariance
        return StepOutput(loss, {"invariance": invariance, "variance": variance, "covariance": covariance},
                          (z1.detach(), z2.detach()))

    @torch.no_grad()
    def matrices(self, output):
        shown = super().matrices(output)
        z1 = output.embeddings[0].float()[:, :MATRIX_DIMS]
        return {"covariance": losses.covariance_matrix(z1), **shown}
