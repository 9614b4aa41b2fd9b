"""I-JEPA (Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive
Architecture", CVPR 2023).

From one large context block of an image, predict the representations of a few target blocks
of the same image. Per image: 4 target blocks (each 15-20% of the patches, aspect 0.75-1.5) and
a context block (85-100%, square) from which every target patch is removed (`masking.ijepa_masks`).
The context encoder (the ViT being trained) sees only the context patches; the target encoder,
an EMA of it, sees the whole image, and its output patch tokens, layer-normalised over the
feature dimension, are the targets. A narrow transformer, the predictor, gets the context
tokens (projected to its width, plus their positions' embeddings) and, for each target block, a
learnt mask token plus each target position's embedding, and predicts the block's tokens. With
s_y(k) the target tokens of block k, s^_y(k) the predictions and
smooth_l1(d) = d^2 / 2 for |d| < 1, |d| - 1/2 otherwise (elementwise),

    loss = mean over blocks k, their patches and the feature dimensions of smooth_l1(s^_y(k) - s_y(k))

The paper writes an L2 distance; its code (src/train.py) uses `F.smooth_l1_loss`, which this
follows. The target encoder gets no gradient; its momentum rises linearly from 0.996 to 1 over
the run (the code's schedule). No augmentation beyond one crop (preset "ijepa"): the views need
not agree on anything, predicting in representation space is the whole objective.

Family: masked image modelling. The method hides patches and predicts what was there, in a
learnt representation space instead of pixels; it has no joint-embedding (invariance) objective
between views alongside, which is what the "hybrid" family (MSN) combines with masking.

Differences with the reference, from the shared ViT: the encoder has a class token (ignored by
the predictor and the targets). Its position embeddings are fixed sin-cos, as the code's, and so
are the predictor's. Evaluation average-pools the encoder's patch tokens, as
the paper does (it uses the target encoder's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, Problem
from ..masking import MultiBlock
from ..models.ema import MomentumTargets
from ..models.vit import Block, VisionTransformer, sincos_position_embedding
from ..params import hyper
from .base import StepOutput, register
from .masked import MaskedMethod
from ..recipes import NO_SMALL_RECIPE, QUICK_MASKED_LR, QUICK_MOMENTUM, QUICK_VIT, Setting


@dataclass
class IJEPAParams:
    # mask settings: the paper (section 3) and the code's ImageNet configs
    num_targets: int = hyper(4, ge=1, le=16, help="target blocks predicted per image (4 in the paper)")
    target_scale_min: float = hyper(0.15, gt=0, le=1, help="smallest target block, as a share of the patches (0.15)")
    target_scale_max: float = hyper(0.2, gt=0, le=1, help="largest target block, as a share of the patches (0.2)")
    target_aspect_min: float = hyper(0.75, gt=0, le=10, help="smallest height / width of a target block (0.75)")
    target_aspect_max: float = hyper(1.5, gt=0, le=10, help="largest height / width of a target block (1.5)")
    context_scale_min: float = hyper(0.85, gt=0, le=1, help="smallest context block before the targets are cut out (0.85)")
    context_scale_max: float = hyper(1.0, gt=0, le=1, help="largest context block before the targets are cut out (1.0)")
    # The paper's predictor for ViT-H/14 (1280 wide, 32 blocks) is 384 wide and 12 blocks deep
    # (the code's default depth is 6). For ViT-Tiny (192) and ViT-Small (384), 192 x 6 keeps it
    # narrower than (or as wide as) the encoder, as the paper's, at half the encoder's depth.
    predictor_dim: int = hyper(192, ge=8, le=4096, help="predictor width (384 for ViT-H in the paper), divisible by 4 "
                                                        "and by the encoder's heads")
    predictor_depth: int = hyper(6, ge=1, le=32, help="predictor transformer blocks (12 for ViT-H in the paper)")
    base_momentum: float = hyper(0.996, ge=0, le=1, help="target encoder's EMA momentum at the start; it rises linearly to 1")


class Predictor(nn.Module):
    """Context tokens (N, Kc, encoder width) at patch indices `context` (N, Kc) -> predicted
    tokens (N, T, Kt, encoder width) at the target blocks' indices `targets` (N, T, Kt).

    Each target block is predicted in its own sequence: the context tokens, then one learnt mask
    token per target patch, each plus its position's fixed sin-cos embedding (the reference's
    VisionTransformerPredictor)."""

    def __init__(self, encoder_dim: int, dim: int, depth: int, heads: int, grid: int):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("position", sincos_position_embedding(dim, grid)[0, 1:], persistent=False)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.project = nn.Linear(dim, encoder_dim)
        # the reference's initialisation: truncated normal (std 0.02) for the mask token and Linears
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.apply(VisionTransformer._init_weights)

    def forward(self, tokens: Tensor, context: Tensor, targets: Tensor, grid: int) -> Tensor:
        n, num_targets, kt = targets.shape
        kc = context.shape[1]
        position = self.position if len(self.position) == grid * grid else \
            sincos_position_embedding(self.position.shape[1], grid)[0, 1:].to(self.position.device)
        position = position.to(tokens.dtype)
        x = self.embed(tokens) + position[context]                                  # (N, Kc, d)
        dim = x.shape[-1]
        queries = self.mask_token.to(x.dtype) + position[targets]                  # (N, T, Kt, d)
        x = x.unsqueeze(1).expand(n, num_targets, kc, dim).reshape(n * num_targets, kc, dim)
        x = torch.cat([x, queries.reshape(n * num_targets, kt, dim)], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.project(self.norm(x)[:, kc:]).reshape(n, num_targets, kt, -1)


@register
class IJEPA(MaskedMethod):
    name = "ijepa"
    family = "masked image modelling"
    summary = "from a large context block, a narrow predictor predicts an EMA encoder's representations of 4 target blocks"
    paper = "Assran et al., CVPR 2023"
    objective = ('L = mean over target blocks of ‖pred(s_context, positions) − sg(s̄_target)‖²: s̄ from the EMA '
                 'target encoder on the whole image')
    Params = IJEPAParams
    backbones = ("vit_tiny", "vit_small")
    backbone_need = "predicts ViT patch tokens"
    # the paper's linear probes average-pool the patch tokens (there is no class-token objective)
    vit_features = "mean_patch"
    position_embedding = "sincos"  # fixed in the code's encoder and predictor
    augment_preset = "ijepa"
    small_recipe = (
        Setting("backbone.patch_size", 4, NO_SMALL_RECIPE.format("I-JEPA") + "; 4 px patches, as solo-learn's ViTs on CIFAR (mae.yaml)"),
    )
    quick_recipe = (
        *QUICK_VIT,
        Setting("optim.lr", 1e-3, QUICK_MASKED_LR),
        QUICK_MOMENTUM,
        Setting("backbone.position_embedding", "learnt", "quick: with fixed sin-cos its kNN after 5 minutes on shapes stayed under its random network's (0.132 against 0.137); learnt ones reach 0.155 (0.125)"),
    )
    matrix_names = ()
    # The code's ImageNet configs (in1k_vith14_ep300): AdamW, lr 0.001 for a batch of 2048 (128 x
    # 16 GPUs), so 1.25e-4 per 256, 40 warm-up epochs (from 0.0002 there, from 0 here), cosine to
    # 1e-6 (min_lr_ratio 0.001); weight decay from 0.04 to 0.4 on a cosine. No gradient clipping.
    optim_defaults = {"name": "adamw", "lr": 1.25e-4, "weight_decay": 0.04, "weight_decay_schedule": "cosine",
                      "weight_decay_end": 0.4, "momentum": 0.9, "warmup_epochs": 40.0, "min_lr_ratio": 0.001,
                      "grad_clip": 0.0}

    def __init__(self, backbone, params: IJEPAParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        heads = backbone.blocks[0].attn.heads  # the reference gives the predictor the encoder's heads
        problems = [Problem(f"method.{name}_min", f"({low:g}) must be <= method.{name}_max ({high:g})")
                    for name, low, high in (("target_scale", params.target_scale_min, params.target_scale_max),
                                            ("target_aspect", params.target_aspect_min, params.target_aspect_max),
                                            ("context_scale", params.context_scale_min, params.context_scale_max))
                    if low > high]
        if params.predictor_dim % 4 or params.predictor_dim % heads:
            problems.append(Problem("method.predictor_dim", f"({params.predictor_dim}) must be divisible by 4 and by "
                                                            f"the encoder's {heads} heads"))
        if problems:
            raise ConfigError(problems)
        self.predictor = Predictor(backbone.dim, params.predictor_dim, params.predictor_depth, heads, backbone.grid)
        # the code's schedule: linear from base_momentum at the first step to 1 at the run's end
        self.ema = MomentumTargets(params.base_momentum, schedule="linear")
        self.target_backbone = self.ema.copy(self.backbone)
        self.momentum = params.base_momentum
        self.seed_masks()

    def mask_strategy(self):
        """(context, targets) blocks. Drawn for the global batch (`step_masks`), so the block sizes
        are the global batch's, as one process would draw them."""
        p = self.params
        return MultiBlock(p.num_targets, (p.target_scale_min, p.target_scale_max),
                          (p.target_aspect_min, p.target_aspect_max), (p.context_scale_min, p.context_scale_max))

    def context_tokens(self, images: Tensor, context: Tensor) -> Tensor:
        """The context encoder's output patch tokens (N, Kc, dim), from the context patches only."""
        return self.backbone.tokens(images, keep=context)[:, 1:]

    @torch.no_grad()
    def target_tokens(self, images: Tensor, targets: Tensor) -> Tensor:
        """The target encoder's layer-normalised output tokens at each target block, (N, T, Kt, dim)."""
        tokens = self.target_backbone.tokens(images)[:, 1:]
        tokens = F.layer_norm(tokens, tokens.shape[-1:])   # over the feature dimension, no affine
        n, num_targets, kt = targets.shape
        gathered = torch.gather(tokens, 1, targets.reshape(n, -1, 1).expand(-1, -1, tokens.shape[-1]))
        return gathered.reshape(n, num_targets, kt, -1)

    def masked_loss(self, images: Tensor, masks: tuple[Tensor, Tensor]) -> Tensor:
        """The smooth L1 distance of the predicted target blocks to the target encoder's, for
        (context, targets) `masks`."""
        context, targets = masks
        target = self.target_tokens(images, targets)
        prediction = self.predictor(self.context_tokens(images, context), context, targets, self.grid(images))
        with torch.autocast(device_type=images.device.type, enabled=False):
            return F.smooth_l1_loss(prediction.float(), target.float())

    def forward(self, views, step, indices=None):
        images = views[0]
        loss = self.masked_loss(images, self.step_masks(images, step))
        return StepOutput(loss, {"smooth l1": loss.detach()})

    @torch.no_grad()
    def after_optimizer_step(self, step):
        self.momentum = self.ema.update(step, self.total_steps)

    @torch.no_grad()
    def pictures(self, images):
        """"context" (N, 1, H, W), 1 on the patches the context encoder sees, and "targets"
        (N, 1, H, W): target block k (1..T) drawn at k / T, 0 elsewhere (where blocks overlap,
        the higher k shows), so that each block can take its own colour."""
        context, targets = self.picture_masks(images)
        num_targets = targets.shape[1]
        blocks = torch.stack([self.mask_picture(targets[:, k], images) * (k + 1) / num_targets
                              for k in range(num_targets)])
        return {"context": self.mask_picture(context, images), "targets": blocks.amax(dim=0)}
