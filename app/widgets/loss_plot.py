"""Live training curves: the total loss in bold, each loss term in its own colour, the learning rate
on a right-hand axis of its own, and epoch-level metrics (kNN top-1) as points on a second right axis,
fixed at 0-100%, with the random-init floor as a dashed line. Legend entries are words, in columns.

Per-step series arrive through `add_points`; epoch-level ones through `add_epoch_metric`. Smoothing
is TensorBoard's (an exponential moving average with bias correction) and applies to the loss axis
only; the raw curve stays faint behind the smoothed one. The log scale is a true log10 scale of the
loss axis, on which values <= 0 are hidden. A vertical line under the mouse reads every visible
series at the nearest step. Data lives in growing numpy buffers, so 100k points a series stay cheap.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget
from scipy.signal import lfilter

from .theme import legend_brush

TOTAL_LOSS = "loss"
LEARNING_RATE = "lr"
MAX_SMOOTHING = 0.99  # a weight of 1 would freeze the average at its first value
TERM_COLOURS = ("#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#17becf", "#e377c2", "#bcbd22", "#8c564b")
LEARNING_RATE_COLOUR = "#7f7f7f"
FLOOR_COLOUR = "#d9534f"
# what the legend and the readout call a series (the others: their name in words)
NAMES = {TOTAL_LOSS: "loss", LEARNING_RATE: "learning rate", "knn_top1": "kNN top-1"}
LEGEND_COLUMNS = 3  # entries side by side: six terms take two rows, not six


def display_name(name: str) -> str:
    """'knn_top1' -> 'kNN top-1', 'koleo' -> 'koleo', 'cross_entropy' -> 'cross entropy'."""
    return NAMES.get(name, name.replace("_", " "))


def _continue_ema(values: np.ndarray, weight: float, last: float, count: int) -> tuple[np.ndarray, float, int]:
    """TensorBoard's smoothing of `values`, carrying on from a running average `last` of `count`
    earlier finite values. Non-finite values are shown as they are and leave the average alone.
    Returns the shown values, the new running average and the new count."""
    shown = np.array(values, dtype=np.float64)
    finite = np.isfinite(shown)
    if finite.any():
        # last = last * w + (1 - w) * v is a first-order IIR filter; lfilter runs it in C.
        running, _ = lfilter([1.0 - weight], [1.0, -weight], shown[finite], zi=[weight * last])
        counts = count + np.arange(1, running.size + 1)
        shown[finite] = running / (1.0 - weight ** counts)
        last, count = float(running[-1]), int(counts[-1])
    return shown, last, count


def smooth_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: `last = last * w + (1 - w) * v`, shown as `last / (1 - w ** n)`
    where n counts the values so far; the division removes the bias towards the initial zero."""
    return _continue_ema(values, weight, 0.0, 0)[0]


def _grown(buffer: np.ndarray, capacity: int, count: int) -> np.ndarray:
    larger = np.empty(capacity, dtype=buffer.dtype)
    larger[:count] = buffer[:count]
    return larger


class _Series:
    """One named series: step, value and smoothed-value buffers that double when full, the running
    average, and its plot items (`raw_curve` is the faint unsmoothed copy, None if not smoothed)."""

    def __init__(self, view: pg.ViewBox, curve: pg.PlotDataItem, raw_curve: pg.PlotDataItem | None):
        self.view, self.curve, self.raw_curve = view, curve, raw_curve
        self.steps, self.values, self.smoothed = (np.empty(0) for _ in range(3))
        self.count = 0
        self.ema_last, self.ema_count = 0.0, 0

    @property
    def smoothable(self) -> bool:
        return self.raw_curve is not None

    def append(self, steps: np.ndarray, values: np.ndarray, weight: float) -> None:
        end = self.count + len(steps)
        if end > len(self.steps):
            capacity = max(end, 2 * len(self.steps), 1024)
            self.steps, self.values, self.smoothed = (
                _grown(buffer, capacity, self.count) for buffer in (self.steps, self.values, self.smoothed))
        self.steps[self.count:end] = steps
        self.values[self.count:end] = values
        self.smoothed[self.count:end], self.ema_last, self.ema_count = _continue_ema(
            values, weight if self.smoothable else 0.0, self.ema_last, self.ema_count)
        self.count = end

    def resmooth(self, weight: float) -> None:
        self.smoothed[:self.count], self.ema_last, self.ema_count = _continue_ema(
            self.values[:self.count], weight, 0.0, 0)

    def nearest_index(self, step: float) -> int:
        steps = self.steps[:self.count]
        right = int(np.searchsorted(steps, step))
        if right == 0 or right == self.count:
            return min(right, self.count - 1)
        return right - 1 if step - steps[right - 1] <= steps[right] - step else right


