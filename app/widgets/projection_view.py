"""Map of the embedding space: a fixed evaluation subset projected to 2-D, one colour per class,
with the image under the mouse shown enlarged beside the cursor.

"PCA (live)" draws the projection sent with each snapshot. "t-SNE" runs a seeded t-SNE of the
snapshot's embeddings in a thread pool, off the UI thread. Later snapshots keep showing that t-SNE
(with the labels and images it was computed from) until "Recompute t-SNE" is pressed: t-SNE of
every epoch would take a CPU core from training. Each job carries its snapshot's id, and a result
whose request was superseded (by `clear()`) is dropped. Closing the widget waits for the job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget
from scipy.spatial import cKDTree

from ssl_engine.eval.projection import tsne_2d

from .theme import legend_brush

PCA_METHOD, TSNE_METHOD = "PCA (live)", "t-SNE"
THUMBNAIL_SIZE = 96
HOVER_RADIUS_PIXELS = 6
UNKNOWN_COLOUR = (150, 150, 150)


@dataclass(frozen=True, eq=False)
class _Snapshot:
    id: int
    points_2d: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    images: np.ndarray
    embeddings: np.ndarray
    title: str

    def class_name(self, label: int) -> str:
        if label < 0:
            return "unknown"
        return self.class_names[label] if label < len(self.class_names) else f"class {label}"


class _TsneSignals(QObject):
    """Lives in the UI thread, so its signals reach the view's slots there."""

    finished = Signal(int, object)  # snapshot id, float32 (M, 2) points
    failed = Signal(int, str)


class _TsneJob(QRunnable):
    """Runs in the pool and reports through the view's long-lived `_TsneSignals`."""

    def __init__(self, snapshot: _Snapshot, signals: _TsneSignals):
        super().__init__()
        self._signals = signals
        self._snapshot_id, self._embeddings = snapshot.id, snapshot.embeddings

    def run(self) -> None:
        try:
            points = tsne_2d(self._embeddings)
        except Exception as error:  # reported in the view's status line, never raised in the pool
            self._signals.failed.emit(self._snapshot_id, f"{type(error).__name__}: {error}")
        else:
            self._signals.finished.emit(self._snapshot_id, points)


