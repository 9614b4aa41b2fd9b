"""MSN (Assran et al., "Masked Siamese Networks for Label-Efficient Learning", ECCV 2022).

An anchor view with some of its patches dropped must be assigned to the same learnable
prototypes as an unmasked target view of the same image, seen by the target encoder, an EMA of
the anchor encoder. Both encoders end in a projection head; with z an anchor's projection, z+
a target's and q_k the prototypes, all L2-normalised,

    p   = softmax(z . q / tau)            (anchor prediction, tau = 0.1)
    p+  = softmax(z+ . q / tau+)          (sharpened target, tau+ = tau x 0.25 = 0.025)
    loss = mean over (anchor, target) pairs of H(p+, p)  +  lambda (log K - H(mean p))

The second term is the mean-entropy maximisation (me-max, lambda = 1): the average prediction
over the batch (all anchor views, all processes) should use every prototype, which is what
keeps the assignments from collapsing; log K makes it zero at a uniform average, as in the
reference code. As in the reference configuration, the targets are also balanced by three
Sinkhorn-Knopp iterations.

Views: the two global views are both anchors (with `mask_ratio` of their patches dropped from
the encoder's input) and targets (unmasked); each target supervises every anchor but the masked
copy of its own view, so a masked view is matched against the other crop as in the paper. Local
views are extra anchors, unmasked (the paper's focal views). Augmentations: DINO's multi-crop,
the nearest of the presets to the reference's (global crops 0.3-1, ten 96 px focal crops 0.05-0.3,
colour jitter of strength 0.5, blur p 0.5). ViT backbones only: masking drops patch tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import losses
from ..distributed import all_reduce_mean, all_reduce_sum
from ..masking import RandomKeep
from ..models.ema import MomentumTargets
from ..params import hyper
from .base import StepOutput, features_by_resolution, register
from .masked import MaskedMethod
from ..recipes import NO_SMALL_RECIPE, QUICK_COLOUR, QUICK_LOCAL_VIEWS, QUICK_MOMENTUM, QUICK_VIT, Setting


@dataclass
class MSNParams:
    # 0.15: the reference configuration's patch_drop for ViT-S/16
    mask_ratio: float = hyper(0.15, ge=0, lt=1, help="share of the global anchor views' patches dropped from the encoder's input")
    num_prototypes: int = hyper(256, ge=2, le=65536, help="learnable prototypes K (1024 in the paper on ImageNet; fewer suit small sets)")
    projection_dim: int = hyper(256, ge=2, le=65536, help="output size of the projection head")
    hidden_dim: int = hyper(2048, ge=2, le=65536, help="hidden size of the 3-layer projection head")
    anchor_temperature: float = hyper(0.1, gt=0, le=10, help="softmax temperature of the anchor predictions")
    # 0.025 = 0.1 x the reference's sharpening exponent 1 / 0.25
    target_temperature: float = hyper(0.025, gt=0, le=10, help="softmax temperature of the sharpened targets")
    memax_weight: float = hyper(1.0, ge=0, le=100, help="weight of the mean-entropy maximisation (me-max) term")
    sinkhorn_iterations: int = hyper(3, ge=0, le=100, help="Sinkhorn-Knopp iterations balancing the targets over prototypes (0: off)")
    base_momentum: float = hyper(0.996, ge=0, le=1, help="target encoder's EMA momentum at the start; it rises linearly towards 1")


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The reference's head: (Linear-BN-GELU) x 2, then Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.GELU(),
                         nn.Linear(hidden_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.GELU(),
                         nn.Linear(hidden_dim, out_dim))


def global_batch_mean(x: Tensor) -> Tensor:
    """Mean over the rows of every process's batch; the gradient reaches this process's rows as
    the reference's AllReduce gives it, which DDP's averaging turns into the one-process gradient."""
    local = x.mean(dim=0)
    return local + (all_reduce_mean(local) - local.detach())


@register
class MSN(MaskedMethod):
    name = "msn"
    family = "hybrid"
    summary = "a masked view predicts an unmasked view's prototype assignment; me-max spreads the assignments"
    paper = "Assran et al., ECCV 2022"
    objective = ('L = H(p⁺, p_masked) − λ · H(mean p_masked): p = softmax(cos(z, prototypes)/τ), p⁺ the sharpened '
                 'target of the unmasked view')
    Params = MSNParams
    backbones = ("vit_tiny", "vit_small")
    augment_preset = "dino"
    small_recipe = (
        Setting("backbone.patch_size", 4, NO_SMALL_RECIPE.format("MSN") + "; 4 px patches, as solo-learn's ViTs on CIFAR (mae.yaml)"),
    )
    quick_recipe = (
        *QUICK_VIT,
        *QUICK_COLOUR,
        QUICK_LOCAL_VIEWS,
        QUICK_MOMENTUM,
    )
    # AdamW at 0.001 for a batch of 1024 (0.00025 per 256), weight decay 0.04, 15 warm-up epochs, cosine
    # to 1e-6, gradients clipped at 3, weight decay rising to 0.4 on a cosine (reference configuration
    # for ViT-S/16)
    optim_defaults = {"name": "adamw", "lr": 0.00025, "weight_decay": 0.04, "weight_decay_schedule": "cosine",
                      "weight_decay_end": 0.4, "momentum": 0.9, "warmup_epochs": 15.0, "min_lr_ratio": 0.001,
                      "grad_clip": 3.0}

    def __init__(self, backbone, params: MSNParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        self.projector = projection_head(backbone.feature_dim, params.hidden_dim, params.projection_dim)
        bound = params.projection_dim ** -0.5
        self.prototypes = nn.Parameter(torch.empty(params.num_prototypes, params.projection_dim).uniform_(-bound, bound))
        # the reference's schedule: linear from base_momentum, reaching 1 at 1.25 x the run's length
        self.ema = MomentumTargets(params.base_momentum, schedule="linear", horizon=1.25)
        self.target_backbone = self.ema.copy(self.backbone)
        self.target_projector = self.ema.copy(self.projector)
        self.momentum = params.base_momentum
        self.prototype_usage = torch.zeros(params.num_prototypes)
        self.seed_masks()

    def mask_strategy(self):
        return RandomKeep(self.params.mask_ratio)

    @torch.no_grad()
    def pictures(self, images):
        """None: MSN's masks are the patches each view keeps, which the default "mask" picture
        (hidden patches) would show inverted; the app has never shown MSN's masks."""
        return {}

    def _masked_features(self, views: list[Tensor], step: int) -> Tensor:
        """Class tokens of `views` (one pass) with a random `mask_ratio` of each image's patches
        dropped: this step's draw for the global batch, view by view (`step_masks`)."""
        keep = self.step_masks(views[0], step, views=len(views))
        return self.backbone.tokens(torch.cat(views), keep=keep)[:, 0]

    def _log_targets(self, target_logits: Tensor) -> Tensor:
        """log p+: sharpened, then balanced by Sinkhorn-Knopp (run on p+ itself: epsilon 1 on log p+)."""
        log_targets = F.log_softmax(target_logits / self.params.target_temperature, dim=1)
        if self.params.sinkhorn_iterations:
            log_targets = torch.log(losses.sinkhorn(log_targets, 1.0, self.params.sinkhorn_iterations))
        return log_targets

    # No masked_loss (so no held_out_loss): the loss needs two views, Sinkhorn and me-max over
    # the global batch, and forward counts the prototypes' usage.
    def forward(self, views, step, indices=None):
        p, n = self.params, len(views[0])
        # Views of one size go through the encoder together; the head's BatchNorm then sees one
        # resolution at a time, as in the reference.
        features = [self._masked_features(views[:2], step)]
        features += features_by_resolution(self.backbone, views[2:])
        anchors = torch.cat([self.projector(f) for f in features])
        with torch.no_grad():
            targets = self.target_projector(self.target_backbone(torch.cat(views[:2])))
        with torch.autocast(device_type=anchors.device.type, enabled=False):
            prototypes = F.normalize(self.prototypes.float(), dim=1)
            anchor_logits = F.normalize(anchors.float(), dim=1) @ prototypes.T
            with torch.no_grad():
                log_targets = [self._log_targets(t) for t in (F.normalize(targets.float(), dim=1) @ prototypes.T).split(n)]
            # dino_loss's cross-entropy over pairs (i != j): softmax(log p+ / 1) is p+ itself
            cross_entropy = losses.dino_loss(list(anchor_logits.split(n)), log_targets, anchor_logits.new_zeros(1),
                                             student_temp=p.anchor_temperature, teacher_temp=1.0)
            mean_prediction = global_batch_mean(F.softmax(anchor_logits / p.anchor_temperature, dim=1))
            memax_entropy = -(mean_prediction * mean_prediction.clamp_min(1e-30).log()).sum()
            loss = cross_entropy + p.memax_weight * (math.log(p.num_prototypes) - memax_entropy)
        target_probabilities = torch.cat(log_targets).exp()
        target_entropy = all_reduce_mean(torch.special.entr(target_probabilities).sum(dim=1).mean())
        self.prototype_usage = all_reduce_sum(torch.bincount(target_probabilities.argmax(dim=1),
                                                             minlength=p.num_prototypes).float())
        terms = {"cross-entropy": cross_entropy.detach(), "me-max entropy": memax_entropy.detach(),
                 "target entropy": target_entropy}
        return StepOutput(loss, terms, (anchors[:n].detach(), anchors[n:2 * n].detach()))

    @torch.no_grad()
    def after_optimizer_step(self, step):
        self.momentum = self.ema.update(step, self.total_steps)

    @torch.no_grad()
    def histograms(self, output):
        return {"prototype usage": self.prototype_usage}

    def parameter_groups(self):
        encoder = [p for m in (self.backbone, self.projector) for p in m.parameters()]
        # no weight decay (nor LARS adaptation) on the prototypes, as in the reference
        return [{"params": encoder}, {"params": [self.prototypes], "weight_decay": 0.0, "lars_exclude": True}]
