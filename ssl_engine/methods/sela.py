"""SeLa (Asano, Rupprecht, Vedaldi, "Self-labelling via simultaneous clustering and
representation learning", ICLR 2020).

A classification head h on the backbone f is trained with cross-entropy on pseudo-labels y_n,
one per training image, and the labels are in turn chosen to minimise that same cross-entropy
under the constraint that the N images split equally among the K clusters. With P = softmax of
h(f(x_n)) over the whole training set, the relaxed problem

    min_Q <Q, -log P>  subject to  Q 1 = 1 / N,  Q^T 1 = 1 / K   (plus an entropy term 1 / lambda)

is solved by Sinkhorn-Knopp on P^lambda, i.e. on exp(log P / epsilon) with epsilon = 1 / lambda,
and each image takes the cluster of its largest entry of Q. The equipartition is what keeps the
trivial solution (every image in one cluster) out. Training alternates: labels are recomputed
every `relabel_every_epochs` epochs, from the un-augmented images, and between updates each
augmented view of an image is classified into its image's label. With several heads, each has
its own labels and the loss is their mean (the paper's best models use 10 heads).

Before the first update the labels are a seeded random equipartition; as in the reference code
(yukimasano/self-label), the first update comes before the first step.

The defaults and where they come from: lambda 25 is the paper's and its ImageNet code's
(main.py, `--lamb 25`); one label update per epoch is what the repository's scripts/cifar.sh
runs (400 updates in 400 epochs). Its cifar.py alone defaults to lambda 10 and 400 updates
spread evenly over 800 epochs (one every 2 epochs), and main.py to 100 updates in 200 epochs
on a quadratic spacing, most of them early (half in the first quarter); a schedule here is
every `relabel_every_epochs` epochs. Both codes' SGD decays every parameter, biases and
BatchNorm included (`decay_exclusions` none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .. import losses
from ..distributed import all_reduce_sum
from ..models.heads import projection_mlp
from ..params import hyper
from .base import Method, StepOutput, register
from ..recipes import QUICK_COLOUR, Setting

_CIFAR = "the SeLa authors' CIFAR-10 script, yukimasano/self-label scripts/cifar.sh and cifar.py"


@dataclass
class SeLaParams:
    num_clusters: int = hyper(128, ge=2, le=100000, help="clusters K per head (128 in the paper's CIFAR runs, 3000 for ImageNet)")
    num_heads: int = hyper(1, ge=1, le=64, help="classification heads, each with its own pseudo-labels (10 in the paper's best runs)")
    hidden_dim: int = hyper(0, ge=0, le=65536, help="hidden size of an MLP head (0: a linear head)")
    sinkhorn_lambda: float = hyper(25.0, gt=0, le=1000, help="lambda of the label optimisation: Sinkhorn on P^lambda, larger is closer to the exact transport (25: the paper and its ImageNet code; its CIFAR code: 10)")
    sinkhorn_iterations: int = hyper(100, ge=1, le=100000, help="Sinkhorn-Knopp rounds per label update (the reference iterates to convergence)")
    relabel_every_epochs: int = hyper(1, ge=1, le=100000, help="epochs between label updates, the first before epoch 0 (1: the reference's scripts/cifar.sh, 400 in 400 epochs; its cifar.py: 400 in 800, every 2)")


@dataclass
class SeLaOutput(StepOutput):
    batch_predictions: torch.Tensor | None = None  # (K,) argmax of head 0 on the global views, global batch


def random_balanced_labels(count: int, clusters: int, generator: torch.Generator) -> torch.Tensor:
    """`count` labels in which every cluster appears count // K or count // K + 1 times, shuffled."""
    return (torch.arange(count) % clusters)[torch.randperm(count, generator=generator)]