class ProjectionView(QWidget):
    """Scatter of the latest embedding snapshot; `clear()` empties it for the next run."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._next_snapshot_id = 0
        self._snapshot: _Snapshot | None = None
        # A layout is a snapshot and the 2-D points drawn for it.
        self._pca: tuple[_Snapshot, np.ndarray] | None = None
        self._tsne: tuple[_Snapshot, np.ndarray] | None = None
        self._tsne_request: _Snapshot | None = None
        self._tsne_error = ""
        self._shown: tuple[_Snapshot, np.ndarray] | None = None
        self._tree: cKDTree | None = None
        self._tree_rows = np.empty(0, np.int64)  # snapshot index of each point in the tree
        self._scatters: dict[int, pg.ScatterPlotItem] = {}
        self._scatter_key: tuple | None = None
        self.hovered_index: int | None = None
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        # Created after the pool: children are destroyed in creation order, and the pool's
        # destructor waits for a running job, which must still find these signals alive.
        self._tsne_signals = _TsneSignals(self)
        self._tsne_signals.finished.connect(self._on_tsne_finished)
        self._tsne_signals.failed.connect(self._on_tsne_failed)

        self.method_selector = QComboBox()
        self.method_selector.addItems([PCA_METHOD, TSNE_METHOD])
        self.method_selector.currentTextChanged.connect(self._refresh)
        self.recompute_button = QPushButton("Recompute t-SNE")
        self.recompute_button.clicked.connect(self._on_recompute_clicked)
        self.status = QLabel()
        self._plot_widget = pg.PlotWidget()
        self.plot_item = self._plot_widget.getPlotItem()
        self.plot_item.addLegend(brush=legend_brush(), offset=(-10, 10))
        self.plot_item.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._thumbnail = QFrame(self._plot_widget)
        self._thumbnail.setFrameShape(QFrame.Box)
        self._thumbnail.setAutoFillBackground(True)
        self._thumbnail.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.thumbnail_image, self.thumbnail_caption = QLabel(), QLabel()
        thumbnail_layout = QVBoxLayout(self._thumbnail)
        thumbnail_layout.setContentsMargins(3, 3, 3, 3)
        thumbnail_layout.addWidget(self.thumbnail_image)
        thumbnail_layout.addWidget(self.thumbnail_caption)
        self._thumbnail.hide()
        header = QHBoxLayout()
        header.addWidget(self.status, 1)
        header.addWidget(self.method_selector)
        header.addWidget(self.recompute_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self._plot_widget, 1)
        self._refresh()

    def set_snapshot(self, points_2d: np.ndarray, labels: np.ndarray, class_names: list[str],
                     images: np.ndarray, embeddings: np.ndarray, title: str) -> None:
        """Show a new snapshot: its (M, 2) projection, (M,) labels (-1 unknown), (M, H, W, 3) uint8
        images and (M, D) embeddings, which t-SNE uses."""
        self._snapshot = _Snapshot(self._next_snapshot_id, np.asarray(points_2d, dtype=np.float32),
                                   np.asarray(labels, dtype=np.int64), list(class_names), images,
                                   embeddings, title)
        self._pca = (self._snapshot, self._snapshot.points_2d)
        self._next_snapshot_id += 1
        self._refresh()

    def point_count(self) -> int:
        """How many points the map shows now."""
        return sum(len(scatter.data) for scatter in self._scatters.values())

    def clear(self) -> None:
        self._snapshot = self._pca = self._tsne = self._tsne_request = None
        self._tsne_error = ""
        self._refresh()
        self.plot_item.enableAutoRange()  # the next run's map takes its own axes, not these

    def closeEvent(self, event) -> None:
        self._pool.waitForDone()  # t-SNE cannot be interrupted; no thread may outlive the view
        super().closeEvent(event)

    def leaveEvent(self, event) -> None:
        self._hide_thumbnail()
        super().leaveEvent(event)

    @Slot()
    def _refresh(self) -> None:
        """Draw what the chosen method shows now and say what it is."""
        tsne_chosen = self.method_selector.currentText() == TSNE_METHOD
        if tsne_chosen and self._tsne is None and self._tsne_request is None and not self._tsne_error:
            self._start_tsne()
        self._draw(self._tsne if tsne_chosen else self._pca)
        self.recompute_button.setVisible(tsne_chosen)
        self.recompute_button.setEnabled(self._snapshot is not None and self._tsne_request is None)
        self.status.setText(self._status_text(tsne_chosen))

    def _status_text(self, tsne_chosen: bool) -> str:
        if self._snapshot is None:
            return "the map of the evaluation images appears after a run's first epoch"
        if not tsne_chosen:
            return f"{self._snapshot.title}: PCA of {len(self._snapshot.labels)} points"
        if self._tsne_request is not None:
            return "computing t-SNE…"
        if self._tsne_error:
            return f"t-SNE failed: {self._tsne_error}"
        shown = self._tsne[0]
        text = f"{shown.title}: t-SNE of {len(shown.labels)} points"
        return text if shown is self._snapshot else text + " (press Recompute for the latest)"

    @Slot()
    def _on_recompute_clicked(self) -> None:
        self._start_tsne()
        self._refresh()

    def _start_tsne(self) -> None:
        snapshot = self._snapshot
        if snapshot is None or self._tsne_request is not None:
            return
        self._tsne_error = ""
        self._tsne_request = snapshot
        self._pool.start(_TsneJob(snapshot, self._tsne_signals))  # the pool owns and deletes the job

    @Slot(int, object)
    def _on_tsne_finished(self, snapshot_id: int, points: np.ndarray) -> None:
        if self._tsne_request is None or snapshot_id != self._tsne_request.id:
            return  # requested before clear(): its points belong to another run
        self._tsne, self._tsne_request = (self._tsne_request, points), None
        self._refresh()

    @Slot(int, str)
    def _on_tsne_failed(self, snapshot_id: int, message: str) -> None:
        if self._tsne_request is not None and snapshot_id == self._tsne_request.id:
            self._tsne_error, self._tsne_request = message, None
            self._refresh()

    def _draw(self, layout: tuple[_Snapshot, np.ndarray] | None) -> None:
        """Scatter `layout`'s points, one item per class; items are rebuilt only when classes change."""
        if layout is self._shown:
            return
        self._hide_thumbnail()
        self._shown = layout
        snapshot, points = layout if layout is not None else (None, np.empty((0, 2), np.float32))
        labels = np.empty(0, np.int64) if snapshot is None else snapshot.labels
        present = np.unique(labels)
        key = (tuple(present), tuple(snapshot.class_names) if snapshot else ())
        if key != self._scatter_key:
            for scatter in self._scatters.values():
                self.plot_item.removeItem(scatter)
            self._scatters = {int(label): self._new_scatter(snapshot, int(label)) for label in present}
            self._scatter_key = key
        for label, scatter in self._scatters.items():
            scatter.setData(pos=points[labels == label])
        finite = np.isfinite(points).all(axis=1)  # a diverged run sends NaN; cKDTree refuses it
        self._tree_rows = np.flatnonzero(finite)
        self._tree = cKDTree(points[finite]) if finite.any() else None
        self.plot_item.enableAutoRange()

    def _new_scatter(self, snapshot: _Snapshot, label: int) -> pg.ScatterPlotItem:
        colour = UNKNOWN_COLOUR if label < 0 else pg.intColor(label, hues=max(len(snapshot.class_names), 1))
        scatter = pg.ScatterPlotItem(size=6, pen=None, brush=pg.mkBrush(colour), pxMode=True,
                                     name=snapshot.class_name(label))
        self.plot_item.addItem(scatter)
        return scatter

    def _point_under(self, scene_position) -> int | None:
        """Index of the point nearest the cursor, if within HOVER_RADIUS_PIXELS on screen."""
        view = self.plot_item.vb
        if self._tree is None or not view.sceneBoundingRect().contains(scene_position):
            return None
        cursor = view.mapSceneToView(scene_position)
        cursor = np.array([cursor.x(), cursor.y()])
        pixel = np.array(view.viewPixelSize())
        # The axes may scale differently: search a data-space disc covering the pixel radius, then
        # measure the candidates in pixels.
        candidates = self._tree_rows[self._tree.query_ball_point(cursor, r=HOVER_RADIUS_PIXELS * pixel.max())]
        if not len(candidates):
            return None
        distances = np.hypot(*((self._shown[1][candidates] - cursor) / pixel).T)
        best = int(np.argmin(distances))
        return int(candidates[best]) if distances[best] <= HOVER_RADIUS_PIXELS else None

    @Slot(object)
    def _on_mouse_moved(self, scene_position) -> None:
        index = self._point_under(scene_position)
        if index is None:
            self._hide_thumbnail()
            return
        snapshot = self._shown[0]
        if index != self.hovered_index:
            image = np.ascontiguousarray(snapshot.images[index])
            height, width = image.shape[:2]
            picture = QImage(image.data, width, height, 3 * width, QImage.Format_RGB888)
            # Nearest-neighbour scaling keeps 32-pixel images crisp.
            self.thumbnail_image.setPixmap(QPixmap.fromImage(picture).scaled(
                THUMBNAIL_SIZE, THUMBNAIL_SIZE, Qt.KeepAspectRatio, Qt.FastTransformation))
            self.thumbnail_caption.setText(snapshot.class_name(int(snapshot.labels[index])))
            self._thumbnail.adjustSize()
            self.hovered_index = index
        cursor = self._plot_widget.mapFromScene(scene_position)
        x, y = cursor.x() + 16, cursor.y() + 16
        if x + self._thumbnail.width() > self._plot_widget.width():
            x = cursor.x() - 16 - self._thumbnail.width()
        if y + self._thumbnail.height() > self._plot_widget.height():
            y = cursor.y() - 16 - self._thumbnail.height()
        self._thumbnail.move(max(x, 0), max(y, 0))
        self._thumbnail.show()
        self._thumbnail.raise_()

    def _hide_thumbnail(self) -> None:
        self._thumbnail.hide()
        self.hovered_index = None
