"""How long a run will take, before it starts: a short measurement, then arithmetic.

`measure` builds what the run builds (`Trainer.time_steps`: the method, its optimiser, the data
on the device, no run folder) and times a few training steps after a first one that pays for
allocation, the method's first-epoch work (DeepCluster and SeLa go over the whole training set,
BEiT fits its tokenizer) and the backbone's inference speed. What it gives, `StepCosts`, holds
only what depends on the experiment's shape (method, backbone, image size, batch, views,
device, precision), so that `project` can rescale it to any amount of work without measuring
again: a number of epochs or a time budget, a data set's size, the evaluations.

A run is, in order: set-up; the kNN of the untrained backbone (embedding the labelled training
images and the test split); the steps, with the method's epoch work at the start of the epochs
that have it (with `train.minutes` all of this is the budget itself); at each epoch's end the
live evaluation the listeners asked for (embedding `train.eval_subset` test images, and for the
kNN up to 5,000 training images); and at the end the kNN again, with the linear probe when
`train.linear_probe`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checkpoint import first_line
from ..config import ExperimentConfig
from ..data.image_set import DataSplits
from ..devices import synchronise
from ..errors import ConfigError, Problem, UserError
from ..eval.embed import embed
from ..eval.knn import knn_scores
from .control import TrainingControl
from .events import EventRates
from .trainer import LIVE_KNN_MEMORY, Trainer

MEASURED_STEPS = 5          # timed steps after the first
MEASURE_SECONDS = 2.0       # ...or fewer, once the steps (the first included) took this long
INFERENCE_IMAGES = 512      # training images embedded to time the backbone's inference
INFERENCE_SECONDS = 0.5     # ...or fewer, once embedding took this long
KNN_QUERIES, KNN_MEMORY = 256, 2048  # the size of the kNN timed on random features
# Function evaluations of a linear probe: 6 L-BFGS fits (5 strengths on four fifths of the
# training set, then the chosen one on all of it) of up to 100 iterations each. Fits that
# converge early take fewer; the line search adds some.
PROBE_EVALUATIONS = 600
PROBED_EPOCHS = 1000        # epochs searched for the method's next epoch work
RUN_MIN_STEPS = 20          # a finished run shorter than this does not replace a measurement


@dataclass(frozen=True)
class StepCosts:
    """What one experiment's shape costs on one device, in seconds: what `project` scales."""

    seconds_per_step: float
    measured_steps: int               # timed steps (0: the first step alone, or a finished run's)
    batch_size: int
    device: str                       # as a user reads it: "this CPU", "cuda:0 (NVIDIA H200)"
    setup_seconds: float
    inference_images_per_second: float
    knn_seconds_per_pair: float       # per (query, memory) pair of a kNN
    probe_seconds_per_row: float      # a linear probe, per labelled training image
    epoch_work_seconds_per_image: float  # the method's first-epoch work, per training image
    epoch_work_every: int = 0         # its period after the first epoch (0: the first epoch only)
    from_run: bool = False            # seconds_per_step is a finished run's, not a measurement's

    @property
    def source(self) -> str:
        if self.from_run:
            return "from the last run of this set-up"
        steps = max(self.measured_steps, 1)
        return f"measured over {steps} step{'s' if steps > 1 else ''}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "StepCosts":
        """The costs `to_dict` wrote; ValueError when they do not read as such."""
        kinds = {"measured_steps": int, "batch_size": int, "device": str, "epoch_work_every": int, "from_run": bool}
        try:
            costs = cls(**{f.name: kinds.get(f.name, float)(values[f.name])
                           for f in dataclasses.fields(cls) if f.name in values})
        except (TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"not step costs: {error}") from None
        if not costs.seconds_per_step > 0 or not costs.inference_images_per_second > 0:
            raise ValueError("not step costs: no speed")
        return costs


