"""SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020).

Two augmented views of each image go through the same backbone and projection head; the
NT-Xent loss makes each view pick out its pair among the 2N views of the batch.

As in the reference code (google-research/simclr, objective.py `add_contrastive_loss`), the
loss is the sum of both directions, loss_a + loss_b, each the mean over the N pairs of one
view's anchors: twice `losses.info_nce`, which is the mean over all 2N anchors. The factor is
kept because the paper's learning rates were tuned at that scale: with SGD it doubles the step
of a mean; with LARS, whose trust ratio normalises the weights' steps, it doubles the gradient
against the weight decay and the steps of the biases and BatchNorm. The projection head is the
code's (model_util.py `projection_head`): every Linear is followed by a BatchNorm, the last one
included, which learns a scale but no shift (center=False), and the hidden layers have ReLUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import losses
from ..distributed import gather_with_grad
from ..models.heads import projection_mlp
from ..params import hyper
from .base import Method, StepOutput, register


@dataclass
class SimCLRParams:
    temperature: float = hyper(0.5, gt=0, le=10, help="NT-Xent temperature (0.5 for CIFAR-10 in the paper, 0.1 with large ImageNet batches)")
    projection_dim: int = hyper(128, ge=2, le=65536, help="output size of the projection head")
    hidden_dim: int = hyper(2048, ge=2, le=65536, help="hidden size of the projection head (the backbone's width in the paper)")


@register
class SimCLR(Method):
    name = "simclr"
    family = "contrastive"
    summary = "NT-Xent between two views; the rest of the batch are the negatives"
    paper = "Chen et al., ICML 2020"
    Params = SimCLRParams
    augment_preset = "simclr"
    # LARS at 0.3 x batch/256, weight decay 1e-6, 10 warm-up epochs (paper, appendix B.1), a cosine
    # to 0; no weight decay or adaptation on biases and BatchNorm (the code's LARS exclude list)
    optim_defaults = {"name": "lars", "lr": 0.3, "weight_decay": 1e-6, "momentum": 0.9, "warmup_epochs": 10.0,
                      "decay_exclusions": "bias_and_norm"}

    def __init__(self, backbone, params: SimCLRParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        self.projector = projection_mlp(backbone.feature_dim, params.hidden_dim, params.projection_dim,
                                        last_batch_norm=True, last_bn_shift=False)

    def forward(self, views, step, indices=None):
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        # both directions summed, as the reference's loss_a + loss_b (see the module's docstring)
        loss = 2 * losses.info_nce(gather_with_grad(z1), gather_with_grad(z2), self.params.temperature)
        return StepOutput(loss, {}, (z1.detach(), z2.detach()))