@register
class SeLa(Method):
    name = "sela"
    family = "clustering"
    summary = "classify views into pseudo-labels that optimal transport spreads equally over clusters"
    paper = "Asano et al., ICLR 2020"
    objective = ('L = CE(head(f(x)), yₓ): pseudo-labels yₓ by Sinkhorn-Knopp optimal transport, an equal share of '
                 'images per cluster')
    Params = SeLaParams
    # The paper's views are random crops, flips, colour jitter (0.4, 0.4, 0.4, 0.4) and greyscale
    # 0.2 (reference data.py, augs=3): MoCo v2's preset has that jitter strength and greyscale.
    augment_preset = "moco_v2"
    small_recipe = (
        Setting("train.batch_size", 128, f"{_CIFAR}: bs 128"),
        Setting("optim.lr", 0.06, f"{_CIFAR}: lr 0.03 at batch 128"),
        Setting("optim.weight_decay", 5e-4, f"{_CIFAR}: weight decay 5e-4 (cifar.py), on every parameter"),
        Setting("method.num_heads", 10, f"{_CIFAR}: hc 10 heads"),
        Setting("method.num_clusters", 128, f"{_CIFAR}: ncl 128 clusters"),
        Setting("method.sinkhorn_lambda", 10.0, f"{_CIFAR}: cifar.py's lamb default 10"),
        Setting("method.relabel_every_epochs", 1, f"{_CIFAR}: 400 label updates in 400 epochs"),
        Setting("augment.crop_scale_min", 0.2, f"{_CIFAR}: RandomResizedCrop scale 0.2-1"),
        Setting("augment.jitter_p", 1.0, f"{_CIFAR}: ColorJitter(0.4, 0.4, 0.4, 0.4) on every image"),
        Setting("augment.hue", 0.4, f"{_CIFAR}: ColorJitter hue 0.4"),
        Setting("augment.blur_p", 0.0, f"{_CIFAR}: no blur"),
    )
    quick_recipe = (
        *QUICK_COLOUR,
        Setting("train.batch_size", 64, "quick: smaller batches, 4x the steps fitting each round of pseudo-labels"),
        Setting("optim.lr", 0.2, "quick: the paper's step size (0.05) at a quarter of its batch"),
    )
    # SGD at 0.05 for a batch of 256, momentum 0.9, weight decay 1e-5 on every parameter
    # (reference main.py: its --lr help says 0.05, the flag's default is 0.08; its step decay
    # becomes our cosine). Its cifar.py: 0.05 for a batch of 64, weight decay 5e-4.
    optim_defaults = {"name": "sgd", "lr": 0.05, "weight_decay": 1e-5, "momentum": 0.9, "warmup_epochs": 0.0,
                      "decay_exclusions": "none"}

    def __init__(self, backbone, params: SeLaParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        layers = 2 if params.hidden_dim else 1
        self.heads = nn.ModuleList(
            projection_mlp(backbone.feature_dim, params.hidden_dim, params.num_clusters, num_layers=layers)
            for _ in range(params.num_heads))
        # (heads, N): sized when the training set is first seen (or a checkpoint is loaded)
        self.register_buffer("pseudo_labels", torch.zeros(params.num_heads, 0, dtype=torch.long))
        self.register_buffer("labels_changed", torch.zeros(()))
        self.register_buffer("labelled_epoch", torch.full((), -1, dtype=torch.long))
        self.label_seed = int(torch.randint(2**31 - 1, ()))  # follows train.seed

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        labels = state_dict.get(prefix + "pseudo_labels")
        if labels is not None:
            self.pseudo_labels = torch.zeros_like(labels, device=self.pseudo_labels.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def before_epoch(self, epoch, dataset_features):
        # a run resumed within an epoch keeps the labels that epoch started with
        if epoch % self.params.relabel_every_epochs or int(self.labelled_epoch) == epoch:
            return
        self.relabel(dataset_features())
        self.labelled_epoch.fill_(epoch)

    @torch.no_grad()
    def relabel(self, features: torch.Tensor) -> None:
        """New pseudo-labels for all N training images from their (N, D) backbone features."""
        count, device = len(features), self.pseudo_labels.device
        if self.pseudo_labels.shape[1] != count:
            generator = torch.Generator().manual_seed(self.label_seed)
            self.pseudo_labels = torch.stack([random_balanced_labels(count, self.params.num_clusters, generator)
                                              for _ in self.heads]).to(device)
        training = self.heads.training
        self.heads.eval()
        # Every process holds all N images, so the Sinkhorn sums over processes count each image
        # world-size times: a common factor that its normalisations cancel (same labels).
        new_labels = torch.stack([
            losses.sinkhorn(F.log_softmax(head(features.to(device)).float(), dim=1),
                            1 / self.params.sinkhorn_lambda, self.params.sinkhorn_iterations).argmax(dim=1)
            for head in self.heads])
        self.heads.train(training)
        self.labels_changed.copy_((new_labels != self.pseudo_labels).float().mean())
        self.pseudo_labels.copy_(new_labels)

    def forward(self, views, step, indices=None):
        if indices is None or self.pseudo_labels.shape[1] == 0:
            raise RuntimeError("SeLa needs the batch's indices and labels from before_epoch")
        targets = self.pseudo_labels[:, indices]
        logits = [[head(features) for head in self.heads] for features in map(self.backbone, views)]
        with torch.autocast(device_type=targets.device.type, enabled=False):
            loss = torch.stack([F.cross_entropy(per_head[h].float(), targets[h])
                                for per_head in logits for h in range(len(self.heads))]).mean()
        first = [per_head[0].detach().float() for per_head in logits[:2]]
        with torch.no_grad():
            predictions = torch.bincount(torch.cat(first).argmax(dim=1), minlength=self.params.num_clusters)
            predictions = all_reduce_sum(predictions.float())
        terms = {"cross-entropy": loss.detach(), "labels changed": self.labels_changed.clone()}
        embeddings = (first[0], first[1]) if len(first) == 2 else None
        return SeLaOutput(loss, terms, embeddings, batch_predictions=predictions)

    @torch.no_grad()
    def histograms(self, output):
        """Cluster sizes over the training set (head 0's labels) and head 0's batch predictions."""
        sizes = torch.bincount(self.pseudo_labels[0], minlength=self.params.num_clusters).float()
        return {"cluster sizes": sizes, "batch predictions": output.batch_predictions}
