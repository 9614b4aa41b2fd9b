"""An in-memory image set (uint8 RGB tensor + labels) and the train/test pair a source yields.

Every data source in `ssl_engine.data` ends up as an `ImageSet`: the whole set as one
contiguous uint8 tensor of shape (N, 3, H, W) on the CPU, so that the trainer can move it to
the device once and augment whole batches there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ImageSet:
    """Images with their labels; a label of -1 means the image has no label."""

    images: torch.Tensor            # uint8, (N, 3, H, W), CPU, contiguous, RGB
    labels: torch.Tensor            # int64, (N,), -1 where the label is unknown
    class_names: list[str]          # empty when unlabelled
    paths: list[str] | None = None  # source file of each image, for folder sets

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 of shape ({self.images.shape[0]},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")
        if self.paths is not None and len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths for {len(self.labels)} images")

    @property
    def has_labels(self) -> bool:
        """True when some image has a label and the classes have names."""
        return bool(self.class_names) and bool((self.labels >= 0).any())

    def subset(self, index) -> ImageSet:
        """The images at `index` (a LongTensor or a list of ints), in that order."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        paths = None if self.paths is None else [self.paths[i] for i in index.tolist()]
        return ImageSet(images=self.images[index].contiguous(), labels=self.labels[index].clone(),
                        class_names=list(self.class_names), paths=paths)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DataSplits:
    """What `load_data` returns: the images SSL trains on and a labelled held-out set."""

    train: ImageSet                 # what SSL trains on (may hold unlabelled images, label -1)
    test: ImageSet | None           # labelled held-out images, or None when there are none
    skipped: list[tuple[str, str]]  # (path, reason) for files that could not be read
    name: str                       # e.g. "shapes", "digits", "folder:/abs/path", "cifar10"


def resize_images(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Square images (N, C, h, h), uint8 or float in 0..255, as uint8 (N, C, size, size).

    Bicubic with antialiasing (which matters when shrinking, e.g. STL-10's 96 px to 32 px),
    rounded and clamped to 0..255. Works in chunks so that large sets stay within memory.
    """
    if images.shape[-2:] == (size, size) and images.dtype == torch.uint8:
        return images.contiguous()
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].float()
        block = F.interpolate(block, size=(size, size), mode="bicubic", antialias=True,
                              align_corners=False)
        out[start:start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out
