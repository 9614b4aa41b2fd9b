"""SwAV (Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", NeurIPS 2020).

Every view x_t is embedded, projected and L2-normalised, z_t = g(f(x_t)) / ||g(f(x_t))||, and
scored against K learnt prototypes c_1..c_K (unit vectors): s_t = C^T z_t. The codes q_t of the
global views are soft cluster assignments that split the batch equally among the prototypes,
found by Sinkhorn-Knopp on exp(s / epsilon) over the global batch (no gradient). Then each
view predicts the code of every other view, the "swapped" prediction:

    l(z_v, q_t) = -sum_k q_t^(k) log softmax(s_v / temperature)^(k)
    loss = mean over global views t, and over every view v != t (local views included), of l

Three devices of the reference code (facebookresearch/swav, main_swav.py) are kept: the
prototypes are renormalised before every step; they are frozen for the first
`freeze_prototypes_iters` steps; and for small batches a queue of earlier projections of each
global view joins the Sinkhorn problem (its scores with today's prototypes), so that the
equipartition is over more samples than the batch, and only the batch's codes are kept.

The equipartition is its safeguard: codes that must spread the batch over every prototype cannot
all be one prototype. `sinkhorn` false takes each code as a plain softmax of the scores at the
same epsilon, softmax(s / epsilon) (Sinkhorn's starting point, its balancing left out), and the
codes, and the prototypes they train, can then fall onto a few prototypes, or one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .. import losses
from ..distributed import all_reduce_sum, gather_no_grad, rank, world_size
from ..models.heads import projection_mlp
from ..params import hyper
from .base import Method, StepOutput, features_by_resolution, register
from ..recipes import QUICK_COLOUR, QUICK_LARS, SOLO_LEARN, Setting, solo_learn_lars
from ..safeguards import Safeguard

GLOBAL_VIEWS = 2  # the views that get codes: the reference's crops_for_assign [0, 1]


@dataclass
class SwAVParams:
    projection_dim: int = hyper(128, ge=2, le=65536, help="size of the L2-normalised projection z (feat_dim)")
    hidden_dim: int = hyper(2048, ge=2, le=65536, help="hidden size of the projection MLP")
    # The paper uses 3000 for ImageNet's 1000 classes and finds the number of little influence
    # as long as there are enough; 100 keeps a batch of 256 larger than K without a queue.
    num_prototypes: int = hyper(100, ge=2, le=100000, help="prototypes K (3000 for ImageNet; a few times the expected number of classes)")
    temperature: float = hyper(0.1, gt=0, le=10, help="softmax temperature of the swapped prediction")
    epsilon: float = hyper(0.05, gt=0, le=10, help="entropy regularisation of the Sinkhorn codes (smaller: harder codes)")
    sinkhorn_iterations: int = hyper(3, ge=1, le=1000, help="Sinkhorn-Knopp normalisation rounds")
    queue_length: int = hyper(0, ge=0, le=1_000_000, help="earlier projections per global view added to Sinkhorn (0: no queue; 3840 for batch 256 in the paper)")
    epoch_queue_starts: int = hyper(15, ge=0, le=100000, help="epoch from which the queue is filled; it is used once full")
    sinkhorn: bool = hyper(True, help="balance the codes with Sinkhorn-Knopp, what keeps SwAV from collapsing; false: "
                                      "a plain softmax of the scores, and the codes fall onto a few prototypes")
    freeze_prototypes_iters: int = hyper(313, ge=0, le=10_000_000, help="first steps during which the prototypes get no gradient (313: one ImageNet epoch at batch 4096)")


@dataclass
class SwAVOutput(StepOutput):
    prototype_usage: torch.Tensor | None = None  # (K,) argmax of the global views' codes, global batch


def swapped_prediction_loss(codes: list[torch.Tensor], scores: list[torch.Tensor],
                            temperature: float) -> torch.Tensor:
    """SwAV's loss: mean over (t, v), v != t, of -mean_n sum_k codes[t] log softmax(scores[v] / T).

    `codes`: one (N, K) code per global view, rows summing to 1; `scores`: one (N, K) tensor per
    view, the global views first. This is DINO's cross-entropy with the codes as the teacher's
    probabilities (softmax(log q) = q), and the reference code's average: over the other views
    for each code, then over the codes.
    """
    log_codes = [torch.log(q.float()) for q in codes]
    center = torch.zeros(1, device=scores[0].device)
    return losses.dino_loss(scores, log_codes, center, student_temp=temperature, teacher_temp=1.0)


@register
class SwAV(Method):
    name = "swav"
    family = "clustering"
    summary = "predict one view's equipartitioned prototype assignment from the other views"
    paper = "Caron et al., NeurIPS 2020"
    objective = ('L = −Σ q₂ · log softmax(z₁ᵀC/τ) − Σ q₁ · log softmax(z₂ᵀC/τ): q = Sinkhorn-balanced codes of the '
                 'other view on prototypes C')
    Params = SwAVParams
    augment_preset = "swav"
    # solo-learn's CIFAR recipe: two crops (no local ones), 3000 prototypes, a 3840-image queue
    # from epoch 50, prototypes frozen for its first 2 epochs (390 steps of CIFAR-10 at batch 256)
    small_recipe = (
        *solo_learn_lars("swav", 0.6, 1e-6, "CIFAR-10 89.17, CIFAR-100 64.88 linear"),
        Setting("method.hidden_dim", 2048, f"{SOLO_LEARN.format('swav')}: proj_hidden_dim 2048"),
        Setting("method.projection_dim", 128, f"{SOLO_LEARN.format('swav')}: proj_output_dim 128"),
        Setting("method.num_prototypes", 3000, f"{SOLO_LEARN.format('swav')}: num_prototypes 3000"),
        Setting("method.temperature", 0.1, f"{SOLO_LEARN.format('swav')}: temperature 0.1"),
        Setting("method.queue_length", 3840, f"{SOLO_LEARN.format('swav')}: queue_size 3840"),
        Setting("method.epoch_queue_starts", 50, f"{SOLO_LEARN.format('swav')}: epoch_queue_starts 50"),
        Setting("method.freeze_prototypes_iters", 390, f"{SOLO_LEARN.format('swav')}: freeze_prototypes_epochs 2"),
        Setting("augment.local_views", 0, f"{SOLO_LEARN.format('augmentations/symmetric')}: two crops, no local ones"),
        Setting("augment.crop_scale_min", 0.08, f"{SOLO_LEARN.format('augmentations/symmetric')}: rrc.crop_min_scale"),
    )
    quick_recipe = (
        *QUICK_LARS,
        *QUICK_COLOUR,
        Setting("train.batch_size", 128, "quick: more, smaller steps in a short run"),
        Setting("method.freeze_prototypes_iters", 62, "quick: the paper freezes the prototypes for one epoch (313 steps at batch 4096); 62 steps are about one epoch of the bundled shapes at batch 128, where 390 would be most of the run"),
    )
    safeguard = Safeguard(
        name="Sinkhorn balancing",
        keeps="The codes are balanced with Sinkhorn-Knopp so that the batch spreads equally over the prototypes; "
              "without the balancing every image can be assigned to the same prototype.",
        removed=(Setting("method.sinkhorn", False, "SwAV's codes from a plain softmax of the scores, not balanced"),),
    )
    # The reference's batch-256 recipe (scripts/swav_400ep_bs256_pretrain.sh): LARS at 0.6, weight
    # decay 1e-6, no warm-up, cosine to base/1000. (The batch-4096 recipe, 4.8 with 10 warm-up
    # epochs, is 0.3 per 256.) Its LARC wraps SGD over model.parameters(): every parameter, biases
    # and BatchNorm included, gets weight decay and the trust ratio.
    optim_defaults = {"name": "lars", "lr": 0.6, "weight_decay": 1e-6, "momentum": 0.9, "warmup_epochs": 0.0,
                      "min_lr_ratio": 0.001, "decay_exclusions": "none"}

    def __init__(self, backbone, params: SwAVParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        self.projector = projection_mlp(backbone.feature_dim, params.hidden_dim, params.projection_dim)
        self.prototypes = nn.Linear(params.projection_dim, params.num_prototypes, bias=False)
        # One queue per global view, as in the reference; every process holds the whole queue.
        self.register_buffer("queue", torch.zeros(GLOBAL_VIEWS, params.queue_length, params.projection_dim))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.epoch = 0

    def before_epoch(self, epoch, dataset_features):
        self.epoch = epoch

    def _project(self, views: list[torch.Tensor]) -> torch.Tensor:
        """(V * N, D) unit projections; consecutive views of one size share a backbone pass (and
        its BatchNorm statistics), as in the reference's multi-resolution forward."""
        return F.normalize(self.projector(torch.cat(features_by_resolution(self.backbone, views))).float(), dim=1)

    def forward(self, views, step, indices=None):
        if len(views) < GLOBAL_VIEWS:
            raise ValueError(f"SwAV needs at least {GLOBAL_VIEWS} views, got {len(views)}")
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        weight = self.prototypes.weight
        if step < self.params.freeze_prototypes_iters:
            # a zero gradient, not none: the prototypes stay in the graph, as DDP requires
            weight = weight.detach() + 0 * weight
        batch = len(views[0])
        z = self._project(views)
        with torch.autocast(device_type=z.device.type, enabled=False):
            scores = (z @ weight.float().T).split(batch)
        z_global = z[:GLOBAL_VIEWS * batch].detach().split(batch)

        use_queue = self.params.queue_length > 0 and self.epoch >= self.params.epoch_queue_starts
        # as in the reference, the queue joins the Sinkhorn problem once it is full
        queue_ready = use_queue and bool(self.queue_filled == self.params.queue_length)
        codes = []
        with torch.no_grad():
            for i in range(GLOBAL_VIEWS):
                candidates = scores[i].detach()
                if queue_ready:
                    # this process's share of the queue: the Sinkhorn sums run over all processes
                    share = torch.tensor_split(self.queue[i], world_size())[rank()]
                    candidates = torch.cat([share @ self.prototypes.weight.detach().float().T, candidates])
                if self.params.sinkhorn:
                    codes.append(losses.sinkhorn(candidates, self.params.epsilon,
                                                 self.params.sinkhorn_iterations)[-batch:])
                else:  # each image's own softmax: nothing ties one image's code to the others'
                    codes.append(F.softmax(scores[i].detach() / self.params.epsilon, dim=1))
            if use_queue:
                self._enqueue([gather_no_grad(z_i) for z_i in z_global])
            usage = torch.bincount(torch.cat(codes).argmax(dim=1), minlength=self.params.num_prototypes)
            usage = all_reduce_sum(usage.float())

        loss = swapped_prediction_loss(codes, list(scores), self.params.temperature)
        fill = self.queue_filled.float() / max(1, self.params.queue_length)
        terms = {"swapped prediction": loss.detach(), "queue fill": fill}
        return SwAVOutput(loss, terms, z_global, prototype_usage=usage)

    @torch.no_grad()
    def _enqueue(self, projections: list[torch.Tensor]) -> None:
        length = self.params.queue_length
        count = min(len(projections[0]), length)
        positions = (self.queue_pointer + torch.arange(count, device=self.queue.device)) % length
        for i, z_i in enumerate(projections):
            self.queue[i, positions] = z_i[-count:].to(self.queue.dtype)
        self.queue_pointer.copy_((self.queue_pointer + count) % length)
        self.queue_filled.copy_(torch.clamp(self.queue_filled + count, max=length))

    @torch.no_grad()
    def histograms(self, output):
        """How many global views of the batch have each prototype as their code's argmax."""
        return {"prototype usage": output.prototype_usage}
