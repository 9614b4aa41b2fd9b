"""MoCo v2 (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning",
CVPR 2020; Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020).

A query encoder is trained to match its key, encoded by a momentum (EMA) copy of itself,
against a queue of keys from earlier batches. Keys are encoded with shuffled BatchNorm: the
batch is permuted and normalised in separate groups, as if on separate GPUs, so that a
query and its key never share batch statistics (the paper's guard against BN cheating).

The negatives are its safeguard: `negatives` false scores each query against its own key alone,
`losses.positive_alignment(q, k, T)` (InfoNCE's numerator; the queue is still filled but never
read), and a query encoder chasing its own slow copy with no negatives collapses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .. import losses
from ..distributed import gather_no_grad, rank, world_size
from ..models.ema import MomentumTargets
from ..models.heads import projection_mlp
from ..params import hyper
from .base import Method, StepOutput, draw_seed, register, step_generator
from ..recipes import QUICK_COLOUR, Setting
from ..safeguards import NEGATIVES, NEGATIVES_HELP

_DEMO = "the MoCo authors' CIFAR-10 demo, facebookresearch/moco colab/moco_cifar10_demo.ipynb"


@dataclass
class MoCoV2Params:
    temperature: float = hyper(0.2, gt=0, le=10, help="InfoNCE temperature")
    queue_size: int = hyper(65536, ge=1, le=1_048_576, help="negative keys kept from earlier batches (the CIFAR demo uses 4096; keep it below the data set's size)")
    momentum: float = hyper(0.999, ge=0, le=1, help="momentum of the key encoder's EMA")
    projection_dim: int = hyper(128, ge=2, le=65536, help="output size of the MLP head")
    hidden_dim: int = hyper(2048, ge=2, le=65536, help="hidden size of the MLP head")
    bn_splits: int = hyper(8, ge=1, le=256, help="groups the shuffled key batch is normalised in (GPUs in the paper)")
    negatives: bool = hyper(True, help=NEGATIVES_HELP)


@register
class MoCoV2(Method):
    name = "moco_v2"
    family = "contrastive"
    summary = "match a momentum encoder's key against a queue of earlier negatives"
    paper = "Chen et al., arXiv 2003.04297, 2020"
    objective = ('L = −log [ exp(q·k⁺/τ) / (exp(q·k⁺/τ) + Σ_queue exp(q·k⁻/τ)) ]: k⁺ from the momentum encoder, k⁻ '
                 'earlier keys')
    Params = MoCoV2Params
    augment_preset = "moco_v2"
    # the authors' CIFAR-10 demo (facebookresearch/moco, colab/moco_cifar10_demo.ipynb, ResNet-18):
    # SGD at 0.06 for batch 512 (0.03 per 256), weight decay 5e-4, a 4096-key queue, a key
    # encoder at 0.99, temperature 0.1, BatchNorm shuffled in 8 splits, no warm-up; its views
    # are torchvision's RandomResizedCrop(32) (scale 0.08-1), jitter (0.4, 0.4, 0.4, 0.1) p 0.8,
    # greyscale 0.2 and a flip, no blur
    small_recipe = (
        Setting("train.batch_size", 512, f"{_DEMO}: bs 512"),
        Setting("optim.lr", 0.03, f"{_DEMO}: lr 0.06 for batch 512"),
        Setting("optim.weight_decay", 5e-4, f"{_DEMO}: wd 5e-4"),
        Setting("method.queue_size", 4096, f"{_DEMO}: moco-k 4096"),
        Setting("method.momentum", 0.99, f"{_DEMO}: moco-m 0.99"),
        Setting("method.temperature", 0.1, f"{_DEMO}: moco-t 0.1"),
        Setting("method.bn_splits", 8, f"{_DEMO}: bn-splits 8"),
        Setting("augment.crop_scale_min", 0.08, f"{_DEMO}: RandomResizedCrop(32) at torchvision's scale 0.08-1"),
        Setting("augment.blur_p", 0.0, f"{_DEMO}: no blur"),
    )
    quick_recipe = (
        *QUICK_COLOUR,
    )
    safeguard = NEGATIVES
    # SGD at 0.03 for a batch of 256, weight decay 1e-4, cosine schedule (MoCo v2); its
    # main_moco.py decays every parameter, biases and BatchNorm included
    optim_defaults = {"name": "sgd", "lr": 0.03, "weight_decay": 1e-4, "momentum": 0.9, "warmup_epochs": 0.0,
                      "decay_exclusions": "none"}
    local_batch_norm = ("key_backbone",)  # its shuffled BatchNorm normalises each part alone

    def __init__(self, backbone, params: MoCoV2Params, total_steps: int):
        super().__init__(backbone, params, total_steps)
        # MoCo v2's head has no BatchNorm: Linear-ReLU-Linear.
        self.projector = projection_mlp(backbone.feature_dim, params.hidden_dim, params.projection_dim,
                                        batch_norm=False)
        self.ema = MomentumTargets(params.momentum, schedule="constant")
        self.key_backbone = self.ema.copy(self.backbone)
        self.key_projector = self.ema.copy(self.projector)
        queue = F.normalize(torch.randn(params.queue_size, params.projection_dim), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.shuffle_seed = draw_seed()

    @torch.no_grad()
    def _keys(self, images: torch.Tensor, step: int) -> torch.Tensor:
        """Keys of this process's `images` with shuffled BatchNorm: the global batch in this step's
        random order, cut into `bn_splits` parts that each normalise alone, then put back in
        order (the code's shuffle across GPUs, one part per GPU). Each process encodes its share
        of the parts when they divide evenly among the processes (all of them otherwise), so N
        processes give the keys of one, and a resumed run the keys of an uninterrupted one."""
        everything = gather_no_grad(images)
        order = torch.randperm(len(everything), generator=step_generator(self.shuffle_seed, step))
        order = order.to(images.device)
        parts = everything[order].chunk(self.params.bn_splits)
        splits, processes = self.params.bn_splits, world_size()
        if len(everything) % splits == 0 and splits % processes == 0:
            share = splits // processes
            mine = parts[rank() * share:(rank() + 1) * share]
            shuffled = gather_no_grad(torch.cat([self.key_projector(self.key_backbone(p)) for p in mine]))
        else:
            shuffled = torch.cat([self.key_projector(self.key_backbone(part)) for part in parts])
        keys = torch.empty_like(shuffled)
        keys[order] = shuffled
        rows = slice(rank() * len(images), (rank() + 1) * len(images))
        return F.normalize(keys[rows], dim=1)

    def forward(self, views, step, indices=None):
        x_query, x_key = views[:2]
        q = self.projector(self.backbone(x_query))
        k = self._keys(x_key, step)
        if self.params.negatives:
            loss = losses.info_nce_with_queue(q, k, self.queue.clone(), self.params.temperature)
        else:
            loss = losses.positive_alignment(q, k, self.params.temperature)
        self._enqueue(gather_no_grad(k))
        fill = self.queue_filled.float() / self.params.queue_size
        return StepOutput(loss, {"queue fill": fill}, (q.detach(), k))

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        size = self.params.queue_size
        keys = keys[-size:].to(self.queue.dtype)
        positions = (self.queue_pointer + torch.arange(len(keys), device=keys.device)) % size
        self.queue[positions] = keys
        self.queue_pointer.copy_((self.queue_pointer + len(keys)) % size)
        self.queue_filled.copy_(torch.clamp(self.queue_filled + len(keys), max=size))

    @torch.no_grad()
    def after_optimizer_step(self, step):
        self.ema.update(step, self.total_steps)

    def parameter_groups(self):
        return [{"params": [p for m in (self.backbone, self.projector) for p in m.parameters()]}]
