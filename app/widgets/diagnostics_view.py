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
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

COLOUR = "#0072b2"
REFERENCE_PEN = dict(color="#d9534f", width=1, style=Qt.PenStyle.DashLine)
COLUMNS = 4

# each plot: its key, its title, the key of its reference line (or None), and what it tells
MEASURES = (
    ("rankme", "effective rank (RankMe)", None,
     "exp of the entropy of the normalised singular values of the embeddings (Garrido et al. 2023): how many "
     "dimensions the images really use; it falls towards 1 as the embedding collapses"),
    ("embedding_std", "spread of the normalised embedding", "embedding_std_reference",
     "mean per-dimension standard deviation of the L2-normalised embeddings: 0 when every image has the same "
     "embedding; the dashed line is 1/sqrt(d), the spread of embeddings spread evenly over the sphere"),
    ("feature_rankme", "effective rank of the backbone's features", None,
     "RankMe of the backbone's features, what a downstream task (kNN, linear probe) sees; the other measures "
     "are of the method's embedding (its projector's output), what its loss compares"),
    ("infonce_bound", "InfoNCE bound (nats)", "infonce_ceiling",
     "log N minus the InfoNCE loss of the two views at a fixed temperature (Oord et al. 2018): a lower bound "
     "on the mutual information of the views' features; it cannot exceed log N, the dashed line"),
    ("gaussian_mi", "Gaussian mutual information (nats)", None,
     "-1/2 log det(I - S12 S21) of the two views' whitened features, were they Gaussian, on their leading "
     "principal directions"),
    ("alignment", "alignment (lower: closer views)", None,
     "mean squared distance between the normalised features of an image's two views (Wang and Isola 2020)"),
    ("uniformity", "uniformity (lower: more uniform)", None,
     "log of the mean Gaussian potential between the normalised features of different images (Wang and "
     "Isola 2020): how evenly they cover the sphere"),
    ("held_out_loss", "loss on held-out images", None,
     "the masked method's own loss on the fixed evaluation images, un-augmented, under fixed masks"),
)


class _MeasurePlot:
    def __init__(self, key: str, title: str, reference: str | None, help_text: str):
        self.key, self.title, self.reference = key, title, reference
        self.widget = pg.PlotWidget()
        self.widget.setToolTip(help_text)
        self.widget.setMinimumSize(80, 80)  # four abreast still fit the Training tab in a 1280 px window
        self.plot = self.widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("bottom", "epoch")
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
        self.plot.setTitle(self.title, size="9pt")

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
        title = f"{self.title}: {value:.3g}"
        if self.key == "rankme" and values.get("embedding_dim"):
            title += f" of {values['embedding_dim']:.0f} dims"
        reference = values.get(self.reference) if self.reference else None
        if reference is not None and np.isfinite(reference):
            self.line.setValue(float(reference))
            self.line.show()
            title += f" (dashed {reference:.3g})"
        self.plot.setTitle(title, size="9pt")


class DiagnosticsView(QWidget):
    """`add(results)` draws the diagnostics probe's results (oldest first); `clear()` empties it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.note = QLabel("The measures appear before the first step (the network at random initialisation) "
                           "and after each epoch; hover a plot for what it measures.")
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
