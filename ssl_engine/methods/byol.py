"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020).

An online network (backbone, projector, predictor) predicts the projection of the other
view made by a target network, an EMA of the online one whose momentum rises from
`base_momentum` to 1 on a cosine schedule. No negatives: the predictor and the slow target
are what keep it from collapsing. Loss: 2 - 2 cos(prediction, target), symmetrised.

Its safeguard is that asymmetry: `predictor` false compares the online projection itself with
the target, and `ema_target` false makes the target equal to the online network (its weights
copied after every optimiser step: momentum 0, no lag; the target branch still passes no
gradient). With neither, both branches are one network and BYOL is SimSiam without its
predictor, which collapses (SimSiam's table 1; BYOL's own ablation with an instant target).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import losses
from ..models.ema import MomentumTargets
from ..models.heads import prediction_mlp, projection_mlp
from ..params import hyper
from .base import Method, StepOutput, register
from ..recipes import QUICK_COLOUR, QUICK_LARS, SOLO_ASYMMETRIC, SOLO_LEARN, Setting, solo_learn_lars
from ..safeguards import Safeguard


@dataclass
class BYOLParams:
    projection_dim: int = hyper(256, ge=2, le=65536, help="output size of projector and predictor")
    hidden_dim: int = hyper(4096, ge=2, le=65536, help="hidden size of projector and predictor")
    base_momentum: float = hyper(0.996, ge=0, le=1, help="target EMA momentum at the start; it rises to 1 on a cosine")
    predictor: bool = hyper(True, help="the online network's predictor, half of what keeps BYOL from collapsing; false: "
                                       "the projection is compared with the target directly")
    ema_target: bool = hyper(True, help="the target is a slow EMA of the online network, the other half; false: it copies the "
                                        "online weights after every step (equal to it, no lag), and with no predictor BYOL collapses")


@register
class BYOL(Method):
    name = "byol"
    family = "distillation"
    summary = "an online network predicts an EMA target network's view of the image"
    paper = "Grill et al., NeurIPS 2020"
    objective = ('L = ‖q(z₁)/‖q(z₁)‖ − z′₂/‖z′₂‖‖² + the same with the views swapped: z′ from the EMA target, q the '
                 'predictor')
    Params = BYOLParams
    augment_preset = "byol"
    # solo-learn's CIFAR recipe (BYOL has none in its paper)
    small_recipe = (
        *solo_learn_lars("byol", 1.0, 1e-5, "CIFAR-10 92.58, CIFAR-100 70.46 linear"),
        Setting("method.hidden_dim", 4096, f"{SOLO_LEARN.format('byol')}: proj_hidden_dim 4096"),
        Setting("method.projection_dim", 256, f"{SOLO_LEARN.format('byol')}: proj_output_dim 256"),
        Setting("method.base_momentum", 0.99, f"{SOLO_LEARN.format('byol')}: momentum.base_tau 0.99"),
        *SOLO_ASYMMETRIC,
    )
    quick_recipe = (
        *QUICK_LARS,
        *QUICK_COLOUR,
        Setting("train.batch_size", 64, "quick: without negatives BYOL gains from more, smaller steps in a short run"),
    )
    safeguard = Safeguard(
        name="the predictor and the slow target",
        keeps="A predictor on the online branch and a target that lags behind it as an EMA make the two branches "
              "differ; without both, the online network chases an exact copy of itself and sends every image to one point.",
        removed=(Setting("method.predictor", False, "BYOL without its predictor; SimSiam's table 1: with no predictor it collapses"),
                 Setting("method.ema_target", False, "the target equal to the online network: its weights copied every step")),
    )
    # LARS at 0.2 x batch/256, weight decay 1.5e-6, 10 warm-up epochs (paper, section 3.2); no
    # weight decay or LARS adaptation on biases and norm layers (the code's exclude_bias_and_norm)
    optim_defaults = {"name": "lars", "lr": 0.2, "weight_decay": 1.5e-6, "momentum": 0.9, "warmup_epochs": 10.0,
                      "decay_exclusions": "bias_and_norm"}

    def __init__(self, backbone, params: BYOLParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        self.projector = projection_mlp(backbone.feature_dim, params.hidden_dim, params.projection_dim)
        self.predictor = (prediction_mlp(params.projection_dim, params.hidden_dim, params.projection_dim)
                          if params.predictor else nn.Identity())
        # a cosine to 1; without the EMA, momentum 0 copies the online weights after every step
        self.ema = MomentumTargets(params.base_momentum) if params.ema_target else MomentumTargets(0.0, schedule="constant")
        self.target_backbone = self.ema.copy(self.backbone)
        self.target_projector = self.ema.copy(self.projector)
        self.momentum = self.ema.base

    def forward(self, views, step, indices=None):
        x1, x2 = views[:2]
        z1, z2 = self.projector(self.backbone(x1)), self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1 = self.target_projector(self.target_backbone(x1))
            t2 = self.target_projector(self.target_backbone(x2))
        # 2 - 2 cos(p, t) == 2 + 2 * negative_cosine(p, t); the paper sums both directions.
        loss = (2 + 2 * losses.negative_cosine(p1, t2)) + (2 + 2 * losses.negative_cosine(p2, t1))
        return StepOutput(loss, {"target momentum": torch.tensor(self.momentum)}, (z1.detach(), z2.detach()))

    @torch.no_grad()
    def after_optimizer_step(self, step):
        self.momentum = self.ema.update(step, self.total_steps)

    def parameter_groups(self):
        modules = (self.backbone, self.projector, self.predictor)
        return [{"params": [p for m in modules for p in m.parameters()]}]
