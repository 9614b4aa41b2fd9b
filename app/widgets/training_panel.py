"""The live training views: progress, loss curves, augmented views, what the method sees (matrix,
prototype usage, masks and reconstructions, ViT attention), embedding map.

The panel draws what the worker's mailbox delivered since the last timer tick: all the step
metrics (appended to the curves in one call), every point of the curve probes (the kNN), and
the latest result of each other probe, each through the display its probe declares.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QGridLayout, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QSlider, QTabWidget,
                               QVBoxLayout, QWidget)

from ssl_engine.collapse import CollapseWatch
from ssl_engine.methods import get_method
from ssl_engine.probes import PROBES
from ssl_engine.run_store import format_duration
from ssl_engine.train.events import RunStarted

from ..worker import Delivery
from .diagnostics_view import DiagnosticsView
from .histogram_view import HistogramView
from .image_grid import ImageGrid
from .loss_plot import LossPlot
from .matrix_view import MatrixView
from .overlays import attention_columns, picture_columns
from .projection_view import ProjectionView


KNN = "knn_top1"  # the curve the progress row shows, and whose value before training is the floor
DIAGNOSTICS = "diagnostics"  # the curve probe of the field's measures, drawn in the Diagnostics view
ALARM_STYLE = "background: #f8d7da; color: #721c24; border: 1px solid #d9534f; padding: 4px;"


class ProgressRow(QWidget):
    """Step, epoch, ETA, images per second and the last kNN accuracy, with a progress bar."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.labels = {name: QLabel("–") for name in ("step", "epoch", "eta", "speed", "knn")}
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar, 2)
        for name, label in self.labels.items():
            label.setObjectName(f"progress.{name}")
            label.setMinimumWidth(90)
            layout.addWidget(label)
        self.total_steps = self.steps_per_epoch = 1
        self.epochs = 1
        self.knn_epoch = 0  # the epoch of the kNN shown
        self.floor: float | None = None  # the live kNN at random initialisation
        self.last_knn: float | None = None

    def start(self, started: RunStarted) -> None:
        self.steps_per_epoch = max(started.steps_per_epoch, 1)
        self._set_length(max(started.total_steps, 1))
        self.bar.setValue(started.start_step)
        self.knn_epoch = 0
        self.floor = self.last_knn = None
        self.labels["knn"].setText("kNN: after epoch 1" if started.test_size else "kNN: no labels")
        self.labels["knn"].setStyleSheet("")
        self.labels["knn"].setToolTip("kNN top-1 of the fixed evaluation images after each epoch")
        self.show_step(started.start_step, started.start_step // self.steps_per_epoch, None, None)

    def clear(self) -> None:
        """Before any run: nothing measured yet."""
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.floor = self.last_knn = None
        for label in self.labels.values():
            label.setText("–")
            label.setStyleSheet("")

    def stopped(self) -> None:
        """The run ended: no speed or time left to show."""
        self.labels["speed"].setText("–")
        self.labels["eta"].setText("–")

    def set_floor(self, floor: float) -> None:
        self.floor = floor
        self._show_knn()

    def set_total_steps(self, total_steps: int) -> None:
        """A time budget's run length, known once the speed is measured."""
        if total_steps > 0 and total_steps != self.total_steps:
            self._set_length(total_steps)

    def _set_length(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.epochs = max(-(-total_steps // self.steps_per_epoch), 1)  # a last partial epoch counts
        self.bar.setRange(0, total_steps)

    def show_step(self, step: int, epoch: int, speed: float | None, eta: float | None) -> None:
        self.bar.setValue(step)
        self.labels["step"].setText(f"step {step:,}/{self.total_steps:,}")
        self.labels["epoch"].setText(f"epoch {min(epoch + 1, self.epochs)}/{self.epochs}")
        self.labels["speed"].setText("–" if speed is None else f"{speed:,.0f} img/s")
        self.labels["eta"].setText("–" if eta is None else f"ETA {format_duration(eta)}")

    def show_knn(self, epoch: int, knn: float) -> None:
        self.knn_epoch, self.last_knn = epoch, knn
        self._show_knn()

    def _show_knn(self) -> None:
        label, knn, floor = self.labels["knn"], self.last_knn, self.floor
        floor_text = f"random init {floor:.1%}" if floor is not None else ""
        if knn is None:
            label.setText(f"kNN: after epoch 1 ({floor_text})" if floor_text else label.text())
            return
        below = floor is not None and knn < floor
        parts = [f"epoch {self.knn_epoch}", floor_text]
        label.setText(f"kNN {knn:.1%} ({', '.join(p for p in parts if p)})" + (" — below random init" if below else ""))
        label.setStyleSheet("color: #d9534f;" if below else "")
        label.setToolTip("kNN top-1 of the fixed evaluation images after each epoch, against the same network "
                         "before training (the floor); under it, training has made the features worse so far")


class TrainingPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.progress = ProgressRow()
        self.alarm = QLabel()  # the collapse alarm, in words (ssl_engine.collapse)
        self.alarm.setObjectName("collapse_alarm")
        self.alarm.setWordWrap(True)
        self.alarm.setStyleSheet(ALARM_STYLE)
        self.alarm.hide()
        self.watch: CollapseWatch | None = None
        self.loss_plot = LossPlot()
        self.diagnostics = DiagnosticsView()
        self.curves = QTabWidget()  # the loss, and the measures of the network
        self.curves.setObjectName("curves")
        self.curves.addTab(self.loss_plot, "Loss")
        self.curves.addTab(self.diagnostics, "Diagnostics")
        self.views = ImageGrid("the augmented views appear when training starts")
        self.matrix = MatrixView()
        self.histogram = HistogramView()
        self.method_views = QTabWidget()  # the matrix, and per-prototype counts where a method has them
        self.method_views.addTab(self.matrix, "Correlation")
        self.method_views.addTab(self.histogram, "Prototype usage")
        self.masks = ImageGrid()  # masked methods: masks, reconstructions, predicted targets
        self.method_views.addTab(self.masks, "Masks")
        self.attention = ImageGrid()  # any ViT: the class token's attention per head
        self.method_views.addTab(self.attention, "Attention")
        for tab in (1, 2, 3):
            self.method_views.setTabVisible(tab, False)
        self.projection = ProjectionView()
        # a reopened run's map at any recorded epoch (hidden during a live run)
        self.map_epochs = QSlider(Qt.Orientation.Horizontal)
        self.map_epochs.setObjectName("map_epochs")
        self.map_epochs.setToolTip("the embedding map after each recorded epoch")
        self.map_epochs.valueChanged.connect(self._show_recorded_map)
        self.map_epoch_label = QLabel()
        self.map_row = QWidget()
        row = QHBoxLayout(self.map_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("epoch"))
        row.addWidget(self.map_epochs, 1)
        row.addWidget(self.map_epoch_label)
        self.map_row.hide()
        self.replay = None  # the reopened run whose views are shown, or None
        embeddings = QWidget()
        column = QVBoxLayout(embeddings)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.projection, 1)
        column.addWidget(self.map_row)
        self.class_names: list[str] = []
        grid = QGridLayout()
        for (row, column), (title, widget) in {
                (0, 0): ("Curves", self.curves), (0, 1): ("Augmented views, as trained on", self.views),
                (1, 0): ("What the method sees", self.method_views), (1, 1): ("Embeddings of the evaluation images", embeddings),
        }.items():
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(widget)
            grid.addWidget(box, row, column)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.progress)
        layout.addWidget(self.alarm)
        layout.addLayout(grid, 1)
        self.progress.labels["knn"].setAlignment(Qt.AlignmentFlag.AlignRight)
        self._displays = {"views": self._show_views, "matrices": self._show_matrices,
                          "histograms": self._show_histograms, "pictures": self._show_pictures,
                          "attention": self._show_attention, "map": self._show_map}

    def reset(self) -> None:
        """Every view back to what it shows before a run (a new run starts from nothing)."""
        self.progress.clear()
        self.loss_plot.reset()
        self.diagnostics.clear()
        self.alarm.hide()
        self.watch = None
        self.curves.setTabText(1, "Diagnostics")
        self.views.clear("the augmented views appear when training starts")
        self.matrix.clear()
        self.histogram.clear()
        self.masks.clear()
        self.attention.clear()
        self.method_views.setTabVisible(0, True)
        for tab in (1, 2, 3):
            self.method_views.setTabVisible(tab, False)
        self.projection.clear()
        self.replay = None
        self.map_row.hide()

    def apply(self, delivery: Delivery) -> None:
        """Draw one mailbox delivery: the run's start, the step metrics, then each probe's results
        by the kind of display it declares."""
        if delivery.started is not None:
            self.class_names = delivery.started.class_names
            self.progress.start(delivery.started)
            self.watch = CollapseWatch(delivery.started.config)
            # masked methods have no view embeddings to correlate: their tab would stay empty
            has_matrices = bool(get_method(delivery.started.config["method"]["name"]).matrix_names)
            self.method_views.setTabVisible(0, has_matrices)
        if delivery.metrics:
            metrics = delivery.metrics
            steps = np.array([m.step for m in metrics], dtype=np.float64)
            series = {"loss": np.array([m.loss for m in metrics])}
            for name in metrics[-1].terms:
                series[name] = np.array([m.terms.get(name, np.nan) for m in metrics])
            series["lr"] = np.array([m.lr for m in metrics])
            self.loss_plot.add_points(steps, series)
            last = metrics[-1]
            self.progress.set_total_steps(last.total_steps)
            self.progress.show_step(last.step, last.epoch, last.images_per_second, last.eta_seconds)
        for name, results in delivery.probes.items():
            probe = PROBES[name]
            if probe.keeps_every_value:
                self._show_curve(name, results)
            else:
                self._displays[probe.display](results[-1])

    def show_run(self, replay) -> None:
        """Every view of a finished or cut-short run, rebuilt from its folder (a `Replay`): its
        curves, the last recorded result of each probe, and a slider over its maps' epochs."""
        self.reset()
        probes = {}
        for result in replay.curves:
            probes.setdefault(result.name, []).append(result)
        for name in replay.recorded:
            last = replay.load(name)
            if last is not None and name in PROBES:
                probes[name] = [last]
        self.apply(Delivery(started=replay.started, metrics=replay.metrics, probes=probes))
        # where the run ended, which its last logged step may fall short of
        steps_per_epoch = max(replay.started.steps_per_epoch, 1)
        self.progress.show_step(replay.last_step, (replay.last_step - 1) // steps_per_epoch, None, None)
        self.replay = replay
        maps = replay.recorded.get("map", [])
        if len(maps) > 1:
            self.map_epochs.blockSignals(True)
            self.map_epochs.setRange(0, len(maps) - 1)
            self.map_epochs.setValue(len(maps) - 1)
            self.map_epochs.blockSignals(False)
            self.map_epoch_label.setText(f"{maps[-1][1]}")
            self.map_row.show()

    def _show_recorded_map(self, position: int) -> None:
        if self.replay is None:
            return
        step, epoch = self.replay.recorded["map"][position]
        self.map_epoch_label.setText(f"{epoch}")
        result = self.replay.load("map", step)
        if result is not None:
            self._show_map(result)

    def _show_curve(self, name: str, results) -> None:
        """Points on the epoch-metric axis; before the first step the kNN is the floor, a line.
        The diagnostics go to their own view, and raise the collapse alarm."""
        if name == DIAGNOSTICS:
            self._show_diagnostics(results)
            return
        for result in results:
            columns = result.value if isinstance(result.value, dict) else {name: result.value}
            for column, value in columns.items():
                if column == KNN and result.step == 0:
                    self.progress.set_floor(value)
                    self.loss_plot.set_floor(value)
                    continue
                self.loss_plot.add_epoch_metric(column, result.step, value)
                if column == KNN:
                    self.progress.show_knn(result.epoch, value)

    def _show_diagnostics(self, results) -> None:
        self.diagnostics.add(results)
        for result in results:
            alarm = self.watch.feed(result) if self.watch is not None else None
            if alarm is not None:
                self.alarm.setText(f"⚠ {alarm.message[0].upper()}{alarm.message[1:]}")
                self.alarm.show()
                self.curves.setTabText(1, "Diagnostics ⚠")

    # Each display takes a probe's newest ProbeResult.
    def _show_views(self, result) -> None:
        self.views.set_images(result.value.originals, result.value.views)

    def _show_matrices(self, result) -> None:
        self.matrix.set_matrices(result.value.matrices)

    def _show_histograms(self, result) -> None:
        self.method_views.setTabVisible(1, True)
        self.histogram.set_histograms(result.value.histograms)

    def _show_map(self, result) -> None:
        snapshot = result.value
        self.projection.set_snapshot(snapshot.projection_2d, snapshot.labels, snapshot.class_names,
                                     snapshot.images, snapshot.embeddings,
                                     f"epoch {result.epoch}, {len(snapshot.labels)} test images")

    def _show_pictures(self, result) -> None:
        """A masked method's masks and reconstructions, in their own tab."""
        shown = result.value
        names = ", ".join(name.replace("_", " ") for name in shown.pictures)
        self.masks.set_images(shown.originals, picture_columns(shown.originals, shown.pictures),
                              f"each row: an image, then {names}")
        self.method_views.setTabVisible(2, True)

    def _show_attention(self, result) -> None:
        """A ViT's class-token attention maps, in their own tab."""
        shown = result.value
        heads = shown.attention.shape[1]
        self.attention.set_images(shown.originals, attention_columns(shown.originals, shown.attention),
                                  f"each row: an image, then the last block's class-token attention, "
                                  f"{heads} heads")
        self.method_views.setTabVisible(3, True)
