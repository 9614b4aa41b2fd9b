"""The Evaluate tab's Accuracy view: kNN and linear-probe accuracy of one or two models on labelled folders.

The user picks a protocol (cross-validation within a folder, or train on one folder and test on
another), k and whether to fit the linear probe, then Run: the reports are computed off the UI
thread with the same seed for every model, and kept by the evaluation session, which this view
observes. Shown: one row per model (kNN top-1 and top-5, probe top-1, test images), a per-class
table with a column per model and classifier, and a confusion matrix heatmap (row-normalised:
each row is where one class's test images went) for the model and classifier chosen beside it.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt, Signal, Slot
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QProgressBar, QPushButton, QSizePolicy, QSpinBox, QSplitter, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ssl_engine.eval.accuracy import AccuracyReport
from ssl_engine.eval.results import Accuracy, measure_accuracy
from ssl_engine.eval.session import ACCURACY, EMBEDDINGS, EvaluationSession

from ..evaluation_worker import LatestCall
from ..file_dialogs import export_to_file

SEQUENTIAL_COLOUR_MAP = "viridis"
KNN, PROBE = "kNN", "linear probe"


def percent(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def row_normalised(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows with no test image stay 0): float32, C-contiguous."""
    sums = confusion.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(np.divide(confusion, sums, out=np.zeros(confusion.shape), where=sums > 0),
                                dtype=np.float32)


