"""Training off the UI thread: a QThread that owns one Trainer, and the mailbox it writes to.

The Trainer calls its listener from the training thread at every step. Sending a Qt signal
per step floods the UI (see QT-NOTES.md), so the listener only files each event in a small
lock-protected mailbox: metrics, epoch ends and curve probes are queued, of every other probe
(views, matrices, embedding map, ...) only the latest is kept. A QTimer in the UI thread
drains it 10 times a second.
The thread's own `finished` signal, delivered to the UI thread, is the one signal used.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field, fields

from PySide6.QtCore import QThread

from ssl_engine.config import ExperimentConfig
from ssl_engine.data.image_set import DataSplits
from ssl_engine.errors import UserError
from ssl_engine.train import Trainer
from ssl_engine.train.control import TrainingControl
from ssl_engine.probes import PROBES, default_rates
from ssl_engine.train.events import (CheckpointSaved, EpochEnd, EventRates, Failed, Finished, ProbeResult, RunStarted,
                                     StepMetrics)

from .compute_threads import use_all_cores_in_this_thread

# What the window asks of the trainer: every step's metrics and every probe at its default rate
# (views and matrices every 10 steps, the embedding map and kNN once per epoch).
UI_RATES = EventRates(metrics_every_steps=1, probes=default_rates(), views_count=8)


@dataclass
class Delivery:
    """Everything that arrived since the last drain, in the order the UI should apply it."""

    started: RunStarted | None = None
    metrics: list[StepMetrics] = field(default_factory=list)
    epochs: list[EpochEnd] = field(default_factory=list)
    probes: dict[str, list[ProbeResult]] = field(default_factory=dict)  # probe name -> results, oldest first
    checkpoints: list[CheckpointSaved] = field(default_factory=list)
    finished: Finished | None = None
    failed: Failed | None = None

    def empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def latest(self, probe: str):
        """The newest value of `probe` in this delivery, or None."""
        results = self.probes.get(probe)
        return results[-1].value if results else None


# Events the UI needs every one of, and events where only the newest matters.
_QUEUED = {StepMetrics: "metrics", EpochEnd: "epochs", CheckpointSaved: "checkpoints"}
_LATEST = {RunStarted: "started", Finished: "finished", Failed: "failed"}


class Mailbox:
    """Written by the training thread, drained by the UI thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending = Delivery()
        self.saw_failure = False

    def put(self, event) -> None:
        with self._lock:
            name = _QUEUED.get(type(event))
            if name is not None:
                getattr(self._pending, name).append(event)
            elif isinstance(event, ProbeResult):
                results = self._pending.probes.setdefault(event.name, [])
                if PROBES[event.name].keeps_every_value:
                    results.append(event)
                else:
                    results[:] = [event]
            elif type(event) in _LATEST:
                setattr(self._pending, _LATEST[type(event)], event)
            self.saw_failure = self.saw_failure or isinstance(event, Failed)

    def drain(self) -> Delivery:
        with self._lock:
            delivery, self._pending = self._pending, Delivery()
        return delivery


class TrainingThread(QThread):
    """Runs one experiment. Pause, resume and stop go through `control`, from any thread."""

    def __init__(self, config: ExperimentConfig, data: DataSplits | None = None, *,
                 resume: str | None = None, rates: EventRates = UI_RATES, parent=None):
        super().__init__(parent)
        self.config = config
        self.data = data
        self.resume = resume
        self.rates = rates
        self.control = TrainingControl()
        self.mailbox = Mailbox()

    def run(self) -> None:
        use_all_cores_in_this_thread()
        try:
            trainer = Trainer(self.config, resume=self.resume, control=self.control, data=self.data)
            trainer.subscribe(self.mailbox.put, self.rates)
            trainer.run()
        except Exception as error:
            # Trainer.run files its own Failed event; what fails before it (building the
            # Trainer from a bad config) is filed here, so the window always hears of it.
            if not self.mailbox.saw_failure:
                message = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
                self.mailbox.put(Failed(message=message, details=traceback.format_exc()))
        finally:
            self.data = None  # the window keeps its own reference; do not pin a second one here
