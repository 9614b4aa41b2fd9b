"""TensorBoard event files of a training run (`train.tensorboard`, the command line's
`--tensorboard DIR`): a listener that writes the trainer's events under `<DIR>/<run folder
name>` with torch's `SummaryWriter`, for `tensorboard --logdir DIR`.

What it asks the trainer for (`tensorboard_rates`), at rates that keep a run's cost and its
files small:
- the step metrics every `train.log_every_steps` steps, as metrics.jsonl has them: scalars
  `train/loss`, `terms/<term>` for each of the method's terms, `train/lr`, `train/images_per_second`;
- every curve probe once per epoch (per log interval for a step probe): `eval/<name>` (the live
  kNN, `eval/knn_top1`, with its random-init floor at step 0), and the epoch's mean loss,
  `train/epoch_loss`;
- the sample images' augmented views and the method's pictures once per epoch (and after the
  first step): images `views/...` and `pictures/<name>`;
- the embedding map once per epoch, drawn as the image `map/pca` (points coloured by label);
  the last one also goes to TensorBoard's projector, with labels and thumbnails, when the run
  ends (finished, stopped or failed).

`tensorboard` is an optional package: `require_tensorboard` turns its absence into one clear
ConfigError before anything is built or written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, Problem
from .map_image import draw_map
from .probes import PROBES
from .probes.embedding import EmbeddingMap
from .probes.images import AugmentedViews, MethodPictures
from .train.events import EpochEnd, EventRates, Failed, Finished, ProbeResult, StepMetrics

IMAGE_PROBES = ("views", "pictures")
VIEWS_COUNT = 8  # sample images per view, as the window shows
# The projector's files are text: tensors.tsv holds every feature of every point (1000 points of
# a ResNet-18's 512 features are about 5 MB). One snapshot, the run's last, is what is worth
# exploring there (the per-epoch map images show how it got there); one per epoch would grow the
# folder with the run for pictures nobody compares point by point. Its points are capped too.
PROJECTOR_POINTS = 5000
THUMBNAIL_SIDE = 32      # pixels; smaller where many points would overflow the sprite
SPRITE_LIMIT = 8192      # the projector's largest sprite side, in pixels


def require_tensorboard():
    """torch's SummaryWriter class; a ConfigError at train.tensorboard when the tensorboard
    package is not installed (or does not load)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError([Problem("train.tensorboard", "needs the tensorboard package: pip install tensorboard "
                                                        "(or leave train.tensorboard empty)")]) from None
    return SummaryWriter


def tensorboard_rates(log_every_steps: int, steps_per_epoch: int) -> EventRates:
    """What the writer asks of the trainer (see the module's docstring)."""
    probes = {name: (1 if p.per == "epoch" else log_every_steps) for name, p in PROBES.items() if p.display == "curve"}
    probes.update({name: steps_per_epoch for name in IMAGE_PROBES})
    probes["map"] = 1
    return EventRates(metrics_every_steps=log_every_steps, probes=probes, views_count=VIEWS_COUNT)


def thumbnail_side(count: int, image_side: int) -> int:
    """The side of `count` thumbnails of images of `image_side` pixels: at most THUMBNAIL_SIDE,
    never enlarged, and small enough that their square grid fits the projector's sprite."""
    fit = SPRITE_LIMIT // max(1, math.ceil(math.sqrt(count)))
    return max(1, min(image_side, THUMBNAIL_SIDE, fit))


def thumbnails(images: np.ndarray) -> torch.Tensor:
    """uint8 (M, H, W, 3) -> float (M, 3, s, s) in [0, 1] for the projector's sprite (s:
    `thumbnail_side`)."""
    side = images.shape[1]
    target = thumbnail_side(len(images), side)
    pictures = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if target != side:
        pictures = torch.nn.functional.interpolate(pictures, size=(target, target), mode="bilinear",
                                                   antialias=True, align_corners=False).clamp(0, 1)
    return pictures


FLUSH_SECONDS = 10  # how stale `tensorboard --logdir` may be while a run trains (the writer's default: 120)


class TensorBoardLog:
    """A listener writing event files into `log_dir` (one run's folder). `start_step`: the
    checkpoint a resumed run continues from; what an earlier attempt logged after it is purged
    from TensorBoard's view, as the run folder forgets its rows after it (`RunFolder.forget_after`)."""

    def __init__(self, log_dir: str | Path, start_step: int = 0):
        summary_writer = require_tensorboard()
        self.log_dir = Path(log_dir)
        self.writer = summary_writer(log_dir=str(self.log_dir), purge_step=start_step + 1 if start_step else None,
                                     flush_secs=FLUSH_SECONDS)
        self._last_map: ProbeResult | None = None

    def __call__(self, event) -> None:
        if isinstance(event, StepMetrics):
            self._step_metrics(event)
        elif isinstance(event, ProbeResult):
            self._probe_result(event)
        elif isinstance(event, EpochEnd):
            self.writer.add_scalar("train/epoch_loss", event.mean_loss, event.step)
        elif isinstance(event, (Finished, Failed)):
            self._projector()
            self.writer.close()

    def _step_metrics(self, event: StepMetrics) -> None:
        add = self.writer.add_scalar
        add("train/loss", event.loss, event.step)
        for term, value in event.terms.items():
            add(f"terms/{term}", value, event.step)
        add("train/lr", event.lr, event.step)
        add("train/images_per_second", event.images_per_second, event.step)

    def _probe_result(self, event: ProbeResult) -> None:
        value, step = event.value, event.step
        if PROBES[event.name].display == "curve":
            columns = value if isinstance(value, dict) else {event.name: value}
            for name, number in columns.items():
                if number is not None:
                    self.writer.add_scalar(f"eval/{name}", float(number), step)
        elif isinstance(value, AugmentedViews):
            self.writer.add_images("views/originals", value.originals, step, dataformats="NHWC")
            for i, views in enumerate(value.views):
                self.writer.add_images(f"views/view_{i + 1}", views, step, dataformats="NHWC")
        elif isinstance(value, MethodPictures):
            for name, pictures in value.pictures.items():
                self.writer.add_images(f"pictures/{name}", pictures, step, dataformats="NHWC")
        elif isinstance(value, EmbeddingMap):
            picture = draw_map(value.projection_2d, value.labels, value.class_names)
            self.writer.add_image("map/pca", picture, step, dataformats="HWC")
            self._last_map = event

    def _projector(self) -> None:
        """The last embedding map's features, labels and thumbnails, for the projector."""
        if self._last_map is None:
            return
        snapshot: EmbeddingMap = self._last_map.value
        count = min(len(snapshot.embeddings), PROJECTOR_POINTS)
        if count == 0:
            return
        names = snapshot.class_names
        labels = [names[label] if 0 <= label < len(names) else "no label" for label in snapshot.labels[:count].tolist()]
        self.writer.add_embedding(snapshot.embeddings[:count], metadata=labels,
                                  label_img=thumbnails(snapshot.images[:count]),
                                  global_step=self._last_map.step, tag="features")
        self._last_map = None
