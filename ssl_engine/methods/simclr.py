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

The negatives are its safeguard: `negatives` false keeps only the positive pairs' term,
2 x `losses.positive_alignment` (NT-Xent's numerator at the same temperature and scale), which
every image sent to one point minimises.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import losses
from ..distributed import gather_with_grad
from ..models.heads import projection_mlp
from ..params import hyper
from .base import Method, StepOutput, register
from ..recipes import QUICK_COLOUR, Setting
from ..safeguards import NEGATIVES, NEGATIVES_HELP

_CIFAR = "the SimCLR authors' CIFAR-10 command, google-research/simclr README"


@dataclass
class SimCLRParams:
    temperature: float = hyper(0.5, gt=0, le=10, help="NT-Xent temperature (0.5 for CIFAR-10 in the paper, 0.1 with large ImageNet batches)")
    projection_dim: int = hyper(128, ge=2, le=65536, help="output size of the projection head")
    hidden_dim: int = hyper(2048, ge=2, le=65536, help="hidden size of the projection head (the backbone's width in the paper)")
    negatives: bool = hyper(True, help=NEGATIVES_HELP)


@register
class SimCLR(Method):
    name = "simclr"
    family = "contrastive"
    summary = "NT-Xent between two views; the rest of the batch are the negatives"
    paper = "Chen et al., ICML 2020"
    objective = ('L = −log [ exp(cos(zᵢ, zⱼ)/τ) / Σₖ≠ᵢ exp(cos(zᵢ, zₖ)/τ) ] over the 2N views (NT-Xent): zⱼ is the '
                 'other view of image i')
    Params = SimCLRParams
    augment_preset = "simclr"
    # the authors' CIFAR-10 command (google-research/simclr README, ResNet-18, the setting of the
    # paper's appendix B.9): batch 512, LARS at 1.0 per 256, weight decay 1e-4, temperature 0.5,
    # colour jitter of strength 0.5 and no blur; the projector's hidden width is the backbone's
    # (512 for ResNet-18)
    small_recipe = (
        Setting("train.batch_size", 512, f"{_CIFAR}: --train_batch_size=512"),
        Setting("optim.lr", 1.0, f"{_CIFAR}: --learning_rate=1.0 (linear scaling, per 256)"),
        Setting("optim.weight_decay", 1e-4, f"{_CIFAR}: --weight_decay=1e-4"),
        Setting("method.temperature", 0.5, f"{_CIFAR}: --temperature=0.5 (appendix B.9's best)"),
        Setting("method.hidden_dim", 512, f"{_CIFAR}: the projector's hidden width is ResNet-18's 512"),
        *(Setting(f"augment.{name}", value, f"{_CIFAR}: --color_jitter_strength=0.5")
          for name, value in (("brightness", 0.4), ("contrast", 0.4), ("saturation", 0.4), ("hue", 0.1))),
        Setting("augment.blur_p", 0.0, f"{_CIFAR}: --use_blur=False"),
    )
    quick_recipe = (
        *QUICK_COLOUR,
    )
    safeguard = NEGATIVES
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
        if self.params.negatives:
            loss = 2 * losses.info_nce(gather_with_grad(z1), gather_with_grad(z2), self.params.temperature)
        else:  # each pair alone: no other image, so no gather
            loss = 2 * losses.positive_alignment(z1, z2, self.params.temperature)
        return StepOutput(loss, {}, (z1.detach(), z2.detach()))