@dataclass(frozen=True)
class DurationEstimate:
    """How long a run will take, in seconds, and the figures it came from."""

    seconds: float                # everything: set-up, training, evaluations
    train_seconds: float          # the steps and the method's epoch work (with a budget: the budget)
    evaluation_seconds: float     # the kNN before training, the live and the final evaluations
    seconds_per_step: float
    images_per_second: float      # training images a second
    steps: int                    # the run's training steps (left, for a resumed run)
    device: str
    source: str                   # "measured over 5 steps", "from the last run of this set-up"

    def words(self) -> str:
        """'about 4 min on this CPU'"""
        return f"{duration_in_words(self.seconds)} on {self.device}"

    def details(self) -> str:
        """'0.21 s per step, 1,210 img/s, measured over 5 steps'"""
        return f"{seconds_text(self.seconds_per_step)} per step, {self.images_per_second:,.0f} img/s, {self.source}"

    def line(self) -> str:
        """'about 4 min on this CPU (0.21 s per step, 1,210 img/s, measured over 5 steps)'"""
        return f"{self.words()} ({self.details()})"


def device_name(device: torch.device) -> str:
    """A device as a user reads it: 'this CPU', 'cuda:0 (NVIDIA H200)', 'this Mac's GPU'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "mps":
        return "this Mac's GPU"
    return "this CPU"


def seconds_text(seconds: float) -> str:
    """0.214 -> '0.21 s', 3.46 -> '3.5 s', 12.4 -> '12 s'."""
    return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


_UNITS = (("day", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration_in_words(seconds: float) -> str:
    """A duration as a person says it, no more precise than an estimate is: 'about 40 s',
    'about 2 min 30 s', 'about 4 min', 'about 2 h 10 min', 'about 3 days 4 h'."""
    seconds = max(float(seconds), 0.0)
    if seconds < 10:
        step = 1
    elif seconds < 55:
        step = 5
    elif seconds < 9.5 * 60:
        step = 30
    elif seconds < 59.5 * 60:
        step = 60
    elif seconds < 23.5 * 3600:
        step = 300
    else:
        step = 3600
    rounded = max(1, int(math.floor(seconds / step + 0.5)) * step)
    parts = []
    for name, size in _UNITS:
        count, rounded = divmod(rounded, size)
        if count:
            plural = "s" if name == "day" and count > 1 else ""
            parts.append(f"{count} {name}{plural}")
    return "about " + " ".join(parts[:2])


# -- measuring ---------------------------------------------------------------------------
class MeasurementStopped(UserError):
    """`control.stop()` ended a measurement before it had what it needs."""


class _WouldEmbed(Exception):
    """Raised by the stand-in for the data set's features: this epoch would work over them."""


def _refuse_features(*args, **kwargs):
    raise _WouldEmbed


def _epoch_work_every(method) -> int:
    """The first epoch after epoch 0 whose `before_epoch` would go over the training set (its
    period: DeepCluster's 1, SeLa's relabel_every_epochs), 0 when none does (BEiT fits its
    tokenizer once). Asked of the method with a stand-in for the features that raises before
    the method changes anything."""
    for epoch in range(1, PROBED_EPOCHS + 1):
        try:
            method.before_epoch(epoch, _refuse_features)
        except _WouldEmbed:
            return epoch
    return 0


def _inference(trainer: Trainer) -> tuple[float, int]:
    """(images a second, feature size) of the backbone embedding training images, as the
    evaluations do, after a small first batch."""
    backbone, images = trainer.method.backbone, trainer.data.train.images
    options = dict(mean=trainer.mean, std=trainer.std, device=trainer.device)
    features = embed(backbone, images[:32], **options)
    done, seconds, chunk = 0, 0.0, 256
    while done < min(INFERENCE_IMAGES, len(images)) and seconds < INFERENCE_SECONDS:
        batch = images[done:done + chunk]
        tick = time.perf_counter()
        embed(backbone, batch, **options)
        synchronise(trainer.device)
        seconds += time.perf_counter() - tick
        done += len(batch)
    return done / max(seconds, 1e-9), features.shape[1]


def _knn_seconds_per_pair(dim: int, k: int, device: torch.device) -> float:
    generator = torch.Generator().manual_seed(0)
    memory = torch.randn(KNN_MEMORY, dim, generator=generator).to(device)
    labels = torch.randint(0, 10, (KNN_MEMORY,), generator=generator).to(device)
    queries = torch.randn(KNN_QUERIES, dim, generator=generator).to(device)
    knn_scores(memory, labels, queries[:8], k=k)
    tick = time.perf_counter()
    knn_scores(memory, labels, queries, k=k)
    synchronise(device)
    return (time.perf_counter() - tick) / (KNN_QUERIES * KNN_MEMORY)


