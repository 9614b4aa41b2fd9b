"""What every masked method shares: its masks, drawn per step and for pictures, and mask-token prediction.

A masked method (MAE, SimMIM, BEiT, MaskFeat, iBOT, I-JEPA, MSN) names how it hides patches, a
`masking.MaskStrategy` built from its hyperparameters, and the base draws them:

    def mask_strategy(self):
        return RandomPatches(self.params.mask_ratio)
    ...
    mask = self.step_masks(images, step)        # in forward: this step's masks
    mask = self.picture_masks(images)           # in pictures: the same masks at every step
    loss = self.masked_loss(images, mask)       # forward's loss, written once for held_out_loss too

Step masks come from a generator seeded by the method's `mask_seed` and the step, drawn for the
global batch, so that a resumed run and N processes mask as one uninterrupted process. Picture
masks come from PICTURE_SEED, so that the UI shows the same images with the same masks from step
to step. The strategy is built at each draw from `self.params`: the Augmentations tab's preview
swaps new parameters into a built method and redraws.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import masking
from ..distributed import rank, world_size
from ..models.modes import evaluation_mode
from .base import Method, draw_seed, step_generator

PICTURE_SEED = 0  # masks of `pictures` and `held_out_loss`: the same images keep the same masks


class MaskedMethod(Method):
    """Base class of the methods that hide patches of a ViT's input.

    A subclass defines `mask_strategy()` and calls `seed_masks()` last in its constructor. Those
    that predict from mask tokens (SimMIM, BEiT, MaskFeat) also set `head`, the per-patch head of
    `predict_masked`."""

    mask_seed: int  # the step masks' seed (`seed_masks`)
    head: nn.Module  # the per-patch head of `predict_masked`, where the method has one

    def mask_strategy(self) -> masking.MaskStrategy:
        """How this method hides patches, with its parameters as they are now."""
        raise NotImplementedError

    def seed_masks(self) -> None:
        """Draw `mask_seed` from torch's generator (`base.draw_seed`). Called last in the
        constructor, after the method's own weights are initialised: the seed is then the draw
        that runs written before this base existed made there, so their checkpoints resume with
        the masks they had."""
        self.mask_seed = draw_seed()

    def grid(self, images: Tensor) -> int:
        """Patches along a side of `images` (square, as the ViT sees them)."""
        return images.shape[-1] // self.backbone.patch_size

    def step_masks(self, images: Tensor, step: int, views: int = 1):
        """This step's masks for this process's `images`, for `views` views of each (the rows of
        each view in turn: (views * N, ...)). The strategy draws views x the global batch's rows,
        view by view, from this step's generator (`base.step_generator` of `mask_seed`) and this
        process keeps its own rows of each view, so that a resumed run and N processes mask as one
        uninterrupted process. A tensor, or a tuple of tensors, on the images' device."""
        n, processes = len(images), world_size()
        drawn = self.mask_strategy().draw(views * n * processes, self.grid(images),
                                          step_generator(self.mask_seed, step))
        rows = slice(rank() * n, (rank() + 1) * n)

        def mine(part: Tensor) -> Tensor:
            by_view = part.reshape(views, n * processes, *part.shape[1:])
            return by_view[:, rows].reshape(views * n, *part.shape[1:]).to(images.device)

        return tuple(mine(part) for part in drawn) if isinstance(drawn, tuple) else mine(drawn)

    def picture_masks(self, images: Tensor):
        """The masks of `pictures`: one row per image, from PICTURE_SEED, on the images' device."""
        drawn = self.mask_strategy().draw(len(images), self.grid(images), torch.Generator().manual_seed(PICTURE_SEED))
        if isinstance(drawn, tuple):
            return tuple(part.to(images.device) for part in drawn)
        return drawn.to(images.device)

    def mask_picture(self, mask: Tensor, images: Tensor) -> Tensor:
        """(N, 1, H, W) in {0, 1}: `mask` drawn over `images`, 1 on its patches (`masking.mask_picture`)."""
        return masking.mask_picture(mask, self.grid(images), tuple(images.shape[-2:]))

    def masked_loss(self, images: Tensor, masks) -> Tensor | None:
        """The training loss of `images` under `masks` (as `step_masks` draws them), with no side
        effect: what `forward` minimises and `held_out_loss` measures. None for a method whose
        loss needs more than that (iBOT: two views, and its forward moves the patch centre; MSN:
        two views, Sinkhorn and me-max over the global batch, and it counts prototype usage)."""
        return None

    @torch.no_grad()
    def held_out_loss(self, images):
        """`masked_loss` under the picture masks (PICTURE_SEED), in eval mode: the same images
        get the same masks at every epoch, so the value follows the network alone."""
        with evaluation_mode(self):
            loss = self.masked_loss(images, self.picture_masks(images))
        return None if loss is None else float(loss)

    def predict_masked(self, images: Tensor, mask: Tensor) -> Tensor:
        """`head` on every output patch token (N, P, ...), the encoder seeing mask tokens in
        place of the patches where `mask` is True (SimMIM's pixels, BEiT's token scores, MaskFeat's HOG)."""
        return self.head(self.backbone.tokens(images, mask=mask)[:, 1:])

    @torch.no_grad()
    def pictures(self, images):
        """"mask" (N, 1, H, W): 1 on the patches the picture masks hide."""
        return {"mask": self.mask_picture(self.picture_masks(images), images)}
