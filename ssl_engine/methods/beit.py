"""BEiT (Bao, Dong, Piao, Wei, "BEiT: BERT Pre-Training of Image Transformers", ICLR 2022).

BERT's masked language modelling for images. A tokenizer turns every patch of an image into a
discrete visual token z_i from a codebook of K; the encoder (the ViT being trained) sees the
image with 40% of its patches, in blocks (BEiT's block-wise masking: 75 of 196 patches), replaced
by a learnt mask token, and a linear head over the codebook predicts each hidden patch's token
from its output token t_i. With m_i = 1 for a hidden patch,

    loss = sum_i m_i (-log softmax(W t_i + b)[z_i]) / sum_i m_i     (losses.masked_token_cross_entropy)

The tokenizer. BEiT's tokens come from the discrete VAE of DALL-E (Ramesh et al., 2021), trained
beforehand on 250M images, with 8192 tokens per 8 x 8-pixel-downsampled patch. Its weights cannot
be downloaded here, so this module learns its tokenizer from the user's own training set: k-means
over patch descriptors (each patch's pixels, as the encoder sees them after the data set's
normalisation, and by default standardised by the patch's own mean and variance, so that a token
describes the patch's pattern rather than its brightness). The codebook is built once, at the
start of the first epoch, from a seeded sample of the un-augmented training images' patches (a
few per image, at most 256 per token, as faiss subsamples), then kept fixed, as BEiT keeps its
tokenizer fixed: it is a buffer, so a checkpoint carries it and a resumed run predicts the same
tokens. Simple, deterministic for a seed and adapted to the data, but much weaker than a dVAE:
k-means tokens carry no context, so they describe pixels rather than parts.

Reported: the loss, the prediction accuracy on the hidden patches (BEiT's mlm_acc), and, for the
app, how often each token occurs among the batch's hidden patches (a codebook that puts most
patches under one token teaches little). Evaluation averages the encoder's patch tokens, as
BEiT's fine-tuning and linear probing do (its loss never reaches the class token directly). The
encoder is the shared ViT with BEiT's choices: a relative position bias shared by its blocks
instead of absolute position embeddings, and LayerScale from 0.1.
Augmentation: one view, crop 0.08-1, flip and colour jitter 0.4, preset "beit".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..distributed import all_reduce_mean, gather_no_grad
from ..errors import ConfigError, Problem
from ..kmeans import kmeans_centroids, nearest_centroid
from ..masking import Blocks
from ..models.vit import VisionTransformer, patchify, unpatchify
from ..params import hyper
from .base import StepOutput, draw_seed, register
from .masked import MaskedMethod
from ..recipes import NO_SMALL_RECIPE, QUICK_MASKED_LR, QUICK_VIT, Setting
KMEANS_ITERATIONS = 20  # Lloyd iterations of the codebook's k-means (DeepCluster's faiss setting)
# a larger sample is cut to this many patches per token (faiss's max_points_per_centroid)
KMEANS_PATCHES_PER_TOKEN = 256
PATCHES_PER_IMAGE = 16  # patches each training image gives to the sample (all of a 4 x 4 grid)


@dataclass
class BEiTParams:
    # 0.4: the paper's "approximately 40%" (section 2.5); its code masks 75 of 196 patches (0.38)
    mask_ratio: float = hyper(0.4, gt=0, lt=1, help="share of each image's patches replaced by the mask token, in blocks (0.4 in the paper)")
    # The paper's DALL-E tokenizer has 8192 tokens, learnt on 250M images; a k-means codebook
    # over a small set's patches needs far fewer to stay populated.
    codebook_size: int = hyper(512, ge=2, le=65536, help="visual tokens of the k-means tokenizer learnt on the training set "
                                                         "(BEiT's DALL-E dVAE has 8192)")
    normalize_patches: bool = hyper(True, help="tokenise each patch's pixels standardised by its own mean and variance "
                                               "(its pattern, not its brightness); off: the pixels as they are")


class PatchTokenizer(nn.Module):
    """A k-means visual tokenizer: each patch of a normalised image -> the index of the nearest
    codebook entry to its descriptor (its pixels in `patchify` order, optionally standardised per
    patch). The codebook is a buffer, zero until `fit`."""

    def __init__(self, patch_size: int, codebook_size: int, normalize: bool):
        super().__init__()
        self.patch_size, self.normalize = patch_size, normalize
        self.register_buffer("codebook", torch.zeros(codebook_size, 3 * patch_size ** 2))
        self.register_buffer("fitted", torch.tensor(False))

    def descriptors(self, images: Tensor) -> Tensor:
        """(N, P, D) what k-means sees of each patch (MAE's per-patch standardisation when `normalize`)."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            patches = patchify(images.float(), self.patch_size)
            return losses.standardise_patches(patches) if self.normalize else patches

    @torch.no_grad()
    def fit(self, descriptors: Tensor, generator: torch.Generator) -> None:
        """Learn the codebook: k-means of the (M, D) descriptors, from `generator`'s draws."""
        centroids, _ = kmeans_centroids(descriptors.float(), len(self.codebook), KMEANS_ITERATIONS, generator)
        self.codebook.copy_(centroids)
        self.fitted.fill_(True)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """(N, P) long: the token of every patch of the normalised images (N, 3, H, W)."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            found = self.descriptors(images)
            return nearest_centroid(found.flatten(0, 1), self.codebook).reshape(found.shape[:2])

    @torch.no_grad()
    def decode(self, tokens: Tensor, images: Tensor) -> Tensor:
        """(N, 3, H, W): every patch of `images` replaced by its token's codebook entry (brought
        back to the patch's own mean and deviation when standardised): how the tokenizer sees them."""
        entries = self.codebook[tokens]
        if self.normalize:
            mean, std = losses.patch_mean_std(patchify(images.float(), self.patch_size))
            entries = entries * std + mean
        return unpatchify(entries, self.patch_size)


class _PatchSample(nn.Module):
    """For `dataset_features`: the descriptors of PATCHES_PER_IMAGE random patches of each image,
    (N, count * D). `embed` passes the training set in its stored order, so the seeded generator
    picks the same patches in every run and every process."""

    def __init__(self, tokenizer: PatchTokenizer, generator: torch.Generator):
        super().__init__()
        self.tokenizer, self.generator = tokenizer, generator

    def forward(self, images: Tensor) -> Tensor:
        found = self.tokenizer.descriptors(images)
        n, patches, dim = found.shape
        chosen = torch.rand(n, patches, generator=self.generator).argsort(dim=1)[:, :PATCHES_PER_IMAGE]
        return found.gather(1, chosen.to(found.device).unsqueeze(-1).expand(-1, -1, dim)).flatten(1)


@dataclass
class BEiTStepOutput(StepOutput):
    """StepOutput plus the tokens of the hidden patches, over the global batch."""

    masked_tokens: Tensor | None = None


@register
class BEiT(MaskedMethod):
    name = "beit"
    family = "masked image modelling"
    summary = "mask 40% of the patches in blocks; predict their visual tokens (here a k-means codebook of the data's patches)"
    paper = "Bao et al., ICLR 2022"
    objective = ("L = −Σ over masked patches log p(tₚ | x̃): tₚ the patch's visual token from the tokenizer, x̃ the "
                 'image with masked patches')
    Params = BEiTParams
    backbones = ("vit_tiny", "vit_small")
    uses_mask_token = True
    # BEiT's classification code pools the patch tokens by default (use_mean_pooling)
    vit_features = "mean_patch"
    # the defaults of BEiT's pre-training script: a shared relative position bias and no absolute
    # embeddings (shared_rel_pos_bias True, abs_pos_emb False), LayerScale from 0.1
    position_embedding = "relative"
    layer_scale = "on"
    augment_preset = "beit"
    small_recipe = (
        Setting("backbone.patch_size", 4, NO_SMALL_RECIPE.format("BEiT") + "; 4 px patches, as solo-learn's ViTs on CIFAR (mae.yaml)"),
    )
    quick_recipe = (
        *QUICK_VIT,
        Setting("optim.lr", 1e-3, QUICK_MASKED_LR),
        Setting("backbone.layer_scale", "off", "quick: at 11 epochs on shapes kNN 0.162 (random 0.124) without LayerScale against 0.145 (0.119) with it"),
    )
    matrix_names = ()
    # The paper's pre-training (appendix, and the README's ImageNet-1k command): AdamW with
    # betas (0.9, 0.999), lr 1.5e-3 for a batch of 2048 (1.875e-4 per 256), weight decay 0.05,
    # 10 warm-up epochs, cosine to the code's min_lr 1e-5 (1/150 of the peak), gradients
    # clipped at 3.0.
    optim_defaults = {"name": "adamw", "lr": 1.875e-4, "weight_decay": 0.05, "momentum": 0.9,
                      "warmup_epochs": 10.0, "min_lr_ratio": 1e-5 / 1.5e-3, "grad_clip": 3.0}

    def __init__(self, backbone, params: BEiTParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        self.tokenizer = PatchTokenizer(backbone.patch_size, params.codebook_size, params.normalize_patches)
        # the linear head over the codebook (the BEiT code's lm_head, truncated normal 0.02)
        self.head = nn.Linear(backbone.dim, params.codebook_size)
        VisionTransformer._init_weights(self.head)
        self.seed_masks()
        self.codebook_seed = draw_seed()

    def mask_strategy(self):
        return Blocks(self.params.mask_ratio)

    @torch.no_grad()
    def before_epoch(self, epoch, dataset_features):
        """Build the codebook once, at the first epoch (a resumed run loads it instead)."""
        if bool(self.tokenizer.fitted):
            return
        generator = torch.Generator().manual_seed(self.codebook_seed)
        sample = dataset_features(_PatchSample(self.tokenizer, generator))
        descriptors = sample.reshape(-1, self.tokenizer.codebook.shape[1])
        k = self.params.codebook_size
        if k > len(descriptors):
            raise ConfigError([Problem("method.codebook_size", f"({k}) must be at most the number of training patches "
                               f"sampled for the tokenizer ({len(descriptors)}: up to {PATCHES_PER_IMAGE} per image)")])
        most = KMEANS_PATCHES_PER_TOKEN * k
        if len(descriptors) > most:
            descriptors = descriptors[torch.randperm(len(descriptors), generator=generator)[:most].to(descriptors.device)]
        self.tokenizer.fit(descriptors, generator)

    def _scored(self, images: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The loss, the predicted token scores (N, P, K) and the tokenizer's tokens (N, P)."""
        tokens = self.tokenizer(images)
        logits = self.predict_masked(images, mask)
        return losses.masked_token_cross_entropy(logits, tokens, mask), logits, tokens

    def masked_loss(self, images: Tensor, mask: Tensor) -> Tensor | None:
        if not bool(self.tokenizer.fitted):  # before the first epoch's work: no codebook, no targets
            return None
        return self._scored(images, mask)[0]

    def forward(self, views, step, indices=None):
        if not bool(self.tokenizer.fitted):
            raise RuntimeError("beit needs its codebook: before_epoch(0, dataset_features) builds it")
        images = views[0]
        mask = self.step_masks(images, step)
        loss, logits, tokens = self._scored(images, mask)
        with torch.no_grad():
            masked_tokens = tokens[mask]
            accuracy = all_reduce_mean((logits[mask].argmax(dim=-1) == masked_tokens).float().mean())
        terms = {"token cross-entropy": loss.detach(), "token accuracy": accuracy}
        return BEiTStepOutput(loss, terms, masked_tokens=gather_no_grad(masked_tokens))

    @torch.no_grad()
    def histograms(self, output):
        """How many of the batch's hidden patches each visual token is the target of (codebook_size
        bars, summing to the number of hidden patches)."""
        if getattr(output, "masked_tokens", None) is None:
            return {}
        return {"token usage": torch.bincount(output.masked_tokens, minlength=self.params.codebook_size).float()}

    @torch.no_grad()
    def pictures(self, images):
        """"mask" (N, 1, H, W), 1 on hidden patches; once the codebook exists, "tokens" (N, 1, H, W),
        each patch's token id scaled to 0..1, and "token_reconstruction" (N, 3, H, W), each patch
        replaced by its token's codebook entry (normalised like the input)."""
        grid, size = self.grid(images), tuple(images.shape[-2:])
        shown = super().pictures(images)
        if bool(self.tokenizer.fitted):
            tokens = self.tokenizer(images)
            scaled = tokens.float() / max(self.params.codebook_size - 1, 1)
            shown["tokens"] = F.interpolate(scaled.reshape(len(images), 1, grid, grid), size=size, mode="nearest")
            shown["token_reconstruction"] = self.tokenizer.decode(tokens, images)
        return shown
