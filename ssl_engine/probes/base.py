"""A live view is a probe: a name, a default rate, a `compute(context)` and a kind of display.

The trainer asks each registered probe for its value only at the steps (or epochs) some
listener asked for it, through one `ProbeContext` per step or epoch end whose costly
inputs (the sample images, the evaluation images' features) are made once, on first use,
and shared by every probe of that moment. A probe returns plain numbers or a dataclass of
numpy arrays (its payload), or None when it has nothing to show for this method or backbone.

Displays say how a window draws the payload: "views" (image columns), "matrices",
"histograms", "pictures" (masks and images over the originals), "attention", "map" (a 2D
embedding map) and "curve" (a number, or a dict of numbers, per epoch; these also go in the
epoch rows of metrics.jsonl). A probe marked `always_recorded` is computed for the run folder in
every run, headless too, whether or not a listener asked (the diagnostics, which every run's
metrics.jsonl holds).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Literal

import numpy as np
import torch

from ..augment.display import to_display
from ..augment.ops import normalize
from ..eval.embed import embed

DISPLAYS = ("views", "matrices", "histograms", "pictures", "attention", "map", "curve")


@dataclass(frozen=True)
class Probe:
    name: str
    compute: Callable[["ProbeContext"], Any]
    per: Literal["step", "epoch"]
    every: int          # the default rate, in steps or epochs (what the window asks for)
    display: str        # one of DISPLAYS
    help: str
    first_step: bool = False   # a step probe also after the run's first step, so a window shows it at once
    at_start: bool = False     # an epoch probe also before the first step (epoch 0): the random-init floor
    always_recorded: bool = False  # the run folder records it at its default rate, headless runs too
    columns: tuple[str, ...] = ()  # a curve of a dict: its keys, metrics.jsonl's columns (to read it back)

    @property
    def keeps_every_value(self) -> bool:
        """A curve needs each point; of a picture only the newest matters."""
        return self.display == "curve"


@dataclass
class ProbeResult:
    """What probe `name` measured at `step` (after that many optimiser steps) in `epoch` (the
    epochs completed; 0 with step 0 is the network before training). `value`: the probe's
    payload, plain numbers or a dataclass of numpy arrays (see the probe)."""
    name: str
    step: int
    epoch: int
    value: Any


PROBES: dict[str, Probe] = {}


def probe(name: str, *, per: Literal["step", "epoch"], every: int, display: str, help: str,
          first_step: bool = False, at_start: bool = False, always_recorded: bool = False,
          columns: tuple[str, ...] = ()):
    """Register the decorated `compute(context)` as probe `name`."""
    if display not in DISPLAYS:
        raise ValueError(f"probe {name}: display {display!r} is not one of {', '.join(DISPLAYS)}")
    if columns and display != "curve":
        raise ValueError(f"probe {name}: only a curve has columns")

    def register(compute):
        if name in PROBES:
            raise ValueError(f"a probe named {name!r} is already registered")
        PROBES[name] = Probe(name=name, compute=compute, per=per, every=every, display=display, help=help,
                             first_step=first_step, at_start=at_start, always_recorded=always_recorded,
                             columns=tuple(columns))
        return compute
    return register


def default_rates() -> dict[str, int]:
    """Every registered probe at its default rate: what a window asks for."""
    return {name: p.every for name, p in PROBES.items()}


def check_probe_names(names) -> None:
    unknown = sorted(set(names) - set(PROBES))
    if unknown:
        raise ValueError(f"unknown probe {', '.join(unknown)}; the probes are {', '.join(sorted(PROBES))}")


class ProbeContext:
    """What a probe may read at one step or epoch end. The costly inputs are computed on first
    use and shared by the probes of the same moment.

    `output`: the method's output of this step (None at an epoch end); the sample images are the
    training images at `sample_index` (a fixed, seeded order), the first `samples_count` of them;
    `augment(images)`: the step's augmentation of uint8 images (a list of float views in [0, 1]);
    `fixed_augment(images, draw)`: the same augmentation drawn from fixed generator number
    `draw` (0, 1, ...), so the same images get the same views at every step and epoch;
    `eval_set` and `knn_memory`: the fixed evaluation images and the live kNN's labelled memory
    (None without labels)."""

    def __init__(self, *, step: int, epoch: int, method, output, device: torch.device,
                 mean_std: tuple[torch.Tensor, torch.Tensor], mean, std, train_images: torch.Tensor,
                 sample_index: torch.Tensor, samples_count: int,
                 augment: Callable[[torch.Tensor], list[torch.Tensor]],
                 fixed_augment: Callable[[torch.Tensor, int], list[torch.Tensor]], eval_set, knn_memory,
                 knn_k: int):
        self.step, self.epoch = step, epoch
        self.method, self.output, self.device = method, output, device
        self.mean_std, self.mean, self.std = mean_std, mean, std
        self._train_images, self._sample_index, self.samples_count = train_images, sample_index, samples_count
        self.augment, self.fixed_augment = augment, fixed_augment
        self.eval_set, self.knn_memory, self.knn_k = eval_set, knn_memory, knn_k

    @property
    def backbone(self):
        return self.method.backbone

    @cached_property
    def samples(self) -> torch.Tensor:
        """The fixed sample images (uint8, as stored) on the device."""
        return self._train_images[self._sample_index[:self.samples_count]].to(self.device)

    @cached_property
    def shown(self) -> np.ndarray:
        """The sample images for display: uint8 (n, H, W, 3), one read-only copy for every probe."""
        return to_display(self.samples)

    @cached_property
    def normalised_samples(self) -> torch.Tensor:
        """The sample images as the network takes them."""
        return normalize(self.samples.float() / 255.0, *self.mean_std)

    @cached_property
    def features(self) -> torch.Tensor:
        """The backbone's features of the fixed evaluation images (CPU, float32, eval mode)."""
        return self.embed(self.eval_set.images)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return embed(self.backbone, images, mean=self.mean, std=self.std, device=self.device)

    def embed_as_trained(self, images: torch.Tensor) -> torch.Tensor:
        """The method's own embedding of uint8 `images` (`Method.embedding`: its projector's
        output), in eval mode: what its loss compares."""
        return embed(_MethodEmbedding(self.method), images, mean=self.mean, std=self.std, device=self.device)

    def fixed_view_pair(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented views of uint8 `images`, the same at every epoch, as uint8 images on the
        device (what `embed` takes; rounding moves a value by at most 1/510): the recipe's first
        two global views, or, for a recipe of one (the masked methods'), its view drawn twice
        from two fixed generators. Local (multi-crop) views, smaller, are never taken."""
        images = images.to(self.device)
        views = self.fixed_augment(images, 0)
        global_views = [view for view in views if view.shape[-2:] == views[0].shape[-2:]]
        pair = global_views[:2] if len(global_views) >= 2 else [views[0], self.fixed_augment(images, 1)[0]]
        return tuple(view.mul(255).round_().clamp_(0, 255).to(torch.uint8) for view in pair)


class _MethodEmbedding(torch.nn.Module):
    """`method.embedding` as a module, for `embed` (which sets eval mode and puts it back)."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.embedding(images)
