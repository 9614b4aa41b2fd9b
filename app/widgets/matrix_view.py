"""Heatmap of a square matrix sent during training (cross-correlation, covariance, similarity).

A diverging colour map centred on zero with fixed levels (-1, 1), so that correlations of
different steps compare by colour; matrices that go beyond [-1, 1] (a covariance) get symmetric
levels from their largest absolute value, rounded up to one significant digit. A selector
appears when the trainer sends more than one matrix and keeps the user's choice across updates.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

DIVERGING_COLOUR_MAP = "CET-D1"  # blue - white - red
CORRELATION_TOLERANCE = 1e-3  # float32 correlations may overshoot 1 by rounding


def symmetric_level(matrix: np.ndarray) -> float:
    """The colour bar's half range: 1 for matrices within [-1, 1] (correlations, cosine
    similarities), else the largest finite absolute value rounded up to one significant digit."""
    finite = np.abs(matrix[np.isfinite(matrix)])
    largest = float(finite.max(initial=0.0))
    if largest <= 1.0 + CORRELATION_TOLERANCE:
        return 1.0
    magnitude = 10.0 ** np.floor(np.log10(largest))
    return float(np.ceil(largest / magnitude) * magnitude)


class MatrixView(QWidget):
    """One named matrix at a time, chosen in `selector`; `clear()` empties it for the next run."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._matrices: dict[str, np.ndarray] = {}
        self.selector = QComboBox()
        self.selector.hide()
        self.selector.currentTextChanged.connect(self._show_selected)
        self.title = QLabel()
        self.readout = QLabel(" ")
        plot_widget = pg.PlotWidget()
        self.plot_item = plot_widget.getPlotItem()
        self.plot_item.invertY(True)  # row 0 at the top, as matrices are printed
        self.plot_item.setAspectLocked(True)
        self.plot_item.setLabel("left", "row i")
        self.plot_item.setLabel("bottom", "column j")
        for side in ("left", "bottom"):
            self.plot_item.getAxis(side).enableAutoSIPrefix(False)  # "row i", never "row i (x0.001)"
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot_item.addItem(self.image)
        self.colour_bar = pg.ColorBarItem(values=(-1, 1), colorMap=DIVERGING_COLOUR_MAP, interactive=False)
        self.colour_bar.setImageItem(self.image, insert_in=self.plot_item)
        self.plot_item.scene().sigMouseMoved.connect(self._on_mouse_moved)
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.selector)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(plot_widget, 1)
        layout.addWidget(self.readout)
        self.clear()

    def set_matrices(self, matrices: dict[str, np.ndarray]) -> None:
        """Show the newest matrices, float32 (d, d) by name; the chosen name stays chosen if present."""
        self._matrices = dict(matrices)
        names = list(matrices)
        if names != [self.selector.itemText(index) for index in range(self.selector.count())]:
            chosen = self.selector.currentText()
            with QSignalBlocker(self.selector):
                self.selector.clear()
                self.selector.addItems(names)
                if chosen in names:
                    self.selector.setCurrentText(chosen)
        self.selector.setVisible(len(names) > 1)
        for side in ("left", "bottom"):
            self.plot_item.showAxis(side)
        self._show_selected()

    def selected_name(self) -> str:
        return self.selector.currentText()

    def clear(self) -> None:
        self._matrices = {}
        with QSignalBlocker(self.selector):
            self.selector.clear()
        self.selector.hide()
        self.image.clear()
        self.colour_bar.setLevels((-1.0, 1.0))
        self.plot_item.enableAutoRange()
        for side in ("left", "bottom"):  # an empty plot's axes would number nothing
            self.plot_item.hideAxis(side)
        self.title.setText("the method's matrices appear in a run's first steps")
        self.readout.setText(" ")

    @Slot()
    def _show_selected(self) -> None:
        name = self.selector.currentText()
        matrix = self._matrices.get(name)
        if matrix is None:
            return
        level = symmetric_level(matrix)
        self.image.setImage(np.ascontiguousarray(matrix, dtype=np.float32), autoLevels=False)
        self.colour_bar.setLevels((-level, level))
        rows, columns = matrix.shape
        self.title.setText(f"{name}, {rows} × {columns}")

    @Slot(object)
    def _on_mouse_moved(self, scene_position) -> None:
        matrix = self._matrices.get(self.selector.currentText())
        position = self.plot_item.vb.mapSceneToView(scene_position)
        row, column = int(np.floor(position.y())), int(np.floor(position.x()))
        inside = self.plot_item.vb.sceneBoundingRect().contains(scene_position)
        if matrix is None or not inside or not (0 <= row < matrix.shape[0] and 0 <= column < matrix.shape[1]):
            self.readout.setText(" ")
            return
        self.readout.setText(f"({row}, {column}) = {matrix[row, column]:.4g}")
