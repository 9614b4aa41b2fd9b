"""Vision Transformers (Dosovitskiy et al., ICLR 2021) as SSL backbones: `vit_tiny`, `vit_small`.

Patch size and image size are free, so 32 px images with 4 px patches (an 8 x 8 grid) work.
The encoder has a class token, positions (learnt absolute embeddings, as in DINO; fixed 2-D
sin-cos ones, as in MAE, I-JEPA and MoCo v3, either interpolated for crops of another size, as
DINO does for its local crops; or a relative position bias shared by the blocks, as in BEiT and
SimMIM: `relative_position`), optional LayerScale and a learnt mask token, and offers what the
methods need beyond pooled features:

    features = vit(images)                         # (N, dim): the final class token
    tokens = vit.tokens(images)                    # (N, 1 + P, dim): class token, then patches
    tokens = vit.tokens(images, mask=mask)         # masked patches replaced by the mask token
    tokens = vit.tokens(images, keep=keep)         # only the kept patches (MAE, MSN)
    attention = vit.last_attention(images)         # (N, heads, 1 + P, 1 + P), last block
    maps = vit.class_token_attention(images)       # (N, heads, grid, grid), class token -> patches
    patches = patchify(images, vit.patch_size)     # (N, P, p^2 * 3) pixels in token order; unpatchify inverts

Widths follow DeiT: tiny 192 wide with 3 heads, small 384 with 6, 12 blocks each; pre-norm
blocks, GELU MLP of ratio 4, truncated-normal initialisation with std 0.02.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .relative_position import RelativePositionBias

POSITION_EMBEDDINGS = ("learnt", "sincos", "relative")
EVALUATION_POOLINGS = ("class_token", "mean_patch")  # what `evaluation_features` returns
# LayerScale's starting value where a method turns it on: BEiT's and SimMIM's, and CaiT's for
# networks of up to 18 blocks
LAYER_SCALE_INIT = 0.1


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, return_attention: bool = False):
        """`bias` (N or 1, heads, T, T) is added to the attention logits (a relative position bias)."""
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if bias is not None:
            bias = bias.to(q.dtype)  # under autocast q is half precision, the table float32
        if return_attention:  # the explicit softmax, to hand the weights out
            logits = q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5
            attention = (logits if bias is None else logits + bias).softmax(dim=-1)
            out = attention @ v
        else:  # the fused kernel: same result, less memory
            attention, out = None, F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = self.proj(out.transpose(1, 2).reshape(n, t, d))
        return (out, attention) if return_attention else out


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x)).

    With `layer_scale` > 0 each branch is first multiplied by a learnt per-channel scale that
    starts at that value (LayerScale, Touvron et al. 2021, "Going deeper with image transformers";
    BEiT and SimMIM start it at 0.1)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, layer_scale: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale)) if layer_scale > 0 else None
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale)) if layer_scale > 0 else None

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, return_attention: bool = False):
        out, attention = self.attn(self.norm1(x), bias, return_attention=True) if return_attention \
            else (self.attn(self.norm1(x), bias), None)
        x = x + (out if self.gamma1 is None else self.gamma1 * out)
        out = self.mlp(self.norm2(x))
        x = x + (out if self.gamma2 is None else self.gamma2 * out)
        return (x, attention) if return_attention else x


class VisionTransformer(nn.Module):
    def __init__(self, *, image_size: int, patch_size: int, dim: int, depth: int, heads: int, name: str,
                 position: str = "learnt", layer_scale: float = 0.0, evaluation_pooling: str = "class_token"):
        super().__init__()
        if position not in POSITION_EMBEDDINGS:
            raise ValueError(f"position embeddings must be one of {', '.join(POSITION_EMBEDDINGS)}, got {position!r}")
        if evaluation_pooling not in EVALUATION_POOLINGS:
            raise ValueError(f"evaluation pooling must be one of {', '.join(EVALUATION_POOLINGS)}, "
                             f"got {evaluation_pooling!r}")
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.name, self.small_stem = name, False
        # what `evaluation_features` returns: "class_token" or "mean_patch" (set from the config,
        # or given here by an exported backbone's constructor arguments)
        self.evaluation_pooling = evaluation_pooling
        self.feature_dim = self.dim = dim
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, layer_scale=layer_scale) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.relative_position = RelativePositionBias(self.grid, heads) if position == "relative" else None
        for parameter in (self.cls_token, self.mask_token, self.pos_embed):
            nn.init.trunc_normal_(parameter, std=0.02)
        if position == "relative":
            # no absolute embeddings, as in the BEiT and SimMIM codes (use_abs_pos_emb=False): zeros
            # that take no gradient, so that checkpoints and EMA copies keep one layout
            self.pos_embed.data.zero_()
            self.pos_embed.requires_grad_(False)
        if position == "sincos":
            # Fixed, as in the MAE and I-JEPA code (a parameter that takes no gradient). Learnt ones
            # start at std 0.02 against patch embeddings near 0.5, so for the first few hundred
            # steps the blocks barely know where a patch is; these (values in [-1, 1]) tell them
            # from the first step.
            self.pos_embed.data.copy_(sincos_position_embedding(dim, self.grid))
            self.pos_embed.requires_grad_(False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def position_embedding(self, grid: int) -> torch.Tensor:
        """(1, 1 + grid^2, dim): the embeddings, bicubically resized for another grid."""
        if grid == self.grid:
            return self.pos_embed
        cls, patches = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patches = patches.reshape(1, self.grid, self.grid, self.dim).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
        return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, grid * grid, self.dim)], dim=1)

    def embed(self, images: torch.Tensor, mask: torch.Tensor | None = None,
              keep: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens before the blocks: (N, 1 + P, dim), or (N, 1 + K, dim) with `keep` (N, K) indices.

        `mask` (N, P) bool puts the mask token in place of the masked patches (SimMIM, iBOT)."""
        x = self.patch_embed(images)
        grid = x.shape[-1]
        x = x.flatten(2).transpose(1, 2)                              # (N, P, dim)
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        position = self.position_embedding(grid)
        x = x + position[:, 1:]
        if keep is not None:
            x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, self.dim))
        cls = (self.cls_token + position[:, :1]).expand(len(x), -1, -1)
        return torch.cat([cls, x], dim=1)

    def tokens(self, images: torch.Tensor, mask: torch.Tensor | None = None,
               keep: torch.Tensor | None = None) -> torch.Tensor:
        """All output tokens after the final norm: class token first, then the patches."""
        x = self.embed(images, mask, keep)
        bias = self.attention_bias(images, keep)
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)

    def attention_bias(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor | None:
        """The relative position bias every block adds to its attention logits, or None."""
        if self.relative_position is None:
            return None
        return self.relative_position(images.shape[-1] // self.patch_size, keep)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tokens(images)[:, 0]

    def evaluation_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, dim) features for kNN, linear probes and maps: the class token, or with
        `evaluation_pooling` "mean_patch" the mean of the patch tokens (as I-JEPA evaluates)."""
        tokens = self.tokens(images)
        return tokens[:, 1:].mean(dim=1) if self.evaluation_pooling == "mean_patch" else tokens[:, 0]

    @torch.no_grad()
    def last_attention(self, images: torch.Tensor) -> torch.Tensor:
        """The last block's attention weights, (N, heads, 1 + P, 1 + P); row 0 is the class
        token's attention over itself and the patches (DINO's emergent segmentation)."""
        x = self.embed(images)
        bias = self.attention_bias(images)
        for block in self.blocks[:-1]:
            x = block(x, bias)
        return self.blocks[-1](x, bias, return_attention=True)[1]

    @torch.no_grad()
    def class_token_attention(self, images: torch.Tensor) -> torch.Tensor:
        """(N, heads, grid, grid) float32: the last block's attention of the class token over the
        patches, one map per head, each scaled so that its largest weight is 1 (the maps DINO
        shows; square images only)."""
        weights = self.last_attention(images)[:, :, 0, 1:].float()
        side = round(weights.shape[-1] ** 0.5)
        maps = weights.reshape(len(images), weights.shape[1], side, side)
        return maps / maps.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) images -> (N, P, patch_size^2 * C) pixel patches, in the token order of
    `VisionTransformer.tokens` (row by row); inside a patch, pixels row by row with their C
    channels last, as in the MAE code. The pixel targets of MAE and SimMIM."""
    n, c, h, w = images.shape
    p = patch_size
    x = images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)   # (N, h, w, p, p, C)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """The inverse of `patchify` for a square grid: (N, P, patch_size^2 * C) -> (N, C, H, W)."""
    n, count, _ = patches.shape
    grid, p = math.isqrt(count), patch_size
    if grid * grid != count:
        raise ValueError(f"{count} patches do not make a square grid")
    x = patches.reshape(n, grid, grid, p, p, channels).permute(0, 5, 1, 3, 2, 4)  # (N, C, h, p, w, p)
    return x.reshape(n, channels, grid * p, grid * p)


def sincos_position_embedding(dim: int, grid: int) -> torch.Tensor:
    """(1, 1 + grid^2, dim) fixed 2-D sine-cosine position embeddings, as in the MAE code: the
    first half of the dimensions encodes the column, the second the row, each as sin and cos at
    frequencies 1 / 10000^(k / (dim / 4)); the class token's position is zeros."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, columns = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                                   torch.arange(grid, dtype=torch.float64), indexing="ij")

    def one_axis(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    patches = torch.cat([one_axis(columns), one_axis(rows)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), patches]).float().unsqueeze(0)


VIT_WIDTHS = {"vit_tiny": (192, 3), "vit_small": (384, 6)}  # (dim, heads), 12 blocks each


def build_vit(name: str, image_size: int, patch_size: int, depth: int = 12,
              position: str = "learnt", layer_scale: float = 0.0) -> VisionTransformer:
    dim, heads = VIT_WIDTHS[name]
    return VisionTransformer(image_size=image_size, patch_size=patch_size, dim=dim, depth=depth,
                             heads=heads, name=name, position=position, layer_scale=layer_scale)

