"""The one training loop for every method: data on the device, batched views, the method's
step, the optimiser and its schedule, events for listeners, checkpoints, resume.

It runs the same way from the command line, from the app's worker thread, from the tests and
under torchrun (one process per GPU, DDP; the run folder is written by rank 0 only).
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import distributed as dist_utils
from ..augment.ops import normalize
from ..augment.views import ViewAugmenter
from ..checkpoint import first_line, load_checkpoint, save_checkpoint
from ..config import ExperimentConfig
from ..data.for_config import load_data_for
from ..data.image_set import DataSplits
from ..data.stats import channel_stats
from ..devices import resolve_device, resolve_precision, synchronise
from ..errors import ConfigError, UserError
from ..eval.embed import embed
from ..eval.evaluate import evaluate_backbone
from ..methods import get_method
from ..models.batch_norm import synchronise_batch_norm
from ..models.build import build_backbone_for
from ..models.ema import cosine_momentum
from ..probes import PROBES, ProbeContext, check_probe_names
from ..probes.record import ProbeRecorder
from ..runs import PROBES_DIR, RunFolder, new_run_dir
from .control import TrainingControl
from .events import (CheckpointSaved, EpochEnd, EventRates, Failed, Finished, ProbeResult, RunStarted, StepMetrics,
                     Subscription)
from .optim import build_optimizer, clip_gradients, set_learning_rate, set_weight_decay
from .schedules import warmup_cosine

LIVE_KNN_MEMORY = 5000  # labelled training images used as the memory of the per-epoch kNN
# Fixed views' generators start here, above any step's seed (seed * 7919 + step): a probe's fixed
# views are never a training step's.
FIXED_VIEWS_SEED = 2 ** 48
BUDGET_PROBE_STEPS = 10  # steps timed (after the first) to size a run that trains for train.minutes


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


@dataclass
class StepTimes:
    """What `Trainer.time_steps` measured, in seconds."""

    setup_seconds: float        # building the method, its optimiser and the data's statistics
    epoch_work_seconds: float   # the method's before_epoch(0)
    first_step_seconds: float   # the first step, which pays for allocation
    step_seconds: list[float]   # each timed step after it
    device: torch.device


class Trainer:
    """Trains one experiment. `run()` blocks until it ends and returns the run's summary.

    `resume` is a run folder (or a checkpoint file) to continue; `data` may be given to skip
    loading (the app reuses the set it already previewed).
    """

    def __init__(self, config: ExperimentConfig, *, resume: str | Path | None = None,
                 control: TrainingControl | None = None, data: DataSplits | None = None):
        self.config = config.validate()
        self.resume = resume
        self.control = control or TrainingControl()
        self.data = data
        self.subscriptions: list[Subscription] = []
        self.run_dir: Path | None = None
        self.folder: RunFolder | None = None
        self._last_epoch_loss: float | None = None
        self._order_epoch: int | None = None  # the epoch whose shuffled order is in self._order
        self.clock = time.perf_counter  # training time and a budget's deadline (tests may drive it)

    def subscribe(self, callback, rates: EventRates | None = None) -> None:
        """Call `callback(event)` for events at the given rates (from the training thread)."""
        rates = rates or EventRates()
        check_probe_names(rates.probes)
        self.subscriptions.append(Subscription(callback, rates))

    # -- events -------------------------------------------------------------------------
    def _emit(self, event, subscriptions=None) -> None:
        for subscription in self.subscriptions if subscriptions is None else subscriptions:
            subscription.callback(event)

    def _due(self, every: int, counter: int, first_step: bool = False) -> bool:
        """Whether a rate of `every` (steps or epochs) takes `counter` (a step or an epoch): at
        its rate; with `first_step`, also after the run's first step, so a window shows a
        step probe at once."""
        return every > 0 and (counter % every == 0 or (first_step and counter == self.start_step + 1))

    def _probe(self, per: str, step: int, epoch: int, output=None, at_start: bool = False) -> dict:
        """Compute the probes of `per` ("step" or "epoch") that some listener takes now (with
        `at_start`: those measured before the first step, for every listener that asked for
        them at all), send each result to its listeners, and return the values (name -> value).
        Nothing is computed that no listener takes."""
        takers = {}
        for probe in PROBES.values():
            if probe.per != per or (at_start and not probe.at_start):
                continue
            counter = step if per == "step" else epoch
            wanted = [s for s in self.subscriptions
                      if (s.rates.every(probe.name) > 0 if at_start
                          else self._due(s.rates.every(probe.name), counter, probe.first_step and per == "step"))]
            if wanted:
                takers[probe] = wanted
        if not takers:
            return {}
        context = ProbeContext(
            step=step, epoch=epoch, method=self.method, output=output, device=self.device, mean_std=self._mean_std,
            mean=self.mean, std=self.std, train_images=self.data.train.images, sample_index=self.view_index,
            samples_count=max(s.rates.views_count for wanted in takers.values() for s in wanted),
            augment=lambda images: self._views(images, step, global_batch=False), fixed_augment=self._fixed_views,
            eval_set=self.eval_set, knn_memory=self.knn_memory, knn_k=self.config.train.knn_k)
        values = {}
        for probe, wanted in takers.items():
            value = probe.compute(context)
            if value is not None:
                values[probe.name] = value
                self._emit(ProbeResult(name=probe.name, step=step, epoch=epoch, value=value), wanted)
        return values

    @staticmethod
    def _curves(values: dict) -> dict:
        """The values of curve probes, as metrics.jsonl columns (a dict value gives its keys)."""
        columns = {}
        for name, value in values.items():
            if PROBES[name].display == "curve":
                columns.update(value if isinstance(value, dict) else {name: value})
        return columns

    def _record_probes(self) -> None:
        """Record in the run folder, once per epoch, every probe some listener asked for, and
        at its default rate every probe the run folder always records (the diagnostics), which
        a headless run that asked for nothing computes too. Curves go in metrics.jsonl's rows,
        the others under probes/."""
        asking = [s for s in self.subscriptions if any(every > 0 for every in s.rates.probes.values())]
        asked = {name for s in asking for name, every in s.rates.probes.items() if every > 0}
        rates = {name: (self.steps_per_epoch if PROBES[name].per == "step" else 1) for name in asked
                 if PROBES[name].display != "curve"}  # a listener's curves are in metrics.jsonl already
        if self.config.train.diagnostics:
            rates.update({name: p.every for name, p in PROBES.items() if p.always_recorded})
        if rates:
            views_count = max((s.rates.views_count for s in asking), default=EventRates().views_count)
            self.subscribe(ProbeRecorder(self.folder.path / PROBES_DIR),
                           EventRates(metrics_every_steps=0, probes=rates, views_count=views_count))

    # -- the run --------------------------------------------------------------------------
    def run(self) -> dict:
        try:
            return self._run()
        except Exception as error:  # one clear message out, the details to the log
            message = self._user_message(error)
            details = traceback.format_exc()
            if self.folder is not None:
                self.folder.log(f"failed: {message}\n{details}")
                try:
                    self.folder.set_status("failed", message)
                except OSError:  # a failing disk: the message still reaches the user
                    pass
            self._emit(Failed(message=message, details=details, run_dir=str(self.run_dir) if self.run_dir else None))
            if isinstance(error, UserError):
                raise
            raise UserError(message) from error

    def _user_message(self, error: Exception) -> str:
        if isinstance(error, UserError):
            return str(error)
        if isinstance(error, torch.cuda.OutOfMemoryError):
            return (f"the GPU ran out of memory at batch size {self.config.train.batch_size}: lower "
                    f"train.batch_size, use a smaller backbone or precision bf16")
        return f"training failed: {type(error).__name__}: {error}"

    def _setup(self):
        if self.config.train.tensorboard:
            from ..tensorboard_log import require_tensorboard  # here: it imports this package's events

            require_tensorboard()  # a missing package is one message, before anything is built or written
        self._build()
        self.start_step = 0
        if self.resume is not None:
            self._load_resume()
        if dist_utils.is_main_process():
            if self.run_dir is None:
                self.run_dir = new_run_dir(self.config)
            self.folder = RunFolder(self.run_dir)
            if self.start_step:
                dropped = self.folder.forget_after(self.start_step)
                self.folder.log(f"resumed from the checkpoint at step {self.start_step}"
                                + (f"; dropped {dropped} metrics rows logged after it" if dropped else ""))
            self.folder.save_config(self.config)
            self.folder.set_status("running")
            for path, reason in self.data.skipped:
                self.folder.log(f"skipped unreadable file {path}: {reason}")
            self._record_probes()
            if self.config.train.tensorboard:
                self._log_to_tensorboard()
        self._choose_eval_subsets()

    def _log_to_tensorboard(self) -> None:
        """Subscribe the TensorBoard writer (rank 0), into <train.tensorboard>/<run folder name>. It
        comes after the probe recorder, so that the images it asks for are not also recorded in
        the run folder's probes/ (its kNN fills metrics.jsonl's epoch rows, as any listener's does)."""
        from ..tensorboard_log import TensorBoardLog, tensorboard_rates

        log_dir = Path(self.config.train.tensorboard).expanduser() / self.run_dir.name
        self.subscribe(TensorBoardLog(log_dir, start_step=self.start_step),
                       tensorboard_rates(self.config.train.log_every_steps, self.steps_per_epoch))

    def _build(self):
        """What every step needs: the device, the data on it, the method, its optimiser and
        schedules (no run folder, no resume)."""
        cfg = self.config
        self.rank, self.world = dist_utils.setup_from_environment()
        self.device = resolve_device(cfg.train.device, int(os.environ.get("LOCAL_RANK", 0)))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # CUDA's current device is per thread
        self.amp_dtype = resolve_precision(cfg.train.precision, self.device)

        if self.data is None:
            self.data = load_data_for(cfg)
        train = self.data.train
        if cfg.train.batch_size > len(train):
            raise ConfigError([f"train.batch_size ({cfg.train.batch_size}) is larger than the training set "
                               f"({len(train)} images)"])
        if cfg.train.batch_size % self.world:
            raise ConfigError([f"train.batch_size ({cfg.train.batch_size}) must divide by the number of "
                               f"processes ({self.world})"])
        self.steps_per_epoch = len(train) // cfg.train.batch_size
        # With a time budget this length is provisional: the first steps' speed sets it.
        self._set_length(cfg.train.epochs * self.steps_per_epoch)
        self.budget_seconds = cfg.train.minutes * 60.0
        self._length_measured = False
        self._seconds_before = 0.0  # training time of the run before it was resumed
        self._warmup_start = (-1, 0.0)  # where the warm-up's line starts (see warmup_cosine)
        self.peak_lr = cfg.optim.lr * cfg.train.batch_size / 256

        self.images = self._place(train.images)
        self.mean, self.std = channel_stats(train.images, seed=cfg.train.seed)
        # made once on the device: the step normalises with them twice per step
        self._mean_std = (torch.tensor(self.mean, device=self.device), torch.tensor(self.std, device=self.device))
        self.augmenter = ViewAugmenter(cfg.augment.views, cfg.data.image_size)

        torch.manual_seed(cfg.train.seed)
        backbone = build_backbone_for(cfg)
        method_class = get_method(cfg.method.name)
        self.method = method_class(backbone, cfg.method.params, self.total_steps).to(self.device)
        self.model = self.method
        if self.world > 1:
            # BatchNorm over the global batch, as one process computes it, on every device. Every
            # trainable parameter takes part in every step (methods freeze what they never use,
            # such as a ViT's mask token), so DDP needs no search for unused parameters.
            self.method = synchronise_batch_norm(self.method, self.device)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.method, device_ids=ids)
        self.optimizer = build_optimizer(self.method, self.method.parameter_groups(), cfg.optim, self.peak_lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self._autocast = (torch.autocast(device_type="cuda", dtype=self.amp_dtype) if self.amp_dtype is not None
                          else nullcontext())

    def _set_length(self, total_steps: int) -> None:
        """The run's length in steps, and with it the warm-up's (at most a tenth of the run) and
        the method's own schedules (EMA momentum)."""
        self.total_steps = max(1, int(total_steps))
        warmup = min(self.config.optim.warmup_epochs * self.steps_per_epoch, self.total_steps / 10)
        self.warmup_steps = int(round(warmup))
        if getattr(self, "method", None) is not None:
            self.method.total_steps = self.total_steps

    def _learning_rate(self, step: int) -> float:
        return warmup_cosine(step, self.total_steps, self.warmup_steps, self.peak_lr,
                             self.peak_lr * self.config.optim.min_lr_ratio, start=self._warmup_start)

    def _measure_length(self, step: int, probe: tuple[int, float], seconds: float) -> None:
        """Size a time-budget run from the steps since `probe` (step, seconds): as many steps as
        fit in the budget's remaining time at that speed. Every process takes the longest
        estimate, so all stop at the same step.

        The rate does not jump where the provisional schedule meets the measured one: a warm-up
        still under way goes on from the rate it reached (to the new warm-up's end, or, where
        that has passed, over as many steps as the new warm-up's slope needs); one that is over
        stays over."""
        seconds_per_step = (seconds - probe[1]) / max(step - probe[0], 1)
        remaining = self.budget_seconds - self._seconds_before - seconds
        total = step + max(0, int(remaining / max(seconds_per_step, 1e-9)))
        total = int(dist_utils.all_reduce_max(torch.tensor(float(total), device=self.device)))
        warming_up, reached = step - 1 < self.warmup_steps - 1, self._learning_rate(step - 1)
        self._set_length(max(total, step))
        if warming_up:
            self._warmup_start = (step - 1, reached)
            if self.warmup_steps <= step:
                ramp = math.ceil(self.warmup_steps * (1 - reached / self.peak_lr))
                self.warmup_steps = min(self.total_steps, step + max(1, ramp))
        else:
            self.warmup_steps = min(self.warmup_steps, step)
        self._length_measured = True

    def _over_budget(self, seconds: float) -> bool:
        """True once the training time reaches train.minutes (in any process: all stop together;
        a single process compares its own clock, with no tensor and no device sync per step)."""
        over = self._seconds_before + seconds >= self.budget_seconds
        if self.world == 1:
            return over
        return bool(dist_utils.all_reduce_max(torch.tensor(float(over), device=self.device)))

    def _place(self, images: torch.Tensor) -> torch.Tensor:
        """Keep the data on the GPU when it takes at most a quarter of the free memory."""
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if images.numel() < free // 4:
                return images.to(self.device)
            return images.pin_memory()
        if self.device.type == "mps":
            return images.to(self.device)
        return images

    def _load_resume(self) -> None:
        state = load_checkpoint(self.resume)
        try:
            self.method.load_state_dict(state["method"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            # a run saved by an earlier version whose heads or trainable parameters have changed
            # since (its backbone still evaluates: only training it further needs the same layout)
            raise UserError(f"cannot resume {self.resume}: its checkpoint holds a different {self.config.method.name} "
                            f"layout than this version trains ({first_line(error)[:200]}); evaluate it, or start a "
                            f"new run") from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_step = int(state["step"])
        if self.budget_seconds and state.get("length_measured"):
            # a time-budget run keeps the length it measured, and counts the time it has trained
            self._set_length(int(state["total_steps"]))
            self.warmup_steps = int(state["warmup_steps"])
            self._warmup_start = (int(state["warmup_start"][0]), float(state["warmup_start"][1]))
            self._length_measured = True
            self._seconds_before = float(state.get("train_seconds", 0.0))
        resume_path = Path(self.resume).expanduser()
        self.run_dir = resume_path if resume_path.is_dir() else resume_path.parent.parent

    def _choose_eval_subsets(self) -> None:
        """Fixed, seeded images for live views, the embedding map and the per-epoch kNN."""
        cfg, data = self.config, self.data
        generator = torch.Generator().manual_seed(cfg.train.seed + 1)
        source = data.test if data.test is not None else data.train
        count = min(cfg.train.eval_subset, len(source))
        self.eval_set = source.subset(torch.randperm(len(source), generator=generator)[:count])
        labelled = torch.nonzero(data.train.labels >= 0).flatten()
        memory = labelled[torch.randperm(len(labelled), generator=generator)[:LIVE_KNN_MEMORY]]
        self.knn_memory = data.train.subset(memory) if data.test is not None and len(memory) else None
        self.view_index = torch.randperm(len(data.train), generator=generator)

    # -- checkpoints ----------------------------------------------------------------------
    def _checkpoint(self, step: int, seconds: float = 0.0) -> None:
        if self.folder is None:
            return
        state = {
            "format": "ssl_explorer/1",
            "config": self.config.to_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "step": step,
            "epoch": step / self.steps_per_epoch,
            "total_steps": self.total_steps,
            "length_measured": self._length_measured,
            "warmup_steps": self.warmup_steps,
            "warmup_start": [self._warmup_start[0], self._warmup_start[1]],
            "train_seconds": self._seconds_before + seconds,
            "normalization": {"mean": self.mean, "std": self.std},
        }
        path = save_checkpoint(self.folder.checkpoints / "last.pt", state)
        self._emit(CheckpointSaved(step=step, path=str(path)))

    # -- the loop -------------------------------------------------------------------------
    def _batch_indices(self, step: int) -> torch.Tensor:
        cfg = self.config
        epoch, position = divmod(step, self.steps_per_epoch)
        if self._order_epoch != epoch:
            generator = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.images), generator=generator)
            self._order_epoch = epoch
        batch = self._order[position * cfg.train.batch_size:(position + 1) * cfg.train.batch_size]
        return batch[self._rows()]

    def _rows(self) -> slice:
        """This process's contiguous share of the global batch (the order the gathers keep)."""
        local = self.config.train.batch_size // self.world
        return slice(self.rank * local, (self.rank + 1) * local)

    def _views(self, images_uint8: torch.Tensor, step: int, global_batch: bool = True) -> list[torch.Tensor]:
        # One generator per step, drawn for the whole global batch: a resumed run, and each of
        # N processes, get exactly the views a single uninterrupted process would.
        generator = torch.Generator().manual_seed(self.config.train.seed * 7919 + step)
        if not global_batch:
            return self.augmenter(images_uint8, generator)
        return self.augmenter(images_uint8, generator, rows=self._rows(), total=self.config.train.batch_size)

    def _fixed_views(self, images: torch.Tensor, draw: int = 0) -> list[torch.Tensor]:
        """The run's augmentation of `images` from fixed generator `draw`: the same views at every
        call (the probes' fixed views, so that a curve follows the network, not the draw)."""
        generator = torch.Generator().manual_seed(FIXED_VIEWS_SEED + self.config.train.seed * 7919 + draw)
        return self.augmenter(images, generator)

    def _run(self) -> dict:
        self._setup()
        cfg = self.config
        started = RunStarted(
            run_dir=str(self.run_dir) if self.run_dir else "", config=cfg.to_dict(), total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch, start_step=self.start_step, device=str(self.device),
            train_size=len(self.data.train), test_size=len(self.data.test) if self.data.test is not None else 0,
            class_names=list(self.data.train.class_names), skipped_files=list(self.data.skipped))
        if self.folder is not None:
            self.folder.write_started(started)
        self._emit(started)

        if self.start_step == 0:
            # the floors (the live kNN at random init), measured as each epoch's will be: shown from the start
            floors = self._curves(self._probe("epoch", 0, 0, at_start=True))
            if floors and self.folder is not None:
                self.folder.append_metrics({"kind": "init", "step": 0, **floors})
        summary = {"method": cfg.method.name, "data": cfg.data.source, "backbone": cfg.backbone.name}
        if self.start_step == 0 and self.folder is not None:
            summary["knn_top1_init"] = self._evaluate(linear_probe=False).get("knn_top1")
        elif self.run_dir is not None and (self.run_dir / "summary.json").is_file():
            # a resumed run keeps the floor measured when it started
            earlier = json.loads((self.run_dir / "summary.json").read_text())
            summary["knn_top1_init"] = earlier.get("knn_top1_init")

        step, train_seconds, images_seen = self.start_step, 0.0, 0
        epoch_losses: list[torch.Tensor] = []
        stopped = False
        probe = None  # (step, training seconds) after the first step, for a time budget's speed
        checkpoint_seconds = cfg.train.checkpoint_every_minutes * 60.0
        last_checkpoint = 0.0  # training seconds at the last checkpoint
        self.method.train()
        tick = self.clock()
        while step < self.total_steps:
            if self.control.paused:
                train_seconds += self.clock() - tick
                self.control.wait_while_paused()
                tick = self.clock()
            if self.control.stop_requested:
                stopped = True
                break
            if self.budget_seconds and self._over_budget(train_seconds + self.clock() - tick):
                break  # the budget ends the run as its last epoch would: evaluated, not stopped
            epoch, position = divmod(step, self.steps_per_epoch)
            if position == 0 or step == self.start_step:
                self.method.before_epoch(epoch, self._dataset_features)
            output, lr = self._train_step(step)
            step += 1
            images_seen += cfg.train.batch_size
            if self.budget_seconds and not self._length_measured:
                elapsed = train_seconds + self.clock() - tick
                if probe is None:
                    probe = (step, elapsed)  # the first step (warm-up of kernels, allocator) is not timed
                elif step - probe[0] >= BUDGET_PROBE_STEPS:
                    self._measure_length(step, probe, elapsed)
            epoch_losses.append(output.loss.detach())

            log_now = step % cfg.train.log_every_steps == 0
            metrics_to = [s for s in self.subscriptions if self._due(s.rates.metrics_every_steps, step)]
            if log_now or metrics_to:
                loss = output.loss.item()
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"the loss became {loss} at step {step} (learning rate {lr:.3g}): lower optim.lr, "
                        f"raise optim.warmup_epochs or use precision fp32; the last good checkpoint is kept")
                now = self.clock()
                seconds = train_seconds + now - tick
                speed = images_seen / max(seconds, 1e-9)
                eta = (self.total_steps - step) * cfg.train.batch_size / max(speed, 1e-9)
                if self.budget_seconds:
                    eta = min(eta, max(0.0, self.budget_seconds - self._seconds_before - seconds))
                metrics = StepMetrics(
                    step=step, epoch=epoch, epoch_progress=(position + 1) / self.steps_per_epoch, loss=loss,
                    terms={k: float(v.detach()) for k, v in output.terms.items()}, lr=lr, images_per_second=speed,
                    elapsed_seconds=seconds, eta_seconds=eta, total_steps=self.total_steps)
                self._emit(metrics, metrics_to)
                if log_now and self.folder is not None:
                    self.folder.append_metrics({"kind": "step", "step": step, "epoch": epoch + metrics.epoch_progress,
                                                "loss": loss, **metrics.terms, "lr": lr,
                                                "images_per_second": speed, "time": seconds})
            self._probe("step", step, epoch, output)

            if position + 1 == self.steps_per_epoch:
                train_seconds += self.clock() - tick
                if self._end_epoch(epoch + 1, step, epoch_losses, train_seconds):
                    last_checkpoint = train_seconds
                epoch_losses = []
                tick = self.clock()
            elif checkpoint_seconds and step < self.total_steps:
                seconds = train_seconds + self.clock() - tick
                if seconds - last_checkpoint >= checkpoint_seconds:  # a long epoch: a crash loses at most this
                    self._checkpoint(step, seconds)
                    last_checkpoint = seconds
        train_seconds += self.clock() - tick

        self._checkpoint(step, train_seconds)
        summary.update({
            "epochs": step / self.steps_per_epoch, "steps": step, "stopped_early": stopped,
            "images_per_second": images_seen / train_seconds if train_seconds > 0 else None,
            "train_seconds": train_seconds, "device": str(self.device),
            **({"minutes": cfg.train.minutes} if self.budget_seconds else {}),
            "final_loss": float(torch.stack(epoch_losses).mean()) if epoch_losses else self._last_epoch_loss,
        })
        if not stopped:
            summary.update(self._evaluate(linear_probe=cfg.train.linear_probe))
        if self.folder is not None:
            self.folder.write_summary(summary)
            self.folder.log(f"finished at step {step}: {summary}")
            self.folder.set_status("stopped" if stopped else "finished")
        self._emit(Finished(run_dir=str(self.run_dir) if self.run_dir else "", summary=summary, stopped_early=stopped))
        return summary

    def _train_step(self, step: int):
        """One optimiser step on batch `step` (the method's epoch work is done): its learning
        rate and weight decay, the views, the method's loss, the update. Returns the method's
        output and the learning rate."""
        cfg = self.config
        lr = self._learning_rate(step)
        set_learning_rate(self.optimizer, lr, self.peak_lr)
        if cfg.optim.weight_decay_schedule == "cosine":
            # the same half-cosine ramp as the EMA momentum (DINO's cosine_scheduler)
            set_weight_decay(self.optimizer, cosine_momentum(step, self.total_steps, cfg.optim.weight_decay,
                                                             cfg.optim.weight_decay_end))
        indices = self._batch_indices(step)
        batch = self.images[indices.to(self.images.device)].to(self.device, non_blocking=True)
        views = [normalize(v, *self._mean_std) for v in self._views(batch, step)]
        with self._autocast:
            output = self.model(views, step, indices.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(output.loss).backward()
        if cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.method.parameters(), cfg.optim.grad_clip, cfg.optim.grad_clip_mode)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.after_optimizer_step(step)
        return output, lr

    def time_steps(self, steps: int, max_seconds: float) -> StepTimes:
        """Time this experiment's work without running it: build what a run builds (no run
        folder, no checkpoint, no event, no resume), do the method's first-epoch work
        (`before_epoch(0)`: DeepCluster clusters, BEiT fits its tokenizer), one first step
        (it pays for allocation and kernel choice, so it is timed apart), then up to `steps`
        timed steps, fewer (but one) once `max_seconds` have gone, none once `control.stop()`
        was called.
        The trainer is spent afterwards: build another to train."""
        clock = time.perf_counter
        started = clock()
        self._build()
        self.method.train()
        setup = clock() - started

        def synchronised_seconds(since: float) -> float:
            synchronise(self.device)
            return clock() - since

        tick = clock()
        self.method.before_epoch(0, self._dataset_features)
        epoch_work = synchronised_seconds(tick)
        tick = clock()
        self._train_step(0)
        first = synchronised_seconds(tick)
        timed: list[float] = []
        # at least one step after the first, which pays for allocation and says little of the rest
        while len(timed) < steps and (not timed or sum(timed) + first < max_seconds) and not self.control.stop_requested:
            tick = clock()
            self._train_step(len(timed) + 1)
            timed.append(synchronised_seconds(tick))
        return StepTimes(setup_seconds=setup, epoch_work_seconds=epoch_work, first_step_seconds=first,
                         step_seconds=timed, device=self.device)

    def _end_epoch(self, epoch: int, step: int, losses: list[torch.Tensor], seconds: float) -> bool:
        """The epoch's mean loss, its probes, its row and, when due, a checkpoint (returns
        whether one was written)."""
        mean_loss = float(torch.stack(losses).mean())
        self._last_epoch_loss = mean_loss
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"the loss became {mean_loss} in epoch {epoch}: lower optim.lr or raise "
                                   f"optim.warmup_epochs; the last good checkpoint is kept")
        curves = self._curves(self._probe("epoch", step, epoch))
        knn = curves.get("knn_top1")
        if self.folder is not None:
            self.folder.append_metrics({"kind": "epoch", "epoch": epoch, "step": step, "loss": mean_loss,
                                        "knn_top1": knn, **curves, "time": seconds})
        self._emit(EpochEnd(epoch=epoch, step=step, mean_loss=mean_loss, knn_top1=knn, elapsed_seconds=seconds))
        if epoch % self.config.train.checkpoint_every_epochs == 0 and step < self.total_steps:
            self._checkpoint(step, seconds)
            return True
        return False

    def _dataset_features(self, encoder: nn.Module | None = None, transform=None) -> torch.Tensor:
        """Features of every training image, un-augmented, on the device (eval mode): the backbone's,
        or those of `encoder`, a module of normalised images (BEiT's tokenizer takes patches);
        `transform` maps the [0, 1] images first (DeepCluster's greyscale)."""
        return embed(self.method.backbone if encoder is None else encoder, self.images, mean=self.mean,
                     std=self.std, device=self.device, for_evaluation=False, transform=transform).to(self.device)

    def _evaluate(self, linear_probe: bool) -> dict:
        if not dist_utils.is_main_process():
            return {}
        return evaluate_backbone(self.method.backbone, self.data, self.mean, self.std, k=self.config.train.knn_k,
                                 linear_probe=linear_probe, device=self.device, seed=self.config.train.seed)