def read_only_item(text: str, align_right: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def new_table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


class ConfusionView(QWidget):
    """A row-normalised confusion matrix with class names on the axes and a 0-1 colour bar."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._counts: np.ndarray | None = None
        self._names: list[str] = []
        self._column_labels: list[str] = []   # the predicted-class names as drawn, maybe shortened
        self.selector = QComboBox()
        self.selector.setToolTip("whose predictions the matrix shows")
        self.readout = QLabel(" ")
        plot_widget = pg.PlotWidget()
        self.plot_item = plot_widget.getPlotItem()
        self.plot_item.invertY(True)   # the first class at the top, as tables are read
        self.plot_item.setAspectLocked(True)
        self.plot_item.setLabel("left", "true class")
        self.plot_item.setLabel("bottom", "predicted class")
        self.plot_item.setMenuEnabled(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot_item.addItem(self.image)
        self.colour_bar = pg.ColorBarItem(values=(0, 1), colorMap=SEQUENTIAL_COLOUR_MAP, interactive=False,
                                          label="share of the true class")
        self.colour_bar.setImageItem(self.image, insert_in=self.plot_item)
        self.plot_item.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot_item.vb.sigTransformChanged.connect(self._label_columns)
        header = QHBoxLayout()
        header.addWidget(QLabel("Confusion matrix of"))
        header.addWidget(self.selector, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(plot_widget, 1)
        layout.addWidget(self.readout)

    def show_matrix(self, counts: np.ndarray | None, class_names: list[str]) -> None:
        self._counts, self._names = counts, list(class_names)
        if counts is None:
            self.image.clear()
            return
        self.image.setImage(row_normalised(counts), autoLevels=False)
        self.plot_item.getAxis("left").setTicks([[(i + 0.5, name) for i, name in enumerate(class_names)]])
        self.plot_item.autoRange()
        self._label_columns()

    @Slot()
    def _label_columns(self) -> None:
        """Predicted-class names under the columns, shortened to the width of a column on screen
        (redone as the view is resized or zoomed)."""
        if not self._names:
            return
        view_box = self.plot_item.vb
        column_pixels = view_box.mapViewToScene(pg.Point(1, 0)).x() - view_box.mapViewToScene(pg.Point(0, 0)).x()
        metrics = self.fontMetrics()
        names = [metrics.elidedText(name, Qt.TextElideMode.ElideRight, max(int(column_pixels) - 6, 12))
                 for name in self._names]
        if names != self._column_labels:
            self._column_labels = names
            self.plot_item.getAxis("bottom").setTicks([[(i + 0.5, name) for i, name in enumerate(names)]])

    @Slot(object)
    def _on_mouse_moved(self, scene_position) -> None:
        counts = self._counts
        position = self.plot_item.vb.mapSceneToView(scene_position)
        row, column = int(np.floor(position.y())), int(np.floor(position.x()))
        inside = self.plot_item.vb.sceneBoundingRect().contains(scene_position)
        if counts is None or not inside or not (0 <= row < len(counts) and 0 <= column < len(counts)):
            self.readout.setText(" ")
            return
        total = int(counts[row].sum())
        share = f" ({counts[row, column] / total:.0%})" if total else ""
        self.readout.setText(f"true {self._names[row]} → predicted {self._names[column]}: "
                             f"{counts[row, column]} of {total}{share}")


class AccuracyView(QWidget):
    """Accuracy of the session's embedded models on the labelled folders among the opened ones."""

    notice = Signal(str)
    error = Signal(str)

    def __init__(self, session: EvaluationSession, parent=None):
        super().__init__(parent)
        self.session = session
        self._runner = LatestCall(self)
        self._runner.done.connect(self._reports_ready)
        self._runner.failed.connect(self._failed)
        self._runner.idle.connect(self._update_enabled)

        self.protocol = QComboBox()
        self.protocol.setToolTip("cross-validation within one labelled folder, or train on one folder and test on another")
        self.protocol.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 200)
        self.k_spin.setValue(20)
        self.k_spin.setPrefix("k = ")
        self.k_spin.setToolTip("neighbours that vote in the kNN classifier (weighted by similarity)")
        self.probe_check = QCheckBox("Linear probe")
        self.probe_check.setChecked(True)
        self.probe_check.setToolTip("also fit a logistic-regression probe on the frozen features (slower)")
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.progress = QProgressBar()  # no fraction to show: the measurement is one call
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(120)
        self.progress.setToolTip("measuring: kNN and the linear probe on every fold")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("stop measuring; the last results stay")
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QPushButton("Export table…")
        self.export_button.clicked.connect(self.export_to_chosen_file)
        self.status = QLabel("open a folder whose subfolders are its classes")
        self.status.setWordWrap(True)

        self.summary = new_table(["Model", "kNN top-1", "kNN top-5", "Linear probe top-1", "Test images"])
        self.per_class = new_table(["Class", "Count"])
        self.confusion = ConfusionView()
        self.confusion.selector.currentIndexChanged.connect(self._show_confusion)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Protocol"))
        controls.addWidget(self.protocol)
        controls.addWidget(self.k_spin)
        controls.addWidget(self.probe_check)
        controls.addWidget(self.run_button)
        controls.addWidget(self.progress)
        controls.addWidget(self.cancel_button)
        controls.addStretch(1)
        controls.addWidget(self.export_button)
        # the models' table across the top, sized to its rows; per class and the matrix side by side below
        self.summary.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.summary.horizontalHeader().setStretchLastSection(False)
        self.summary.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.summary.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.summary.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        body = QSplitter()
        body.addWidget(self.per_class)
        body.addWidget(self.confusion)
        body.setStretchFactor(0, 2)
        body.setStretchFactor(1, 3)
        body.setSizes([400, 600])
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(self.summary)
        layout.addWidget(body, 1)
        session.events.connect(EMBEDDINGS, self._models_changed)
        session.events.connect(ACCURACY, self._show_reports)
        self._clear_results()
        self._update_enabled()

    @property
    def reports(self) -> list[AccuracyReport]:
        """The reports shown: the session's accuracy, one report per model ([] before a run)."""
        return self.session.accuracy.reports if self.session.accuracy is not None else []

    def _models_changed(self) -> None:
        """The models embedded so far (the chosen one first), each over the same opened folders."""
        previous = self.protocol.currentData()
        models = self.session.embedded_models()
        self._runner.drop()
        self._clear_results()
        with QSignalBlocker(self.protocol):
            self.protocol.clear()
            if models:
                names = self.session.primary.folder_names
                for protocol in self.session.protocols():
                    self.protocol.addItem(protocol.describe(names), protocol)
                if previous is not None and self.protocol.findData(previous) >= 0:
                    self.protocol.setCurrentIndex(self.protocol.findData(previous))
        if not models:
            self.status.setText("no images embedded yet")
        elif self.protocol.count() == 0:
            self.status.setText("none of the folders is labelled: accuracy needs a folder whose subfolders are its classes")
        else:
            compared = " and ".join(model.model.name for model in models)
            self.status.setText(f"press Run to measure {compared}")
        self._update_enabled()

    # -- what the panel calls ------------------------------------------------------------
    def has_labels(self) -> bool:
        return self.protocol.count() > 0

    @Slot()
    def run(self) -> None:
        protocol, models = self.protocol.currentData(), self.session.embedded_models()
        if protocol is None or not models:
            return
        self.status.setText(f"measuring accuracy ({protocol.describe(models[0].folder_names)})…")
        self._runner.request_cancellable(measure_accuracy, models, protocol, self.k_spin.value(),
                                         self.probe_check.isChecked())
        self._update_enabled()

    @Slot()
    def cancel(self) -> None:
        if self._runner.busy():
            self._runner.drop()  # the job polls its cancel flag and ends; its outcome is ignored
            self.status.setText("accuracy cancelled: press Run to measure again")

    def running(self) -> bool:
        return self._runner.busy()

    def export(self, path: str) -> str:
        return self.session.exports.accuracy(path)()

    def shutdown(self) -> None:
        self._runner.shutdown()

    # -- results -------------------------------------------------------------------------
    @Slot(object)
    def _reports_ready(self, accuracy: Accuracy) -> None:
        self.session.accept(accuracy)

    def _show_reports(self) -> None:
        first = self.reports[0]
        counts = (f"{first.test_count:,} images, each predicted once by classifiers fitted on the other folds"
                  if self.session.accuracy.protocol.test is None else
                  f"{first.train_count:,} train images, {first.test_count:,} test images")
        self.status.setText(f"{first.protocol} · k = {first.k} · {counts}")
        self._fill_summary()
        self._fill_per_class()
        with QSignalBlocker(self.confusion.selector):
            self.confusion.selector.clear()
            for index, report in enumerate(self.reports):
                self.confusion.selector.addItem(f"{report.model_name} · {KNN}", (index, KNN))
                if report.confusion_probe is not None:
                    self.confusion.selector.addItem(f"{report.model_name} · {PROBE}", (index, PROBE))
        self._show_confusion()
        self._update_enabled()

    @Slot(str)
    def _failed(self, message: str) -> None:
        self.status.setText(f"cannot measure accuracy: {message}")
        self.error.emit(f"cannot measure accuracy: {message}")
        self._update_enabled()

    def _fill_summary(self) -> None:
        self.summary.setRowCount(len(self.reports))
        for row, report in enumerate(self.reports):
            cells = [report.model_name, percent(report.knn_top1), percent(report.knn_top5),
                     percent(report.probe_top1), f"{report.test_count:,}"]
            for column, text in enumerate(cells):
                self.summary.setItem(row, column, read_only_item(text, align_right=column > 0))
        # top-5 says nothing with 5 classes or fewer (it is always 100%)
        self.summary.setColumnHidden(2, all(len(report.class_names) <= 5 for report in self.reports))
        self._fit_summary_height()

    def _fit_summary_height(self) -> None:
        rows = max(self.summary.rowCount(), 2)
        self.summary.setFixedHeight(self.summary.horizontalHeader().height()
                                    + rows * self.summary.verticalHeader().defaultSectionSize()
                                    + 2 * self.summary.frameWidth())

    def _fill_per_class(self) -> None:
        headers, tips = ["Class", "Count"], ["", "test images of the class"]
        columns: list[np.ndarray] = []
        for report in self.reports:
            # a header of two short lines; the model's whole name in its tooltip
            name = self.fontMetrics().elidedText(report.model_name, Qt.TextElideMode.ElideRight, 110)
            for classifier, values in ((KNN, report.per_class_knn), (PROBE, report.per_class_probe)):
                if values is not None:
                    headers.append(f"{classifier}\n{name}")
                    tips.append(f"{classifier} top-1 of {report.model_name}")
                    columns.append(values)
        first = self.reports[0]
        counts = first.confusion_knn.sum(axis=1)
        self.per_class.clear()
        self.per_class.setColumnCount(len(headers))
        self.per_class.setHorizontalHeaderLabels(headers)
        for column, tip in enumerate(tips):
            self.per_class.horizontalHeaderItem(column).setToolTip(tip)
        self.per_class.setRowCount(len(first.class_names))
        # the class names take what they need, the accuracies share the rest: no sideways scroll
        header = self.per_class.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for row, name in enumerate(first.class_names):
            self.per_class.setItem(row, 0, read_only_item(name))
            self.per_class.item(row, 0).setToolTip(name)
            self.per_class.setItem(row, 1, read_only_item(f"{int(counts[row]):,}", align_right=True))
            for column, values in enumerate(columns, start=2):
                self.per_class.setItem(row, column, read_only_item(percent(float(values[row])), align_right=True))

    @Slot()
    def _show_confusion(self) -> None:
        choice = self.confusion.selector.currentData()
        if choice is None:
            self.confusion.show_matrix(None, [])
            return
        report = self.reports[choice[0]]
        counts = report.confusion_knn if choice[1] == KNN else report.confusion_probe
        self.confusion.show_matrix(counts, report.class_names)

    def _clear_results(self) -> None:
        self.summary.setRowCount(0)
        self._fit_summary_height()
        self.per_class.setRowCount(0)
        with QSignalBlocker(self.confusion.selector):
            self.confusion.selector.clear()
        self.confusion.show_matrix(None, [])

    @Slot()
    def _update_enabled(self) -> None:
        busy = self._runner.busy()
        self.run_button.setEnabled(self.protocol.count() > 0 and not busy)
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.export_button.setEnabled(bool(self.reports))

    @Slot()
    def export_to_chosen_file(self) -> None:
        export_to_file(self, "Export accuracy table", "accuracy.csv", "CSV (*.csv)", self.export, self.notice,
                       self.error)
