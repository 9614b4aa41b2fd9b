"""What the Trainer tells its listeners: small dataclasses of plain numbers and numpy arrays.

A listener subscribes with `EventRates`, saying how often it wants the step metrics and each
live view (a probe, `ssl_engine.probes`); a probe is computed only when at least one listener
asked for it at that step or epoch, so a headless run pays nothing for the UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..probes.base import ProbeResult  # noqa: F401  (an event, defined beside the probes)


@dataclass(frozen=True)
class EventRates:
    """How often a listener wants the step metrics (steps) and each probe (in steps or epochs,
    the probe's own unit, `Probe.per`); 0 or absent means never. `views_count`: how many of
    the fixed sample images its image probes show."""

    metrics_every_steps: int = 1
    probes: Mapping[str, int] = field(default_factory=dict)
    views_count: int = 8

    def every(self, probe: str) -> int:
        return int(self.probes.get(probe, 0))


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
class EpochEnd:
    epoch: int
    step: int
    mean_loss: float
    knn_top1: float | None
    elapsed_seconds: float


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


Event = RunStarted | StepMetrics | ProbeResult | EpochEnd | CheckpointSaved | Finished | Failed


@dataclass
class Subscription:
    callback: object
    rates: EventRates = field(default_factory=EventRates)
