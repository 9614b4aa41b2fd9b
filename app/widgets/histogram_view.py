"""Bars of what a method reports per prototype or cluster: how many images of the batch each
one took. A collapse shows at once as a few tall bars; a healthy run as an even spread.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget


class HistogramView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.selector = QComboBox()
        self.selector.currentTextChanged.connect(self._show_selected)
        self.title = QLabel("no counts yet")
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "prototype / cluster")
        self.plot.setLabel("left", "images in the batch")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.9, brush=pg.mkBrush(70, 130, 180))
        self.plot.addItem(self.bars)
        self.histograms: dict[str, np.ndarray] = {}
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.selector)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)

    def set_histograms(self, histograms: dict[str, np.ndarray]) -> None:
        self.histograms = histograms
        names = list(histograms)
        if names != [self.selector.itemText(i) for i in range(self.selector.count())]:
            current = self.selector.currentText()
            self.selector.blockSignals(True)
            self.selector.clear()
            self.selector.addItems(names)
            self.selector.setCurrentText(current if current in names else names[0])
            self.selector.blockSignals(False)
        self.selector.setVisible(len(names) > 1)
        self._show_selected()

    def shown(self) -> np.ndarray | None:
        return self.histograms.get(self.selector.currentText())

    def _show_selected(self) -> None:
        counts = self.shown()
        if counts is None:
            return
        self.bars.setOpts(x=np.arange(len(counts)), height=counts, width=0.9)
        used = int((counts > 0).sum())
        self.title.setText(f"{self.selector.currentText()}: {used} of {len(counts)} used, "
                           f"largest {counts.max() / max(counts.sum(), 1):.0%} of the batch")

    def clear(self) -> None:
        self.histograms = {}
        self.bars.setOpts(x=[], height=[])
        self.selector.clear()
        self.title.setText("no counts yet")
