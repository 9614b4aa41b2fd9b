"""What every SSL method is: a module that turns a batch of augmented views into a loss.

A method module declares, next to its code, everything the rest of the product needs:
its hyperparameters (`Params`, a dataclass of `hyper(...)` fields), its paper's augmentation
recipe (`augment_preset`) and optimisation recipe (`optim_defaults`), what its small-image and
quick recipes change (`small_recipe`, `quick_recipe`: see `ssl_engine.recipes`), what keeps it
from collapsing and the settings that switch that off (`safeguard`: see `ssl_engine.safeguards`),
a family and one line of summary. The Trainer knows nothing of any particular method: it calls
`forward` (the training step), `after_optimizer_step` (EMA targets, schedules), and, only when a
listener asked for them, `matrices` for the UI.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
from torch import nn

from .. import losses
from ..errors import ConfigError
from ..safeguards import Safeguard

FAMILIES = {
    "contrastive": "pull two views of an image together, push other images away",
    "clustering": "assign views to clusters or prototypes and predict one view's assignment from the other",
    "distillation": "a student network predicts a slowly moving or stop-gradient teacher",
    "redundancy reduction": "make the embedding dimensions invariant and decorrelated",
    "masked image modelling": "hide patches of the image and predict what was there",
    "hybrid": "combine a joint-embedding objective with masked prediction",
}


MATRIX_DIMS = 256  # largest matrix side sent to listeners


@dataclass
class StepOutput:
    """What one training step gives back.

    `loss` is the scalar to minimise; `terms` are its named parts (and any other scalar the
    method reports: a queue's fill, an entropy) for the loss plot; `embeddings` are the two
    views' projections of this batch, kept so that `matrices` can be computed on request.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    embeddings: tuple[torch.Tensor, torch.Tensor] | None = None


class Method(nn.Module):
    """Base class: a backbone plus the method's heads, targets and loss."""

    name: ClassVar[str]
    family: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    objective: ClassVar[str] = ""  # the loss as a formula, for the method's card
    Params: ClassVar[type]
    augment_preset: ClassVar[str]
    optim_defaults: ClassVar[dict]
    matrix_names: ClassVar[tuple[str, ...]] = ("cross-correlation", "similarity")
    backbones: ClassVar[tuple[str, ...] | None] = None  # the backbones it works with (None: any)
    backbone_need: ClassVar[str] = "masks ViT patches"  # why, for the message when built on another
    vit_features: ClassVar[str] = "class_token"  # a ViT's evaluation features: or "mean_patch"
    position_embedding: ClassVar[str] = "learnt"  # a ViT's positions: or "sincos" (fixed), "relative" (a bias)
    layer_scale: ClassVar[str] = "off"  # a ViT's LayerScale: or "on"
    uses_mask_token: ClassVar[bool] = False  # a ViT's mask token stands in for hidden patches
    local_batch_norm: ClassVar[tuple[str, ...]] = ()  # submodules whose BatchNorm stays per process
    small_recipe: ClassVar[tuple] = ()  # recipes.Setting values for images of 64 px and less
    quick_recipe: ClassVar[tuple] = ()  # recipes.Setting values, on the small ones, to learn in minutes
    safeguard: ClassVar[Safeguard | None] = None  # what keeps it from collapsing, and how to switch it off

    def __init__(self, backbone: nn.Module, params, total_steps: int):
        name = getattr(backbone, "name", type(backbone).__name__)
        if self.backbones is not None and name not in self.backbones:
            raise ConfigError([f"{self.name} {self.backbone_need}: backbone.name must be "
                               f"{' or '.join(self.backbones)}, got {name}"])
        super().__init__()
        self.backbone = backbone
        if not self.uses_mask_token and isinstance(getattr(backbone, "mask_token", None), nn.Parameter):
            # Frozen where the method never puts it in place of a patch (MAE and I-JEPA drop
            # patches instead): a parameter no step uses would stall DDP's gradient reduction.
            backbone.mask_token.requires_grad_(False)
        self.params = params
        self.total_steps = max(1, int(total_steps))

    # -- the training step -------------------------------------------------------------
    def forward(self, views: list[torch.Tensor], step: int,
                indices: torch.Tensor | None = None) -> StepOutput:  # noqa: D401
        """One training step's loss for a batch of augmented views (named `forward` for DDP).

        `views` holds the global views first, then any local (multi-crop) views; `indices` are
        the batch's positions in the training set (for methods with per-image pseudo-labels)."""
        raise NotImplementedError

    def before_epoch(self, epoch: int, dataset_features: Callable[..., torch.Tensor]) -> None:
        """Work at the start of each epoch (0-based). `dataset_features()` embeds the whole
        training set, un-augmented, in its stored order: DeepCluster clusters it, SeLa
        re-labels it; `dataset_features(encoder)` runs another module on the normalised images
        instead of the backbone (BEiT samples patches for its tokenizer), and
        `dataset_features(transform=f)` maps the [0, 1] images with `f` first (DeepCluster
        clusters greyscale images). Default: nothing (and the features are never computed)."""

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """Work after the optimiser step: EMA targets, queues, schedules. Default: nothing."""

    # -- what the optimiser sees -------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """Trainable parameters, as optimiser groups; a group may set `fixed_lr: True`."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    # -- what the UI may show ----------------------------------------------------------
    @torch.no_grad()
    def matrices(self, output: StepOutput) -> dict[str, torch.Tensor]:
        """Named square matrices about this batch: by default the cross-correlation of the
        two views' embeddings (as Barlow Twins defines it) and the cosine similarity of every
        view-1 embedding with every view-2 embedding (positives on the diagonal)."""
        if output.embeddings is None:
            return {}
        z1, z2 = (z.float() for z in output.embeddings)
        # The cross-correlation's top-left block over the first dimensions is exact
        # (standardisation is per dimension) and keeps an 8192-d projector's matrix small
        # enough to draw. The cosine needs each embedding's whole norm: rows are normalised
        # over every dimension first, then the first images are kept.
        cross_correlation = losses.cross_correlation(z1[:, :MATRIX_DIMS], z2[:, :MATRIX_DIMS])
        n = min(len(z1), MATRIX_DIMS)
        similarity = nn.functional.normalize(z1[:n], dim=1) @ nn.functional.normalize(z2[:n], dim=1).T
        return {"cross-correlation": cross_correlation, "similarity": similarity}

    @torch.no_grad()
    def histograms(self, output: StepOutput) -> dict[str, torch.Tensor]:
        """Named 1-D counts about this batch for the UI, e.g. how many images each prototype
        or cluster took (the sign of a collapse). Default: none."""
        return {}

    @torch.no_grad()
    def pictures(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images that show what the method does, for the UI, from a batch of normalised images
        (N, 3, H, W): e.g. "mask" (N, 1, H, W) in 0..1 and "reconstruction" (N, 3, H, W)
        normalised like the input. Masks come from a fixed seed so the same images keep the same
        masks from step to step. Default: none."""
        return {}

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The embedding the method's loss compares, of normalised `images` (N, 3, H, W): the
        projector's (or the head's) output on the backbone's features. What the diagnostics
        measure, since this is what collapses first when a safeguard is off; a method with no
        such head (the masked methods) is measured on its encoder's features; DINO and iBOT
        give their normalised bottleneck, before the prototypes. The caller sets eval mode and
        no_grad."""
        features = self.backbone(images)
        if self.family == "masked image modelling":  # their heads predict pixels or tokens of patches
            return features
        head = getattr(self, "projector", None) or getattr(self, "head", None)
        return features if head is None else head(features)

    @torch.no_grad()
    def held_out_loss(self, images: torch.Tensor) -> float | None:
        """The method's own loss on `images` (normalised, (N, 3, H, W): held-out images, not
        augmented), its random draws (masks) fixed, in eval mode and changing no state (no EMA,
        centre, queue, cluster or usage update): comparable from epoch to epoch. None where the
        loss cannot be had so. Default: None (a joint-embedding loss needs two views)."""
        return None


def features_by_resolution(backbone: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Backbone features of each run of consecutive same-sized views, one pass per run (the
    multi-crop wrapper of the SwAV and DINO code: BatchNorm sees the global views together).
    Returns one (views_in_run * N, D) tensor per run, in view order."""
    return [backbone(torch.cat(list(run))) for _, run in itertools.groupby(views, key=lambda view: view.shape[-2:])]


def draw_seed() -> int:
    """A seed for one of a method's own generators (patch masks, a codebook, a shuffle), drawn
    when the method is built from torch's generator, which the Trainer seeds from train.seed: a
    rebuilt method (a resumed run, another process) draws the same seed."""
    return int(torch.randint(0, 2 ** 31, ()))


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator for one training step's own random draws (patch masks), seeded by `seed`
    (a method draws it once when built, `draw_seed`, so it follows train.seed) and the step: a
    resumed run draws at step k exactly what the uninterrupted run drew there, which torch's
    global generator (not saved in checkpoints) would not give."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its `name`."""
    if cls.family not in FAMILIES:
        raise ValueError(f"unknown family {cls.family!r} for {cls.__name__}")
    METHODS[cls.name] = cls
    return cls
