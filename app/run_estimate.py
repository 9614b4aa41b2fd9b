"""How long the set-up's run will take, shown before Start ("about 2 min 30 s on this CPU").

What a step costs depends only on the experiment's shape (method, backbone, image size, batch,
views, device, precision: `shape_key`), so each shape is measured once, off the UI thread
(`estimate.measure`: a few timed steps, a few seconds), and kept; the epochs, the time budget
and the data set's size are arithmetic on the UI thread (`estimate.project`), so the line
follows them at once. A finished run of a shape replaces its measurement with the speed it
trained at (`estimate.with_run_speed`), which counts what a measurement misses (the live views,
a busy machine). Start stops a measurement under way: the run itself comes first.
"""

from __future__ import annotations

import json

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from ssl_engine.config import ExperimentConfig
from ssl_engine.data.image_set import DataSplits
from ssl_engine.errors import ConfigError
from ssl_engine.train.control import TrainingControl
from ssl_engine.train.estimate import StepCosts, measure, project, with_run_speed

from .background import BackgroundCall
from .worker import UI_RATES

DEBOUNCE_MS = 700  # a measurement starts once the set-up has been still this long
# settings that change neither a step's cost nor its shape: the amount of work and where it goes
_NOT_SHAPE = {"train": ("epochs", "minutes", "seed", "runs_dir", "run_name", "tensorboard", "diagnostics", "log_every_steps",
                        "checkpoint_every_epochs", "eval_subset", "knn_k", "linear_probe")}


def shape_key(config: ExperimentConfig) -> str:
    """The settings a step's cost depends on, as one string (the data set's size is not one)."""
    table = config.to_dict()
    for section, names in _NOT_SHAPE.items():
        for name in names:
            table[section].pop(name, None)
    return json.dumps(table, sort_keys=True, default=str)


class RunEstimate(QObject):
    """Measures the set-up's shape when it changes and says how long the run will take.

    `text` is the line to show, `changed` fires when it changes. Call `update(config, data)`
    when the experiment or its data changes (None when either is not ready), `pause()` when a
    run starts, `run_finished(config, summary, data)` when it finishes and `resume()` once
    its thread is over."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.tooltip = ""
        self._costs: dict[str, StepCosts] = {}
        self._config: ExperimentConfig | None = None
        self._data: DataSplits | None = None
        self._call: BackgroundCall | None = None
        self._control: TrainingControl | None = None
        self._measuring_key: str | None = None
        self._paused = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._measure)

    # -- what the window tells it ----------------------------------------------------------
    def update(self, config: ExperimentConfig | None, data: DataSplits | None) -> None:
        self._config, self._data = config, data
        if config is None or data is None:
            self._timer.stop()
            self._show("", "")
            return
        if self._paused:
            return
        if shape_key(config) in self._costs:
            self._timer.stop()
            self._project()
        else:
            self._show("expected duration: measuring…", "a few timed steps of this set-up, off the window's thread")
            self._timer.start()

    def pause(self) -> None:
        """A run starts: no measurement competes with it."""
        self._paused = True
        self._timer.stop()
        if self._control is not None:
            self._control.stop()
        self._show("", "")

    def run_finished(self, config: ExperimentConfig, summary: dict, data: DataSplits | None) -> None:
        """The run of `config` finished: its speed stands for its shape from now on."""
        key = shape_key(config)
        if key in self._costs and data is not None:
            self._costs[key] = with_run_speed(self._costs[key], summary, len(data.train))

    def resume(self) -> None:
        """The run's thread is over: the next `update` measures again where needed."""
        self._paused = False

    def shutdown(self) -> None:
        self._timer.stop()
        if self._control is not None:
            self._control.stop()
        if self._call is not None:
            self._call.wait()

    # -- measuring -------------------------------------------------------------------------
    @Slot()
    def _measure(self) -> None:
        config, data = self._config, self._data
        if config is None or data is None or self._paused:
            return
        if self._call is not None:  # one at a time: the newest set-up is measured next
            self._timer.start()
            return
        self._measuring_key = shape_key(config)
        self._control = TrainingControl()
        self._call = BackgroundCall(measure, config, data, control=self._control)
        self._call.finished.connect(self._measured)
        self._call.start()

    @Slot()
    def _measured(self) -> None:
        call, self._call, self._control = self._call, None, None
        call.wait()
        if call.result is not None:
            self._costs[self._measuring_key] = call.result
        if self._paused or self._config is None or self._data is None:
            return
        if shape_key(self._config) in self._costs:
            self._project()
        elif call.error and self._measuring_key == shape_key(self._config):
            self._show("expected duration: unknown", f"the measurement failed: {call.error}")
        else:
            self._timer.start()  # the set-up changed while it was measured

    def _project(self) -> None:
        costs = self._costs[shape_key(self._config)]
        try:
            estimate = project(costs, self._config, self._data, rates=UI_RATES)
        except ConfigError as error:
            self._show("", str(error))
            return
        self._show(f"expected: {estimate.words()}", f"{estimate.details()}; of which training "
                   f"{estimate.train_seconds:.0f} s and evaluations {estimate.evaluation_seconds:.0f} s")

    def _show(self, text: str, tooltip: str) -> None:
        if (text, tooltip) != (self.text, self.tooltip):
            self.text, self.tooltip = text, tooltip
            self.changed.emit()
