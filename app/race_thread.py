"""A race of methods off the UI thread: a QThread that owns one `RaceRunner` and a small
mailbox the Runs tab drains on a timer (the same rule as the training worker: no signal per
step). Every race event is queued; of the trainers' step metrics only the newest is kept,
which is all a progress line needs.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass

from PySide6.QtCore import QThread

from ssl_engine.errors import UserError
from ssl_engine.race import RaceRunner, RunProgress
from ssl_engine.train.events import EventRates, StepMetrics

from .compute_threads import use_all_cores_in_this_thread

PROGRESS_EVERY_STEPS = 5


@dataclass
class RaceFailed:
    message: str
    details: str = ""


class RaceThread(QThread):
    """Runs `runner` (a checked race); stop it through `control`, from any thread."""

    def __init__(self, runner: RaceRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.control = runner.control
        self._lock = threading.Lock()
        self._events: list = []
        self._progress: RunProgress | None = None
        runner.subscribe(self._put, EventRates(metrics_every_steps=PROGRESS_EVERY_STEPS))

    def _put(self, event) -> None:
        with self._lock:
            if isinstance(event, RunProgress):
                if isinstance(event.event, StepMetrics):
                    self._progress = event
            else:
                self._events.append(event)

    def drain(self) -> tuple[list, RunProgress | None]:
        """The race events since the last drain, oldest first, and the newest step of a run."""
        with self._lock:
            events, progress = self._events, self._progress
            self._events, self._progress = [], None
        return events, progress

    def run(self) -> None:
        use_all_cores_in_this_thread()
        try:
            self.runner.run()
        except Exception as error:  # one clear line for the user; the details for the log
            message = str(error) if isinstance(error, UserError) else f"the race failed: {type(error).__name__}: {error}"
            self._put(RaceFailed(message, traceback.format_exc()))