class LossPlot(QWidget):
    """Curves of a run's step metrics and epoch metrics; `reset()` empties it for the next run."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._series: dict[str, _Series] = {}
        self._smoothing = 0.0
        self._log_scale = False
        plot_widget = pg.PlotWidget()
        self.plot_item = plot_widget.getPlotItem()
        self.plot_item.setLabel("bottom", "step")
        self.plot_item.setLabel("left", "loss")
        self.plot_item.showGrid(x=True, y=True, alpha=0.2)
        # a legend the user can drag away (pyqtgraph's legends move with the mouse), in columns
        self._legend = self.plot_item.addLegend(brush=legend_brush(), offset=(-10, 10), colCount=LEGEND_COLUMNS)
        self._right_axes: dict[pg.ViewBox, pg.AxisItem] = {}
        self.learning_rate_view = self._add_right_view("learning rate", column=3)
        # accuracies on a fixed 0-100% axis: an autoscaled one makes 11.2 -> 9.7 -> 11.0 a cliff
        self.epoch_metric_view = self._add_right_view("kNN top-1 (%)", column=4)
        self._right_axes[self.epoch_metric_view].setScale(100)
        self._right_axes[self.epoch_metric_view].setToolTip("the wheel over this axis zooms it; drag it to move")
        self._fix_accuracy_range()
        self._floor_line: pg.InfiniteLine | None = None
        self.plot_item.vb.sigResized.connect(self._align_right_views)
        self._cursor_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888888", style=Qt.DashLine))
        self._cursor_line.hide()
        self.plot_item.addItem(self._cursor_line, ignoreBounds=True)
        self.plot_item.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.readout = QLabel(" ")
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)

        self.smoothing_slider = QSlider(Qt.Horizontal)
        self.smoothing_slider.setRange(0, round(MAX_SMOOTHING * 100))
        self.smoothing_slider.setToolTip("TensorBoard smoothing: exponential moving average with bias correction")
        self.smoothing_slider.valueChanged.connect(self._on_smoothing_changed)
        self._smoothing_label = QLabel()
        self.log_scale_checkbox = QCheckBox("log scale")
        self.log_scale_checkbox.setToolTip(
            "log10 scale for the loss axis; values <= 0 (e.g. negative cosine losses) are hidden on it")
        self.log_scale_checkbox.toggled.connect(self._on_log_scale_toggled)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("smoothing"))
        controls.addWidget(self.smoothing_slider, 1)
        controls.addWidget(self._smoothing_label)
        controls.addWidget(self.log_scale_checkbox)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(plot_widget, 1)
        layout.addWidget(self.readout)
        self.set_smoothing(0.6)  # TensorBoard's default

    def _add_right_view(self, label: str, column: int) -> pg.ViewBox:
        """A ViewBox with its own y axis at the right, sharing the x axis of the loss view."""
        view, axis = pg.ViewBox(enableMenu=False), pg.AxisItem("right")
        view.setZValue(-1)  # below the plot, so mouse drags and wheel go to the loss view
        self.plot_item.scene().addItem(view)
        self.plot_item.layout.addItem(axis, 2, column)
        axis.linkToView(view)
        axis.setLabel(label)
        axis.enableAutoSIPrefix(False)  # "0.8", not "800 (x0.001)"
        axis.hide()
        view.setXLink(self.plot_item.vb)
        self._right_axes[view] = axis
        return view

    @Slot()
    def _align_right_views(self) -> None:
        for view in self._right_axes:
            view.setGeometry(self.plot_item.vb.sceneBoundingRect())
            view.linkedViewChanged(self.plot_item.vb, view.XAxis)

    def set_smoothing(self, weight: float) -> None:
        self.smoothing_slider.setValue(round(min(max(weight, 0.0), MAX_SMOOTHING) * 100))

    def set_log_scale(self, enabled: bool) -> None:
        self.log_scale_checkbox.setChecked(enabled)

    def add_points(self, steps: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Append per-step values: `values[name][i]` was measured at `steps[i]`. "loss" is drawn bold,
        "lr" on the learning-rate axis, every other name as a loss term on the loss axis."""
        steps = np.asarray(steps, dtype=np.float64)
        for name, series_values in values.items():
            series_values = np.asarray(series_values, dtype=np.float64)
            if series_values.shape != steps.shape:
                raise ValueError(f"{name}: {series_values.shape[0]} values for {steps.shape[0]} steps")
            series = self._series.get(name) or self._create_series(name, epoch_metric=False)
            series.append(steps, series_values, self._smoothing)
            self._draw(series)

    def _fix_accuracy_range(self) -> None:
        self.epoch_metric_view.disableAutoRange(axis=pg.ViewBox.YAxis)
        self.epoch_metric_view.setYRange(0.0, 1.0, padding=0.02)

    def set_floor(self, value: float) -> None:
        """The random-init floor of the epoch metric (kNN top-1), a dashed line across the plot."""
        if self._floor_line is None:
            self._floor_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen(FLOOR_COLOUR, width=1,
                                                                                    style=Qt.DashLine),
                                               label="random init {value:.1%}",
                                               labelOpts={"color": FLOOR_COLOUR, "position": 0.05, "anchors":
                                                          [(0, 1), (0, 1)]})
            self.epoch_metric_view.addItem(self._floor_line)
            self._right_axes[self.epoch_metric_view].show()
        self._floor_line.setValue(value)

    @property
    def floor(self) -> float | None:
        return None if self._floor_line is None else float(self._floor_line.value())

    def add_epoch_metric(self, name: str, step: float, value: float) -> None:
        """Append one epoch-level value (e.g. "knn_top1"), drawn as a point on the epoch-metric axis."""
        series = self._series.get(name) or self._create_series(name, epoch_metric=True)
        series.append(np.array([step], dtype=np.float64), np.array([value], dtype=np.float64), 0.0)
        self._draw(series)

    def series_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The steps and raw values added for `name` so far (views into the buffers, do not modify)."""
        series = self._series[name]
        return series.steps[:series.count], series.values[:series.count]

    def curve(self, name: str) -> pg.PlotDataItem:
        return self._series[name].curve

    def reset(self) -> None:
        for series in self._series.values():
            for item in (series.curve, series.raw_curve):
                if item is None:
                    continue
                if series.view is self.plot_item.vb:
                    self.plot_item.removeItem(item)  # also takes it off the legend
                else:
                    series.view.removeItem(item)
                    self._legend.removeItem(item)
        self._series.clear()
        if self._floor_line is not None:
            self.epoch_metric_view.removeItem(self._floor_line)
            self._floor_line = None
        for view, axis in self._right_axes.items():
            axis.hide()
            view.enableAutoRange()
        self._fix_accuracy_range()
        self.plot_item.enableAutoRange()
        self._cursor_line.hide()
        self.readout.setText(" ")

    def _create_series(self, name: str, epoch_metric: bool) -> _Series:
        colour = TERM_COLOURS[len([other for other in self._series if other != TOTAL_LOSS]) % len(TERM_COLOURS)]
        raw_curve = None
        if epoch_metric:
            view = self.epoch_metric_view
            curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=1), symbol="o", symbolSize=7,
                                    symbolBrush=colour, symbolPen=None, name=display_name(name))
        elif name == LEARNING_RATE:
            view = self.learning_rate_view
            curve = pg.PlotDataItem(pen=pg.mkPen(LEARNING_RATE_COLOUR, width=1.5, style=Qt.DashLine),
                                    name=display_name(name))
        else:
            view = self.plot_item.vb
            if name == TOTAL_LOSS:
                colour, width = pg.getConfigOption("foreground"), 3
            else:
                width = 1.5
            faint = pg.mkColor(colour)
            faint.setAlpha(60)
            raw_curve = pg.PlotDataItem(pen=pg.mkPen(faint, width=1))
            curve = pg.PlotDataItem(pen=pg.mkPen(colour, width=width), name=display_name(name))
        for item in (raw_curve, curve):
            if item is None:
                continue
            item.setClipToView(True)
            item.setDownsampling(auto=True, method="peak")
            if view is self.plot_item.vb:
                self.plot_item.addItem(item)  # adds named items to the legend and applies the log mode
            else:
                view.addItem(item)
                self._legend.addItem(item, display_name(name))
                self._right_axes[view].show()
        series = self._series[name] = _Series(view, curve, raw_curve)
        curve.visibleChanged.connect(self._sync_raw_visibility)  # legend clicks hide curves
        self._sync_raw_visibility()
        return series

    @Slot()
    def _sync_raw_visibility(self) -> None:
        for series in self._series.values():
            if series.raw_curve is not None:
                series.raw_curve.setVisible(self._smoothing > 0 and series.curve.isVisible())

    def _on_loss_axis(self, series: _Series, values: np.ndarray) -> np.ndarray:
        if self._log_scale and series.view is self.plot_item.vb:
            return np.where(values > 0, values, np.nan)  # log10 of values <= 0 does not exist
        return values

    def _draw(self, series: _Series) -> None:
        steps = series.steps[:series.count]
        series.curve.setData(steps, self._on_loss_axis(series, series.smoothed[:series.count]))
        if series.raw_curve is not None:
            series.raw_curve.setData(steps, self._on_loss_axis(series, series.values[:series.count]))

    @Slot(int)
    def _on_smoothing_changed(self, position: int) -> None:
        self._smoothing = position / 100
        self._smoothing_label.setText(f"{self._smoothing:.2f}")
        for series in self._series.values():
            if series.smoothable:
                series.resmooth(self._smoothing)
                self._draw(series)
        self._sync_raw_visibility()

    @Slot(bool)
    def _on_log_scale_toggled(self, enabled: bool) -> None:
        self._log_scale = enabled
        for series in self._series.values():
            self._draw(series)
        self.plot_item.setLogMode(y=enabled)

    @Slot(object)
    def _on_mouse_moved(self, scene_position) -> None:
        if not self._series or not self.plot_item.vb.sceneBoundingRect().contains(scene_position):
            self._cursor_line.hide()
            return
        cursor_step = self.plot_item.vb.mapSceneToView(scene_position).x()
        reference = self._series.get(TOTAL_LOSS) or next(iter(self._series.values()))
        step = reference.steps[reference.nearest_index(cursor_step)] if reference.count else cursor_step
        parts = [f"step {step:.0f}"]
        for name, series in self._series.items():
            if series.count and series.curve.isVisible():
                index = series.nearest_index(step)
                value = f"{series.smoothed[index]:.4g}"
                if series.smoothable and self._smoothing > 0:
                    value += f" (raw {series.values[index]:.4g})"
                parts.append(f"{display_name(name)} {value}")
        self._cursor_line.setPos(step)
        self._cursor_line.show()
        self.readout.setText("   ".join(parts))
