"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021).

BYOL without the momentum encoder: one network, a predictor on one branch and a
stop-gradient on the other. Loss: D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 with D the negative
cosine. The predictor is trained at a fixed learning rate (the paper's section 4.2).

The stop-gradient is its safeguard (the paper's section 4.1 and figure 2): `stop_gradient`
false lets the gradient flow through z1 and z2 as well, and the run collapses, its output std
falling to 0 within a few epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.nn import functional as F

from .. import losses
from ..models.heads import prediction_mlp, projection_mlp
from ..params import hyper
from .base import Method, StepOutput, register
from ..recipes import QUICK_COLOUR, Setting
from ..safeguards import Safeguard

_PAPER = "SimSiam, appendix D (CIFAR experiments)"


@dataclass
class SimSiamParams:
    projection_dim: int = hyper(2048, ge=2, le=65536, help="output (and hidden) size of the projector")
    predictor_hidden_dim: int = hyper(512, ge=2, le=65536, help="bottleneck size of the predictor")
    projector_layers: int = hyper(3, ge=1, le=6, help="layers of the projector (3 on ImageNet, 2 on CIFAR in the paper)")
    fixed_predictor_lr: bool = hyper(True, help="keep the predictor's learning rate constant instead of decaying it")
    stop_gradient: bool = hyper(True, help="no gradient through the target branch z, what keeps SimSiam from collapsing; "
                                           "false: gradients flow through both branches and the run collapses to a constant")


@register
class SimSiam(Method):
    name = "simsiam"
    family = "distillation"
    summary = "one network predicts its own other view through a stop-gradient"
    paper = "Chen & He, CVPR 2021"
    objective = 'L = −½ cos(p₁, sg(z₂)) − ½ cos(p₂, sg(z₁)): p = predictor(z), sg the stop-gradient'
    Params = SimSiamParams
    augment_preset = "simsiam"
    # the paper's CIFAR-10 experiments (Chen & He 2021, appendix D; ResNet-18 variant): SGD at
    # 0.03 per 256 with batch 512, weight decay 5e-4, 800 epochs, a 2-layer projector, the
    # ImageNet views without blur
    small_recipe = (
        Setting("train.batch_size", 512, f"{_PAPER}: batch 512"),
        Setting("optim.lr", 0.03, f"{_PAPER}: base lr 0.03 x batch/256"),
        Setting("optim.weight_decay", 5e-4, f"{_PAPER}: weight decay 5e-4"),
        Setting("method.projector_layers", 2, f"{_PAPER}: the projection MLP has 2 layers"),
        Setting("augment.blur_p", 0.0, f"{_PAPER}: the ImageNet augmentations without blur"),
    )
    quick_recipe = (
        *QUICK_COLOUR,
    )
    safeguard = Safeguard(
        name="the stop-gradient",
        keeps="No gradient flows through the target branch, so the network cannot align the two views by moving "
              "both towards one constant output; without it SimSiam collapses within a few epochs (its figure 2).",
        removed=(Setting("method.stop_gradient", False, "SimSiam section 4.1: without the stop-gradient it collapses"),),
    )
    # SGD at 0.05 x batch/256, weight decay 1e-4, momentum 0.9, cosine, no warm-up (paper); its
    # main_simsiam.py decays every parameter, biases and BatchNorm included
    optim_defaults = {"name": "sgd", "lr": 0.05, "weight_decay": 1e-4, "momentum": 0.9, "warmup_epochs": 0.0,
                      "decay_exclusions": "none"}

    def __init__(self, backbone, params: SimSiamParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        d = params.projection_dim
        # The projector's output BN has no affine parameters: SimSiam's last_bn.
        self.projector = projection_mlp(backbone.feature_dim, d, d, num_layers=params.projector_layers,
                                        last_batch_norm=True, last_bn_affine=False)
        self.predictor = prediction_mlp(d, params.predictor_hidden_dim, d)

    def forward(self, views, step, indices=None):
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = (z1.detach(), z2.detach()) if self.params.stop_gradient else (z1, z2)
        loss = 0.5 * losses.negative_cosine(p1, t2) + 0.5 * losses.negative_cosine(p2, t1)
        # The per-dimension spread of the normalised output: collapse drives it to 0, a
        # healthy run keeps it near 1/sqrt(d) (the paper's figure 2).
        spread = F.normalize(z1.detach().float(), dim=1).std(dim=0).mean()
        return StepOutput(loss, {"output std": spread}, (z1.detach(), z2.detach()))

    def parameter_groups(self):
        encoder = [p for m in (self.backbone, self.projector) for p in m.parameters()]
        return [{"params": encoder},
                {"params": list(self.predictor.parameters()), "fixed_lr": self.params.fixed_predictor_lr}]

