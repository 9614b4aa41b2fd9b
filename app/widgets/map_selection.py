"""Selecting points on the embedding map: which points a rectangle or a lasso holds, the view
box whose drags draw them, and the panel beside the map that lists the selected images.

The panel's grid is a list view over a model that makes each icon only when it scrolls into
view, so that selecting 10,000 points makes a handful of pictures, not 10,000.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractListModel, QModelIndex, QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QPainterPath
from PySide6.QtWidgets import QGraphicsPathItem, QHBoxLayout, QLabel, QListView, QPushButton, QVBoxLayout, QWidget

from .map_thumbnails import ThumbnailImages

GRID_ICON_PIXELS = 64


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """bool (N,): which of `points` (N, 2) lie inside `polygon` (V, 2), by the even-odd rule
    (a horizontal ray from the point crosses the outline an odd number of times)."""
    points = np.asarray(points, dtype=np.float64)
    polygon = np.asarray(polygon, dtype=np.float64)
    inside = np.zeros(len(points), dtype=bool)
    if len(polygon) < 3 or not len(points):
        return inside
    low, high = polygon.min(axis=0), polygon.max(axis=0)
    candidates = np.flatnonzero(((points >= low) & (points <= high)).all(axis=1))
    x, y = points[candidates, 0], points[candidates, 1]
    crossings = np.zeros(len(candidates), dtype=bool)
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, axis=0)):
        spans = (y1 > y) != (y2 > y)  # the edge crosses the ray's height (never true when y1 == y2)
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        crossings ^= spans & (x < crossing_x)
    inside[candidates] = crossings
    return inside


def points_in_shape(points: np.ndarray, corners: np.ndarray, rectangle: bool) -> np.ndarray:
    """bool (N,): which points lie in the rectangle spanned by the first and last of `corners`
    (`rectangle`), or in the lasso they outline."""
    if rectangle:
        low, high = corners.min(axis=0), corners.max(axis=0)
        return ((points >= low) & (points <= high)).all(axis=1)
    return points_in_polygon(points, corners)


class MapViewBox(pg.ViewBox):
    """A ViewBox whose left-button drags go to `selection_drag` instead of panning, when it is set."""

    def __init__(self):
        super().__init__()
        self.selection_drag = None  # called with each pyqtgraph MouseDragEvent in a selection mode

    def mouseDragEvent(self, ev, axis=None):
        if self.selection_drag is not None and axis is None and ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.selection_drag(ev)
        else:
            super().mouseDragEvent(ev, axis)


class SelectionShape:
    """The rectangle or lasso a drag draws over `plot_item`, dashed in `colour`, shown while dragging."""

    def __init__(self, plot_item: pg.PlotItem, colour: tuple[int, int, int]):
        self.item = QGraphicsPathItem()
        self.item.setPen(pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine))
        self.item.setBrush(pg.mkBrush(*colour, 40))
        self.item.setZValue(40)
        plot_item.addItem(self.item, ignoreBounds=True)
        self._points: list[QPointF] = []   # the rectangle's corners or the lasso, data coordinates

    def drag(self, ev, view_box: pg.ViewBox, rectangle: bool) -> np.ndarray | None:
        """Follow one pyqtgraph MouseDragEvent; when the drag ends, the shape's points (V, 2) in
        data coordinates (a rectangle's two corners), else None."""
        position = view_box.mapToView(ev.pos())
        if ev.isStart():
            self._points = [view_box.mapToView(ev.buttonDownPos())]
        if rectangle:
            self._points[1:] = [position]
        else:
            self._points.append(position)
        path = QPainterPath()
        if rectangle:
            path.addRect(QRectF(self._points[0], position).normalized())
        else:
            path.addPolygon(self._points)
            path.closeSubpath()
        self.item.setPath(path)
        self.item.show()
        if not ev.isFinish():
            return None
        self.item.hide()
        return np.array([(point.x(), point.y()) for point in self._points])


class _SelectionGridModel(QAbstractListModel):
    """The selected points as a list of thumbnails (file path as tooltip), made as they scroll into view."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._indices = np.empty(0, np.int64)
        self._images: ThumbnailImages | None = None
        self._paths: list[str] = []

    def show(self, indices: np.ndarray, images: ThumbnailImages | None, paths: list[str]) -> None:
        self.beginResetModel()
        self._indices, self._images, self._paths = indices, images, paths
        self.endResetModel()

    def point(self, row: int) -> int:
        return int(self._indices[row])

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._indices)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        point = self.point(index.row())
        if role == Qt.ItemDataRole.DecorationRole:
            return self._images.get(point)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._paths[point]
        return None


class SelectionPanel(QWidget):
    """How many points are selected, "Clear", the map owner's actions on the selection
    (`selection_actions`, a layout it fills) and the grid of the selected images; a click on an
    image emits `point_clicked`."""

    point_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.count_label = QLabel(wordWrap=True)
        self.clear_button = QPushButton("Clear", toolTip="Clear the selection (Esc)")
        self._grid_model = _SelectionGridModel(self)
        self.grid = QListView()
        self.grid.setModel(self._grid_model)
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(GRID_ICON_PIXELS, GRID_ICON_PIXELS))
        self.grid.setGridSize(QSize(GRID_ICON_PIXELS + 6, GRID_ICON_PIXELS + 6))
        self.grid.setUniformItemSizes(True)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)  # a huge selection lays out in steps
        self.grid.clicked.connect(self._on_grid_clicked)
        header = QHBoxLayout()
        header.addWidget(self.count_label, 1)
        header.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        self.selection_actions = QHBoxLayout()
        layout.addLayout(self.selection_actions)
        layout.addWidget(self.grid, 1)

    def show_selection(self, selection: np.ndarray, images: ThumbnailImages | None, paths: list[str],
                       shown: int | None) -> None:
        """The selected points of `paths`; `shown` says how many points a filter shows (None: no filter)."""
        self._grid_model.show(selection, images, paths)
        text = (f"{len(selection)} selected" if len(selection) else
                "Select with Rectangle or Lasso to see the images here")
        if shown is not None:
            text += f" ({shown:,} of {len(paths):,} images shown)"
        self.count_label.setText(text)
        self.clear_button.setEnabled(bool(len(selection)))

    @Slot(QModelIndex)
    def _on_grid_clicked(self, index: QModelIndex) -> None:
        self.point_clicked.emit(self._grid_model.point(index.row()))