def _probe_seconds_per_row(data: DataSplits, dim: int, device: torch.device) -> float:
    """One evaluation of the linear probe's loss and gradient on features of the training
    set's size, times PROBE_EVALUATIONS, per labelled row (0 without labels)."""
    labels = data.train.labels
    rows = int((labels >= 0).sum())
    if rows == 0 or data.test is None:
        return 0.0
    classes = int(labels.max()) + 1
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(rows, dim, generator=generator).to(device)
    targets = torch.randint(0, classes, (rows,), generator=generator).to(device)
    weight = torch.zeros(dim, classes, device=device, requires_grad=True)
    bias = torch.zeros(classes, device=device, requires_grad=True)
    times = []
    with torch.enable_grad():
        for _ in range(3):
            tick = time.perf_counter()
            loss = F.cross_entropy(features @ weight + bias, targets) + 1e-3 * weight.pow(2).sum()
            loss.backward()
            synchronise(device)
            times.append(time.perf_counter() - tick)
    return PROBE_EVALUATIONS * min(times[1:]) / rows


def measure(config: ExperimentConfig, data: DataSplits | None = None, *,
            control: TrainingControl | None = None) -> StepCosts:
    """Time `config`'s work on its device: a few seconds for a small experiment on a CPU.

    `data` is the loaded data set (None: load it as the run would). `control.stop()`, from any
    thread, ends the timed steps early. A bad config or a data set too small for the batch is a
    ConfigError, a failure of the method a UserError: one line, no traceback."""
    trainer = Trainer(config, control=control, data=data)  # validates: a ConfigError of every bad field
    try:
        times = trainer.time_steps(MEASURED_STEPS, MEASURE_SECONDS)
        if trainer.control.stop_requested:
            raise MeasurementStopped("the measurement was stopped")
        timed = times.step_seconds or [times.first_step_seconds]
        images_per_second, dim = _inference(trainer)
        return StepCosts(
            seconds_per_step=sum(timed) / len(timed), measured_steps=len(times.step_seconds),
            batch_size=trainer.config.train.batch_size, device=device_name(times.device),
            setup_seconds=times.setup_seconds, inference_images_per_second=images_per_second,
            knn_seconds_per_pair=_knn_seconds_per_pair(dim, trainer.config.train.knn_k, times.device),
            probe_seconds_per_row=_probe_seconds_per_row(trainer.data, dim, times.device),
            epoch_work_seconds_per_image=times.epoch_work_seconds / len(trainer.data.train),
            epoch_work_every=_epoch_work_every(trainer.method) if times.epoch_work_seconds > 0.01 else 0)
    except UserError:
        raise
    except torch.cuda.OutOfMemoryError:
        raise UserError(f"the GPU ran out of memory at batch size {config.train.batch_size}: lower "
                        f"train.batch_size, use a smaller backbone or precision bf16") from None
    except Exception as error:  # a method that fails on this data: one line
        raise UserError(f"cannot measure the run's speed: {type(error).__name__}: {first_line(error)}") from error
    finally:
        device = getattr(trainer, "device", None)
        del trainer
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()


# -- the arithmetic ----------------------------------------------------------------------
def _multiples(first: int, last: int, every: int) -> int:
    """How many of the integers first..last (inclusive) divide by `every` (0: none)."""
    if every <= 0 or last < first:
        return 0
    return last // every - (first - 1) // every


def _epoch_work_count(costs: StepCosts, first_epoch: int, last_epoch: int) -> int:
    """Epochs first..last (0-based, started) whose start has the method's epoch work."""
    count = 1 if first_epoch == 0 <= last_epoch else 0
    return count + _multiples(max(first_epoch, 1), last_epoch, costs.epoch_work_every)


