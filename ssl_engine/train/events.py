"""What the Trainer tells its listeners: small dataclasses of plain numbers and numpy arrays.

A listener subscribes with `EventRates`, saying how often it wants each kind of event; the
costly kinds (augmented views, matrices, embedding snapshots) are computed only when at
least one listener asked for them, so a headless run pays nothing for the UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EventRates:
    """How often a listener wants each event kind; 0 means never."""

    metrics_every_steps: int = 1
    views_every_steps: int = 0
    matrix_every_steps: int = 0
    embedding_every_epochs: int = 0
    knn_every_epochs: int = 0
    views_count: int = 8  # images whose views are sent


@dataclass
class RunStarted:
    run_dir: str
    config: dict
    total_steps: int
    steps_per_epoch: int
    start_step: int
    device: str
    train_size: int
    test_size: int
    class_names: list[str]
    skipped_files: list[tuple[str, str]]


@dataclass
class StepMetrics:
    step: int
    epoch: int
    epoch_progress: float  # completed share of the current epoch, 0..1
    loss: float
    terms: dict[str, float]
    lr: float
    images_per_second: float
    elapsed_seconds: float
    eta_seconds: float
    total_steps: int = 0  # the run's length, which a time budget sets once the speed is measured


@dataclass
class AugmentedViews:
    step: int
    originals: np.ndarray      # uint8 (n, H, W, 3)
    views: list[np.ndarray]    # one uint8 (n, S, S, 3) array per view


@dataclass
class MethodPictures:
    """What a masked method and a ViT show on the fixed sample images, sent with the views.

    `pictures`: the method's own (`Method.pictures`), name -> float32 (n, H, W, C) in 0..1:
    C = 3 for images (a reconstruction, de-normalised), C = 1 for masks and maps to lay over the
    originals. `attention`: a ViT's last-block class-token attention over the patches, float32
    (n, heads, grid, grid), each map scaled to a maximum of 1; None for other backbones."""
    step: int
    originals: np.ndarray      # uint8 (n, H, W, 3)
    pictures: dict[str, np.ndarray]
    attention: np.ndarray | None = None


@dataclass
class MatrixSnapshot:
    step: int
    matrices: dict[str, np.ndarray]  # name -> float32 (d, d)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 (K,) counts


@dataclass
class EmbeddingSnapshot:
    step: int
    epoch: int
    embeddings: np.ndarray     # float32 (M, D) backbone features of the fixed evaluation subset
    labels: np.ndarray         # int64 (M,), -1 where unknown
    images: np.ndarray         # uint8 (M, H, W, 3) the subset's images, for thumbnails
    class_names: list[str]
    projection_2d: np.ndarray  # float32 (M, 2) PCA of the embeddings


@dataclass
class EpochEnd:
    epoch: int
    step: int
    mean_loss: float
    knn_top1: float | None
    elapsed_seconds: float


@dataclass
class RandomInitKnn:
    """The live kNN of the backbone before its first step: the floor each epoch's kNN is read
    against (the same evaluation images and memory)."""
    knn_top1: float


@dataclass
class CheckpointSaved:
    step: int
    path: str


@dataclass
class Finished:
    run_dir: str
    summary: dict
    stopped_early: bool


@dataclass
class Failed:
    message: str                     # one line for the user
    details: str = ""                # the traceback, for a "details" box and the log
    run_dir: str | None = None


Event = (RunStarted | StepMetrics | AugmentedViews | MatrixSnapshot | EmbeddingSnapshot | EpochEnd
         | RandomInitKnn | CheckpointSaved | Finished | Failed)


@dataclass
class Subscription:
    callback: object
    rates: EventRates = field(default_factory=EventRates)
