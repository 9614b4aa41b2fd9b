"""The Diagnostics view: the field's measures of the network at each epoch's end (and at random
initialisation, epoch 0), one small plot each, with its reference drawn: RankMe against the
dimension (of the method's embedding, and of the backbone's features), the embedding's spread
against 1/sqrt(d), the InfoNCE bound under its ceiling log N,
the Gaussian mutual information, alignment and uniformity, and a masked method's loss on
held-out images. The values are the `diagnostics` probe's (`ssl_engine.probes.diagnostics`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

COLOUR = "#0072b2"
REFERENCE_PEN = dict(color="#d9534f", width=1, style=Qt.PenStyle.DashLine)
COLUMNS = 3

# each plot: its key, its title, the key of its reference line (or None), and what it tells
MEASURES = (
    ("rankme", "RankMe", None,
     "exp of the entropy of the normalised singular values of the embeddings (Garrido et al. 2023): how many "
     "dimensions the images really use; it falls towards 1 as the embedding collapses"),
    ("embedding_std", "spread", "embedding_std_reference",
     "mean per-dimension standard deviation of the L2-normalised embeddings: 0 when every image has the same "
     "embedding; the dashed line is 1/sqrt(d), the spread of embeddings spread evenly over the sphere"),
    ("feature_rankme", "backbone rank", None,
     "RankMe of the backbone's features, what a downstream task (kNN, linear probe) sees; the other measures "
     "are of the method's embedding (its projector's output), what its loss compares"),
    ("infonce_bound", "InfoNCE", "infonce_ceiling",
     "log N minus the InfoNCE loss of the two views at a fixed temperature (Oord et al. 2018): a lower bound "
     "on the mutual information of the views' features; it cannot exceed log N, the dashed line"),
    ("gaussian_mi", "Gaussian MI", None,
     "-1/2 log det(I - S12 S21) of the two views' whitened features, were they Gaussian, on their leading "
     "principal directions"),
    ("alignment", "alignment ↓", None,
     "mean squared distance between the normalised features of an image's two views (Wang and Isola 2020)"),
    ("uniformity", "uniformity ↓", None,
     "log of the mean Gaussian potential between the normalised features of different images (Wang and "
     "Isola 2020): how evenly they cover the sphere"),
    ("held_out_loss", "held-out loss", None,
     "the masked method's own loss on the fixed evaluation images, un-augmented, under fixed masks"),
)


class _MeasurePlot:
    def __init__(self, key: str, title: str, reference: str | None, help_text: str):
        self.key, self.title, self.reference = key, title, reference
        # the title is a label of its own: a pyqtgraph title widens the plot past its cell
        self.label = QLabel(title)
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = self.label.font()
        font.setPointSizeF(font.pointSizeF() * 0.85)
        self.label.setFont(font)
        plot_widget = pg.PlotWidget()
        plot_widget.setMinimumSize(80, 70)  # three abreast still fit the Training tab in a 1280 px window
        self.widget = QWidget()
        self.widget.setToolTip(help_text)
        column = QVBoxLayout(self.widget)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.label)
        column.addWidget(plot_widget, 1)
        self.plot = plot_widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.getAxis("left").setWidth(34)  # the x axis is the epoch (the note says so): no label
        self.curve = self.plot.plot([], [], pen=pg.mkPen(COLOUR, width=2), symbol="o", symbolSize=5,
                                    symbolBrush=COLOUR, symbolPen=None)
        self.line = pg.InfiniteLine(angle=0, pen=pg.mkPen(**REFERENCE_PEN))
        self.line.hide()
        self.plot.addItem(self.line)
        self.clear()

    def clear(self) -> None:
        self.epochs: list[float] = []
        self.values: list[float] = []
        self.curve.setData([], [])
        self.line.hide()
        self.label.setText(self.title)

    def add(self, epoch: int, values: dict) -> None:
        value = values.get(self.key)
        if value is None or not np.isfinite(value):
            return
        if self.epochs and epoch <= self.epochs[-1]:  # a resumed run repeats an epoch: keep the newest
            keep = [i for i, e in enumerate(self.epochs) if e < epoch]
            self.epochs = [self.epochs[i] for i in keep]
            self.values = [self.values[i] for i in keep]
        self.epochs.append(float(epoch))
        self.values.append(float(value))
        self.curve.setData(self.epochs, self.values)
        self.plot.enableAutoRange()  # a page drawn while hidden keeps its first range otherwise
        title = f"{self.title} {value:.3g}"
        if self.key == "rankme" and values.get("embedding_dim"):
            title += f" / {values['embedding_dim']:.0f}"
        reference = values.get(self.reference) if self.reference else None
        if reference is not None and np.isfinite(reference):
            self.line.setValue(float(reference))
            self.line.show()
        self.label.setText(title)


class DiagnosticsView(QWidget):
    """`add(results)` draws the diagnostics probe's results (oldest first); `clear()` empties it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.note = QLabel("Against the epoch (0: the network at random initialisation); dashed: the reference "
                           "(1/√d, log N). Hover a plot for what it measures.")
        self.note.setWordWrap(True)
        self.plots = {key: _MeasurePlot(key, title, reference, help_text)
                      for key, title, reference, help_text in MEASURES}
        grid = QGridLayout()
        grid.setSpacing(2)
        for index, plot in enumerate(self.plots.values()):
            grid.addWidget(plot.widget, index // COLUMNS, index % COLUMNS)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addLayout(grid, 1)
        self.clear()

    def clear(self) -> None:
        for plot in self.plots.values():
            plot.clear()
        self.plots["held_out_loss"].widget.hide()  # masked methods only
        self.latest: dict = {}

    def add(self, results) -> None:
        for result in results:
            values = result.value if isinstance(result.value, dict) else {}
            for plot in self.plots.values():
                plot.add(result.epoch, values)
            if "held_out_loss" in values:
                self.plots["held_out_loss"].widget.show()
            self.latest = values