def project(costs: StepCosts, config: ExperimentConfig, data: DataSplits, *, rates: EventRates | None = None,
            start_step: int = 0, trained_seconds: float = 0.0) -> DurationEstimate:
    """How long `config` will take on `data` at `costs`, with listeners at `rates` (None: a
    headless run) asking for the live evaluations; a resumed run has done `start_step` steps in
    `trained_seconds` of training."""
    cfg = config.train
    train_size = len(data.train)
    if cfg.batch_size > train_size:
        raise ConfigError([Problem("train.batch_size", f"({cfg.batch_size}) is larger than the training set "
                                                       f"({train_size} images)")])
    steps_per_epoch = train_size // cfg.batch_size
    labelled = int((data.train.labels >= 0).sum())
    test_size = len(data.test) if data.test is not None else 0
    evaluated = test_size > 0 and labelled > 0

    def embedding(images: int) -> float:
        return images / costs.inference_images_per_second

    def evaluation(probe: bool) -> float:
        if not evaluated:
            return 0.0
        return (embedding(labelled + test_size) + test_size * labelled * costs.knn_seconds_per_pair
                + (costs.probe_seconds_per_row * labelled if probe else 0.0))

    epoch_work = costs.epoch_work_seconds_per_image * train_size
    if cfg.minutes > 0:  # the steps and the epoch work fill the budget
        train_seconds = max(0.0, cfg.minutes * 60 - trained_seconds)
        steps = start_step + int(train_seconds / costs.seconds_per_step)
    else:
        steps = max(cfg.epochs * steps_per_epoch, start_step)
        works = _epoch_work_count(costs, start_step // steps_per_epoch, math.ceil(steps / steps_per_epoch) - 1)
        train_seconds = (steps - start_step) * costs.seconds_per_step + works * epoch_work

    # the live evaluation at the end of each epoch a listener asked for
    rates = rates or EventRates(metrics_every_steps=0)
    first_end, last_end = start_step // steps_per_epoch + 1, steps // steps_per_epoch
    knn_every = rates.every("knn_top1") if evaluated else 0
    map_every = rates.every("map")
    knn_epochs = _multiples(first_end, last_end, knn_every)
    both = _multiples(first_end, last_end, math.lcm(knn_every, map_every)) if knn_every and map_every else 0
    embedded_epochs = knn_epochs + _multiples(first_end, last_end, map_every) - both
    eval_images = min(cfg.eval_subset, test_size or train_size)
    memory = min(LIVE_KNN_MEMORY, labelled)
    live = (embedded_epochs * embedding(eval_images)
            + knn_epochs * (embedding(memory) + eval_images * memory * costs.knn_seconds_per_pair))

    evaluations = (evaluation(False) if start_step == 0 else 0.0) + live + evaluation(cfg.linear_probe)
    return DurationEstimate(
        seconds=costs.setup_seconds + train_seconds + evaluations, train_seconds=train_seconds,
        evaluation_seconds=evaluations, seconds_per_step=costs.seconds_per_step,
        images_per_second=costs.batch_size / costs.seconds_per_step, steps=steps - start_step,
        device=costs.device, source=costs.source)


def estimate_duration(config: ExperimentConfig, data: DataSplits | None = None, *,
                      rates: EventRates | None = None, start_step: int = 0,
                      trained_seconds: float = 0.0) -> DurationEstimate:
    """`measure`, then `project`: how long `config` will take (see both)."""
    config = config.validate()
    trainer_data = data
    if trainer_data is None:
        from ..data.for_config import load_data_for

        trainer_data = load_data_for(config)
    return project(measure(config, trainer_data), config, trainer_data, rates=rates, start_step=start_step,
                   trained_seconds=trained_seconds)


def with_run_speed(costs: StepCosts, summary: dict, train_size: int) -> StepCosts:
    """`costs` with the seconds per step a finished run of the same shape trained at (its
    summary's training time, less the method's epoch work, over its steps), which counts what a measurement
    misses (a listener's views and matrices, a busy machine); unchanged for a run of fewer than
    RUN_MIN_STEPS steps."""
    steps, seconds = summary.get("steps") or 0, summary.get("train_seconds") or 0.0
    if steps < RUN_MIN_STEPS or seconds <= 0:
        return costs
    steps_per_epoch = max(1, train_size // costs.batch_size)
    works = _epoch_work_count(costs, 0, math.ceil(steps / steps_per_epoch) - 1)
    stepping = seconds - works * costs.epoch_work_seconds_per_image * train_size
    if stepping <= 0:
        return costs
    return dataclasses.replace(costs, seconds_per_step=stepping / steps, measured_steps=steps, from_run=True)
