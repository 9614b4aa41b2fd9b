"""The embedding map of an evaluated folder: one point per image, drawn as a dot coloured by
group (label, cluster, folder) or as the image's thumbnail; hover to see the image larger with
its path, drag a rectangle or a lasso to select images and see them in a grid beside the map.

Built for 10,000 points and more (QT-NOTES):
- dots are one `ScatterPlotItem` per group (one brush each, pxMode, no pen); items are reused
  when the points or the colouring change, never cleared and plotted again;
- thumbnails are painted by one item at a fixed size on screen, only for points in view, at
  most THUMBNAILS_PER_FRAME of them, picked in a fixed random priority order and thinned
  (`spread_out`) so that they do not pile up: the choice is stable while panning, and zooming
  in reveals more. Their QImages are made when first drawn and kept in a bounded cache, since the
  thumbnails array may be a memmap of a million rows;
- hover and click use a KD-tree of the points (the axes' aspect is locked, so a data-space
  radius is a screen radius), not pyqtgraph's `hoverable`, which builds an item per point;
- the selection grid is a list view over a model that makes each icon only when it scrolls
  into view.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from PIL import Image
from PySide6.QtCore import QAbstractListModel, QEvent, QModelIndex, QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (QApplication, QButtonGroup, QFrame, QGraphicsPathItem, QHBoxLayout, QLabel,
                               QListView, QPushButton, QSizePolicy, QSplitter, QToolButton, QVBoxLayout, QWidget)
from scipy.spatial import cKDTree

from ssl_engine.data.folder import UnreadableImage, opened_rgb
from ssl_engine.errors import DataError, UserError

DOT_SIZE = 6
THUMBNAIL_PIXELS = 32          # side of a thumbnail on screen with the whole map in view...
MAX_THUMBNAIL_PIXELS = 64      # ...growing with the zoom up to this (the thumbnails' own size)
THUMBNAIL_CELL = 1.0           # thinning grid's cell, in thumbnail sides: none drawn closer than half of it
THUMBNAILS_PER_FRAME = 800
THUMBNAIL_CANDIDATES = 20_000  # visible points, in priority order, considered for one frame
IMAGE_CACHE_SIZE = 2048        # QImages kept (16 KB each at 64 px)
HOVER_RADIUS_PIXELS = 8
PREVIEW_PIXELS = 224
PREVIEW_CACHE_SIZE = 16
GRID_ICON_PIXELS = 64
LEGEND_ROWS = 20               # more groups than this are laid out in several legend columns...
MAX_LEGEND_COLUMNS = 3         # ...up to this many
NO_GROUP_COLOUR = (150, 150, 150)
UNGROUPED = "no group"         # the legend's name of the points of group -1, unless the colouring names it
UNCOLOURED = (70, 130, 220)
SELECTION_RING = (255, 170, 0)
HIGHLIGHT_RING = (230, 30, 200)
PAN, RECTANGLE, LASSO = "pan", "rectangle", "lasso"


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


def spread_out(points: np.ndarray, cell: float) -> np.ndarray:
    """Indices of a subset of `points` (N, 2), given in priority order, in which no two lie closer
    than cell / 2 on both axes; the earlier point wins, and the indices keep their order.

    Four passes each keep the first point of every cell of a grid of `cell`-sized squares, the
    grid shifted by half a cell along neither axis, both, x, y: two points closer than that
    share a cell in at least one of these grids."""
    kept = np.arange(len(points))
    for shift in ((0.0, 0.0), (0.5, 0.5), (0.5, 0.0), (0.0, 0.5)):
        cells = np.floor(points[kept] / cell + shift).astype(np.int64)
        _, first = np.unique((cells[:, 0] << 32) + cells[:, 1], return_index=True)
        kept = kept[np.sort(first)]
    return kept


def group_colour(value: int, group_count: int) -> QColor:
    """The colour of group `value` of `group_count`; grey for -1 (no group)."""
    return QColor(*NO_GROUP_COLOUR) if value < 0 else pg.intColor(value, hues=max(group_count, 1))


def _rgb_image(pixels: np.ndarray) -> QImage:
    """A QImage that owns a copy of uint8 (H, W, 3) `pixels`."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def load_preview(path: str, side: int = PREVIEW_PIXELS) -> QImage | None:
    """The image file at `path` fitted in side x side (orientation and colour modes as the
    embedding read them), or None when it cannot be read any more."""
    try:
        with opened_rgb(path, side) as image:
            image.thumbnail((side, side), Image.Resampling.BILINEAR)
            return _rgb_image(np.asarray(image))
    except UnreadableImage:  # moved, deleted or damaged since it was embedded: the thumbnail stands in
        return None


class _ThumbnailImages:
    """QImages of the rows of a uint8 (N, 64, 64, 3) array, made on first use, the latest kept."""

    def __init__(self, thumbnails: np.ndarray):
        self.thumbnails = thumbnails
        self._cache: OrderedDict[int, QImage] = OrderedDict()

    def get(self, index: int) -> QImage:
        image = self._cache.get(index)
        if image is None:
            # RGB32 is what the raster engine draws without converting each time.
            image = _rgb_image(self.thumbnails[index]).convertToFormat(QImage.Format.Format_RGB32)
            self._cache[index] = image
            if len(self._cache) > IMAGE_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return image


class _ThumbnailLayer(pg.GraphicsObject):
    """Paints the thumbnails of a spread-out subset of the points in view, at a fixed size on screen."""

    def __init__(self):
        super().__init__()
        self.images: _ThumbnailImages | None = None
        self._order = np.empty(0, np.int64)          # point index of each row, in drawing priority
        self._xy = np.empty((0, 2), np.float64)      # positions, in that order
        self._drawable = np.empty(0, bool)           # whether each row's group is shown, in that order
        self._border_pens: list[QPen] | None = None  # one pen per group, when coloured
        self._pen_of_row = np.empty(0, np.int64)
        self._bounds = QRectF()
        self.drawn = np.empty(0, np.int64)           # points drawn by the last paint, bottom to top
        self._drawn_xy = np.empty((0, 2), np.float64)
        self.drawn_side = 0.0                        # their side on screen, pixels

    def set_points(self, xy: np.ndarray, images: _ThumbnailImages) -> None:
        self.prepareGeometryChange()
        self.images = images
        self._order = np.random.default_rng(0).permutation(len(xy))
        self._xy = xy[self._order]
        self._drawable = np.ones(len(xy), bool)
        self._border_pens, self._pen_of_row = None, np.empty(0, np.int64)
        self.drawn = np.empty(0, np.int64)
        self._bounds = QRectF(QPointF(*xy.min(axis=0)), QPointF(*xy.max(axis=0))) if len(xy) else QRectF()
        self.update()

    def set_borders(self, pen_of_point: np.ndarray | None, pens: list[QPen] | None) -> None:
        """A thin border of `pens[pen_of_point[i]]` around point i's thumbnail; None for none."""
        self._border_pens = pens
        self._pen_of_row = np.empty(0, np.int64) if pen_of_point is None else pen_of_point[self._order]
        self.update()

    def set_drawable(self, drawable: np.ndarray) -> None:
        """Which points may be drawn (those of groups hidden in the legend may not)."""
        self._drawable = drawable[self._order]
        self.update()

    def side_on_screen(self) -> float:
        """THUMBNAIL_PIXELS with the whole map in view, more as the view zooms in (square root of the zoom)."""
        view_box = self.getViewBox()
        if view_box is None or not len(self._xy):
            return float(THUMBNAIL_PIXELS)
        pixel_width, pixel_height = view_box.viewPixelSize()
        size = view_box.size()
        zoom = max(self._bounds.width() / pixel_width / max(size.width(), 1),
                   self._bounds.height() / pixel_height / max(size.height(), 1))
        return THUMBNAIL_PIXELS * float(np.sqrt(np.clip(zoom, 1, (MAX_THUMBNAIL_PIXELS / THUMBNAIL_PIXELS) ** 2)))

    def point_at(self, cursor: np.ndarray, pixel: np.ndarray) -> int | None:
        """The point whose thumbnail, as last drawn, lies under `cursor` (data coordinates; `pixel`
        is a screen pixel's size in data units): the topmost one, or None."""
        if not len(self.drawn):
            return None
        hits = np.flatnonzero((np.abs(self._drawn_xy - cursor) <= self.drawn_side / 2 * pixel).all(axis=1))
        return int(self.drawn[hits[-1]]) if len(hits) else None

    def boundingRect(self) -> QRectF:
        if not len(self._xy):
            return QRectF()
        view_box = self.getViewBox()
        pixel_width, pixel_height = view_box.viewPixelSize() if view_box is not None else (0.0, 0.0)
        margin = MAX_THUMBNAIL_PIXELS / 2  # thumbnails reach beyond the points by half their side
        return self._bounds.adjusted(-margin * pixel_width, -margin * pixel_height,
                                     margin * pixel_width, margin * pixel_height)

    def viewTransformChanged(self) -> None:
        self.prepareGeometryChange()  # the margin in data units changes with the zoom
        super().viewTransformChanged()

    def paint(self, painter, option, widget=None) -> None:
        view_box = self.getViewBox()
        self.drawn, self._drawn_xy = np.empty(0, np.int64), np.empty((0, 2), np.float64)
        if view_box is None or self.images is None or not len(self._xy):
            return
        side = self.side_on_screen()
        self.drawn_side = side
        view = view_box.viewRect()
        pixel_width, pixel_height = view_box.viewPixelSize()
        margin_x, margin_y = side / 2 * pixel_width, side / 2 * pixel_height
        x, y = self._xy[:, 0], self._xy[:, 1]
        rows = np.flatnonzero((x >= view.left() - margin_x) & (x <= view.right() + margin_x)
                              & (y >= view.top() - margin_y) & (y <= view.bottom() + margin_y)
                              & self._drawable)[:THUMBNAIL_CANDIDATES]
        transform = painter.transform()  # data -> device pixels
        screen_x = transform.m11() * x[rows] + transform.m21() * y[rows] + transform.dx()
        screen_y = transform.m12() * x[rows] + transform.m22() * y[rows] + transform.dy()
        spread = spread_out(np.column_stack([screen_x, screen_y]), side * THUMBNAIL_CELL)
        kept = spread[:THUMBNAILS_PER_FRAME][::-1]  # drawn last = on top: the highest priority
        painter.save()
        painter.resetTransform()
        for k in kept:
            target = QRectF(screen_x[k] - side / 2, screen_y[k] - side / 2, side, side)
            painter.drawImage(target, self.images.get(int(self._order[rows[k]])))
            if self._border_pens is not None:
                painter.setPen(self._border_pens[self._pen_of_row[rows[k]]])
                painter.drawRect(target)
        painter.restore()
        self.drawn = self._order[rows[kept]]
        self._drawn_xy = self._xy[rows[kept]]


class _MapViewBox(pg.ViewBox):
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


class _SelectionGridModel(QAbstractListModel):
    """The selected points as a list of thumbnails (file path as tooltip), made as they scroll into view."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._indices = np.empty(0, np.int64)
        self._images: _ThumbnailImages | None = None
        self._paths: list[str] = []

    def show(self, indices: np.ndarray, images: _ThumbnailImages | None, paths: list[str]) -> None:
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


class EmbeddingMap(QWidget):
    """A 2-D map of a folder's images with hover preview, rectangle and lasso selection, and a
    grid of the selected images beside it.

    `set_points` shows new points (uncoloured, nothing selected or highlighted); `set_colouring`
    then colours them by group. The mouse wheel zooms; in "Pan / zoom" mode a drag pans, in
    "Rectangle" or "Lasso" mode it selects (Shift adds to the selection); a click on a point emits
    `point_clicked`; Esc or "Clear" empties the selection.
    """

    point_clicked = Signal(int)
    selection_changed = Signal(object)  # np.ndarray int64 of the selected indices

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # for Esc
        self._xy = np.empty((0, 2), np.float64)
        self._paths: list[str] = []
        self._images: _ThumbnailImages | None = None
        self._tree: cKDTree | None = None
        self._groups: np.ndarray | None = None     # group of each point, when coloured
        self._group_names: list[str] = []
        self._colouring_title = ""
        self._drawable = np.empty(0, bool)          # points shown by the filter, of groups not hidden in the legend
        self._shown: np.ndarray | None = None       # the filter: which points are shown (None: all)
        self._ungrouped_name = UNGROUPED
        self._selection = np.empty(0, np.int64)
        self._highlighted = np.empty(0, np.int64)
        self._shape_points: list[QPointF] = []      # the rectangle's corners or the lasso, data coordinates
        self._previews: OrderedDict[int, QPixmap] = OrderedDict()
        self.hovered_index: int | None = None

        self.view_box = _MapViewBox()
        self.plot_widget = pg.GraphicsLayoutWidget()
        self.plot_item = self.plot_widget.addPlot(row=0, col=0, rowspan=3, viewBox=self.view_box)
        self.plot_item.hideAxis("left")
        self.plot_item.hideAxis("bottom")  # a projection's axes have no units worth reading
        self.plot_item.hideButtons()
        self.plot_item.setMenuEnabled(False)  # its transforms (log, FFT) make no sense here
        self.view_box.setAspectLocked(True)   # distances on screen are distances in the projection
        # The legend stands beside the map, under its heading, where it hides no point.
        self.legend_heading = pg.LabelItem(justify="left")
        self.legend = pg.LegendItem()
        self.legend.sigSampleClicked.connect(self._on_legend_toggled)
        for row, item in enumerate((self.legend_heading, self.legend)):
            item.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            self.plot_widget.addItem(item, row=row, col=1)
            self.plot_widget.ci.layout.setAlignment(item, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.plot_widget.ci.layout.setRowStretchFactor(2, 1)  # an empty row below them takes the height
        self._scatters: dict[int, pg.ScatterPlotItem] = {}  # group (-1: none / uncoloured) -> its dots

        self.thumbnail_layer = _ThumbnailLayer()
        self.thumbnail_layer.setZValue(10)
        self.thumbnail_layer.setVisible(False)
        self.plot_item.addItem(self.thumbnail_layer, ignoreBounds=True)
        # The selection in its own colour: filled dots over the groups' (under the thumbnails),
        # and rings above everything, so a selected thumbnail is still marked.
        self._selection_dots = pg.ScatterPlotItem(size=DOT_SIZE + 2, pen=pg.mkPen("w", width=1),
                                                  brush=pg.mkBrush(*SELECTION_RING), pxMode=True)
        self._selection_dots.setZValue(5)
        self.plot_item.addItem(self._selection_dots, ignoreBounds=True)
        self._selection_rings = self._ring_item(SELECTION_RING, DOT_SIZE + 6, z=20)
        self._highlight_rings = self._ring_item(HIGHLIGHT_RING, DOT_SIZE + 12, z=30)
        self._shape_item = QGraphicsPathItem()
        self._shape_item.setPen(pg.mkPen(SELECTION_RING, width=1.5, style=Qt.PenStyle.DashLine))
        self._shape_item.setBrush(pg.mkBrush(*SELECTION_RING, 40))
        self._shape_item.setZValue(40)
        self.plot_item.addItem(self._shape_item, ignoreBounds=True)
        scene = self.plot_item.scene()
        scene.sigMouseMoved.connect(self._on_mouse_moved)
        scene.sigMouseClicked.connect(self._on_mouse_clicked)
        self.plot_widget.installEventFilter(self)

        self.preview = QFrame(self.plot_widget)
        self.preview.setFrameShape(QFrame.Shape.Box)
        self.preview.setAutoFillBackground(True)
        self.preview.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.preview_image, self.preview_caption = QLabel(), QLabel()
        preview_layout = QVBoxLayout(self.preview)
        preview_layout.setContentsMargins(4, 4, 4, 4)
        preview_layout.addWidget(self.preview_image, 0, Qt.AlignmentFlag.AlignCenter)
        preview_layout.addWidget(self.preview_caption)
        self.preview.hide()

        self.mode_buttons: dict[str, QToolButton] = {}
        self._mode_group = QButtonGroup(self)
        self.toolbar = toolbar = QHBoxLayout()  # the map's owner may add its controls at the end
        for mode, text, tip in ((PAN, "Pan / zoom", "Drag to pan; the wheel zooms everywhere"),
                                (RECTANGLE, "Rectangle", "Drag a rectangle to select; Shift adds to the selection"),
                                (LASSO, "Lasso", "Draw around points to select them; Shift adds to the selection")):
            button = QToolButton(text=text, checkable=True, toolTip=tip)
            button.toggled.connect(self._on_mode_toggled)
            self._mode_group.addButton(button)
            self.mode_buttons[mode] = button
            toolbar.addWidget(button)
        self.mode_buttons[PAN].setChecked(True)
        self.fit_button = QPushButton("Fit", toolTip="Show every point")
        self.fit_button.clicked.connect(self.fit)
        toolbar.addWidget(self.fit_button)
        toolbar.addStretch(1)

        self.count_label = QLabel(wordWrap=True)
        self.clear_button = QPushButton("Clear", toolTip="Clear the selection (Esc)")
        self.clear_button.clicked.connect(self.clear_selection)
        self._grid_model = _SelectionGridModel(self)
        self.selection_grid = QListView()
        self.selection_grid.setModel(self._grid_model)
        self.selection_grid.setViewMode(QListView.ViewMode.IconMode)
        self.selection_grid.setIconSize(QSize(GRID_ICON_PIXELS, GRID_ICON_PIXELS))
        self.selection_grid.setGridSize(QSize(GRID_ICON_PIXELS + 6, GRID_ICON_PIXELS + 6))
        self.selection_grid.setUniformItemSizes(True)
        self.selection_grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.selection_grid.setMovement(QListView.Movement.Static)
        self.selection_grid.setLayoutMode(QListView.LayoutMode.Batched)  # a huge selection lays out in steps
        self.selection_grid.clicked.connect(self._on_grid_clicked)
        selection_header = QHBoxLayout()
        selection_header.addWidget(self.count_label, 1)
        selection_header.addWidget(self.clear_button)
        selection_panel = QWidget()
        selection_layout = QVBoxLayout(selection_panel)
        selection_layout.setContentsMargins(0, 0, 0, 0)
        selection_layout.addLayout(selection_header)
        self.selection_actions = QHBoxLayout()  # buttons that act on the selection, added by the map's owner
        selection_layout.addLayout(self.selection_actions)
        selection_layout.addWidget(self.selection_grid, 1)

        map_panel = QWidget()
        map_layout = QVBoxLayout(map_panel)
        map_layout.setContentsMargins(0, 0, 0, 0)
        map_layout.addLayout(toolbar)
        map_layout.addWidget(self.plot_widget, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(map_panel)
        splitter.addWidget(selection_panel)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([700, 3 * (GRID_ICON_PIXELS + 6) + 24])  # three thumbnails across
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._show_selection()

    # ---- public API

    def set_points(self, xy: np.ndarray, thumbnails: np.ndarray, paths: list[str]) -> None:
        """Show one point per image at `xy` (N, 2), with its uint8 (N, H, W, 3) thumbnail and file
        path. The colouring, the selection and the highlight start empty."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if len(thumbnails) != len(xy) or len(paths) != len(xy):
            raise ValueError(f"{len(xy)} points, {len(thumbnails)} thumbnails and {len(paths)} paths")
        bad = int((~np.isfinite(xy)).any(axis=1).sum())
        if bad:
            raise DataError(f"{bad} of the {len(xy)} map positions are not finite numbers "
                            "(the model's features hold NaN or infinity)")
        self._hide_preview()
        if self._images is None or self._images.thumbnails is not thumbnails:
            self._images = _ThumbnailImages(thumbnails)
            self._previews.clear()
        self._xy, self._paths = xy, list(paths)
        self._tree = cKDTree(xy) if len(xy) else None
        self.thumbnail_layer.set_points(xy, self._images)
        self._groups, self._group_names, self._colouring_title = None, [], ""
        self._shown = None
        self._draw_dots()
        self.highlight(np.empty(0, np.int64))
        if len(self._selection):
            self._set_selection(np.empty(0, np.int64))
        else:
            self._show_selection()
        self.fit()

    def set_colouring(self, values: np.ndarray, names: list[str], title: str, ungrouped: str = UNGROUPED) -> None:
        """Colour point i by group `values[i]` (-1: grey, named `ungrouped`), named `names[v]` in
        the legend under the heading `title` ("label", "cluster", ...)."""
        values = np.asarray(values, dtype=np.int64).reshape(-1)
        if len(values) != len(self._xy):
            raise ValueError(f"{len(values)} group values for {len(self._xy)} points")
        self._groups, self._group_names, self._colouring_title = values, list(names), title
        self._ungrouped_name = ungrouped
        self._draw_dots()

    def set_filter(self, shown: np.ndarray | None) -> None:
        """Show only the points where `shown` (bool, one per point) is true, None for all: the
        others are not drawn and cannot be hovered, clicked or selected; selected ones that the
        filter hides leave the selection."""
        if shown is not None:
            shown = np.asarray(shown, dtype=bool).reshape(-1)
            if len(shown) != len(self._xy):
                raise ValueError(f"a filter of {len(shown)} values for {len(self._xy)} points")
        self._shown = shown
        self._draw_dots()
        self._draw_highlight()
        if shown is not None and len(self._selection) and not shown[self._selection].all():
            self._set_selection(self._selection[shown[self._selection]])
        else:
            self._show_selection()

    def shown(self) -> np.ndarray:
        """Which points the filter shows (bool, one per point)."""
        return np.ones(len(self._xy), bool) if self._shown is None else self._shown.copy()

    def set_thumbnails_shown(self, shown: bool) -> None:
        """Draw the points' thumbnails over their dots, or only the dots."""
        self.thumbnail_layer.setVisible(shown)

    def selected(self) -> np.ndarray:
        """The selected points' indices, int64, ascending."""
        return self._selection.copy()

    def highlight(self, indices: np.ndarray) -> None:
        """Ring these points (a clicked image's neighbours, say); an empty array removes the rings."""
        self._highlighted = np.asarray(indices, dtype=np.int64).reshape(-1)
        self._draw_highlight()

    def _draw_highlight(self) -> None:
        self._highlight_rings.setData(pos=self._xy[self._highlighted[self.shown()[self._highlighted]]])

    def highlighted(self) -> np.ndarray:
        """The ringed points' indices, int64."""
        return self._highlighted.copy()

    def save_png(self, path: str) -> None:
        """Write the map as it is on screen to a PNG file."""
        self._hide_preview()
        if not self.plot_widget.grab().save(os.fspath(path), "PNG"):
            raise UserError(f"cannot write the map to {path}: check the folder exists and is writable")

    @Slot()
    def fit(self) -> None:
        """Show every point (and follow the window's size until the user pans or zooms)."""
        self.view_box.enableAutoRange()

    @Slot()
    def clear_selection(self) -> None:
        if len(self._selection):
            self._set_selection(np.empty(0, np.int64))

    def group_name(self, index: int) -> str:
        """The legend entry of point `index`'s group ("" when uncoloured)."""
        return "" if self._groups is None else self._group_name_of(int(self._groups[index]))

    # ---- drawing

    def _ring_item(self, colour, size: int, z: int) -> pg.ScatterPlotItem:
        rings = pg.ScatterPlotItem(size=size, pen=pg.mkPen(colour, width=2), brush=None, pxMode=True)
        rings.setZValue(z)
        self.plot_item.addItem(rings, ignoreBounds=True)
        return rings

    def _draw_dots(self) -> None:
        """One scatter item per group present (reusing the items there are), the legend, the borders."""
        groups = np.full(len(self._xy), -1, np.int64) if self._groups is None else self._groups
        shown = self.shown()
        present = [int(value) for value in np.unique(groups[shown])]
        for value in set(self._scatters) - set(present):
            self.plot_item.removeItem(self._scatters.pop(value))
        self.legend.clear()
        self.legend.setColumnCount(min(-(-len(present) // LEGEND_ROWS), MAX_LEGEND_COLUMNS) if present else 1)
        self.legend_heading.setText(f"<b>{self._colouring_title}</b>" if self._groups is not None else "")
        for value in present:
            scatter = self._scatters.get(value)
            if scatter is None:
                scatter = self._scatters[value] = pg.ScatterPlotItem(pxMode=True, pen=None, size=DOT_SIZE)
                self.plot_item.addItem(scatter)
            colour = QColor(*UNCOLOURED) if self._groups is None else group_colour(value, len(self._group_names))
            name = self._group_name_of(value)
            scatter.setData(pos=self._xy[(groups == value) & shown], brush=pg.mkBrush(colour), name=name)
            scatter.setZValue(-1 if value < 0 else 0)  # the ungrouped beneath the rest
            scatter.setVisible(True)
            if self._groups is not None:
                self.legend.addItem(scatter, name)
        self._drawable = shown
        self.thumbnail_layer.set_drawable(self._drawable)
        if self._groups is None:
            self.thumbnail_layer.set_borders(None, None)
        else:
            pens = [pg.mkPen(group_colour(value, len(self._group_names)), width=2) for value in present]
            self.thumbnail_layer.set_borders(np.searchsorted(present, groups), pens)

    def _group_name_of(self, value: int) -> str:
        if self._groups is None:
            return ""
        if value < 0:
            return self._ungrouped_name
        return self._group_names[value] if value < len(self._group_names) else f"group {value}"

    @Slot(object)
    def _on_legend_toggled(self, scatter) -> None:
        """A legend entry was clicked, which shows or hides its group: hidden points cannot be hovered,
        clicked or selected, and their thumbnails are not drawn."""
        if self._groups is None:
            return
        visible = [value for value, item in self._scatters.items() if item.isVisible()]
        self._drawable = np.isin(self._groups, visible) & self.shown()
        self.thumbnail_layer.set_drawable(self._drawable)

    # ---- selection

    @Slot(bool)
    def _on_mode_toggled(self, checked: bool) -> None:
        if not checked:
            return
        mode = self.mode()
        self.view_box.selection_drag = None if mode == PAN else self._on_selection_drag
        cursor = Qt.CursorShape.ArrowCursor if mode == PAN else Qt.CursorShape.CrossCursor
        self.plot_widget.viewport().setCursor(cursor)

    def mode(self) -> str:
        """PAN, RECTANGLE or LASSO: what a left-button drag on the map does."""
        return next(mode for mode, button in self.mode_buttons.items() if button.isChecked())

    def _on_selection_drag(self, ev) -> None:
        """Draw the rectangle or lasso as the mouse moves; select what it holds on release."""
        position = self.view_box.mapToView(ev.pos())
        if ev.isStart():
            self._hide_preview()
            self._shape_points = [self.view_box.mapToView(ev.buttonDownPos())]
        if self.mode() == RECTANGLE:
            self._shape_points[1:] = [position]
        else:
            self._shape_points.append(position)
        path = QPainterPath()
        if self.mode() == RECTANGLE:
            path.addRect(QRectF(self._shape_points[0], position).normalized())
        else:
            path.addPolygon(self._shape_points)
            path.closeSubpath()
        self._shape_item.setPath(path)
        self._shape_item.show()
        if ev.isFinish():
            self._shape_item.hide()
            corners = np.array([(point.x(), point.y()) for point in self._shape_points])
            if self.mode() == RECTANGLE:
                low, high = corners.min(axis=0), corners.max(axis=0)
                inside = ((self._xy >= low) & (self._xy <= high)).all(axis=1)
            else:
                inside = points_in_polygon(self._xy, corners)
            chosen = np.flatnonzero(inside & self._drawable)
            if ev.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                chosen = np.union1d(self._selection, chosen)
            self._set_selection(chosen)

    def _set_selection(self, indices: np.ndarray) -> None:
        self._selection = np.asarray(indices, dtype=np.int64)
        self._show_selection()
        self.selection_changed.emit(self._selection.copy())

    def _show_selection(self) -> None:
        self._selection_rings.setData(pos=self._xy[self._selection])
        self._selection_dots.setData(pos=self._xy[self._selection])
        self._grid_model.show(self._selection, self._images, self._paths)
        text = (f"{len(self._selection)} selected" if len(self._selection) else
                "Select with Rectangle or Lasso to see the images here")
        if self._shown is not None:
            text += f" ({int(self._shown.sum()):,} of {len(self._xy):,} images shown)"
        self.count_label.setText(text)
        self.clear_button.setEnabled(bool(len(self._selection)))

    @Slot(QModelIndex)
    def _on_grid_clicked(self, index: QModelIndex) -> None:
        self.point_clicked.emit(self._grid_model.point(index.row()))

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.clear_selection()
            event.accept()
        else:
            super().keyPressEvent(event)

    # ---- hover and click

    def _point_at(self, scene_position) -> int | None:
        """The shown point under the cursor: its thumbnail when drawn, else its dot within
        HOVER_RADIUS_PIXELS on screen; None when there is none."""
        if self._tree is None or not self.view_box.sceneBoundingRect().contains(scene_position):
            return None
        cursor = self.view_box.mapSceneToView(scene_position)
        cursor = np.array([cursor.x(), cursor.y()])
        pixel = np.array(self.view_box.viewPixelSize())
        if self.thumbnail_layer.isVisible():
            index = self.thumbnail_layer.point_at(cursor, pixel)
            if index is not None:
                return index
        # The nearest few, so that a point of a hidden group does not mask a shown one beneath it.
        distances, indices = self._tree.query(cursor, k=min(8, len(self._xy)),
                                              distance_upper_bound=HOVER_RADIUS_PIXELS * pixel.max())
        for distance, index in zip(np.atleast_1d(distances), np.atleast_1d(indices)):
            if np.isfinite(distance) and self._drawable[index]:
                return int(index)
        return None

    @Slot(object)
    def _on_mouse_clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or ev.double():
            return
        index = self._point_at(ev.scenePos())
        if index is not None:
            self.point_clicked.emit(index)

    @Slot(object)
    def _on_mouse_moved(self, scene_position) -> None:
        index = None if QApplication.mouseButtons() != Qt.MouseButton.NoButton else self._point_at(scene_position)
        if index is None:
            self._hide_preview()
            return
        if index != self.hovered_index:
            self.preview_image.setPixmap(self._preview_picture(index))
            caption = self._paths[index]
            width = max(self.preview_image.pixmap().width(), PREVIEW_PIXELS)
            caption = self.preview_caption.fontMetrics().elidedText(caption, Qt.TextElideMode.ElideMiddle, width)
            group = self.group_name(index)
            self.preview_caption.setText(f"{caption}\n{self._colouring_title}: {group}" if group else caption)
            self.preview.adjustSize()
            self.hovered_index = index
        self._place_preview(self.plot_widget.mapFromScene(scene_position))

    def _preview_picture(self, index: int) -> QPixmap:
        """The image file of point `index` (its thumbnail when the file cannot be read), fitted in
        PREVIEW_PIXELS; small images are enlarged with crisp pixels."""
        picture = self._previews.get(index)
        if picture is not None:
            self._previews.move_to_end(index)
            return picture
        image = load_preview(self._paths[index]) or self._images.get(index)
        factor = PREVIEW_PIXELS // max(image.width(), image.height())
        if factor >= 2:
            image = image.scaled(image.width() * factor, image.height() * factor,
                                 Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        picture = QPixmap.fromImage(image)
        self._previews[index] = picture
        if len(self._previews) > PREVIEW_CACHE_SIZE:
            self._previews.popitem(last=False)
        return picture

    def _place_preview(self, cursor) -> None:
        """Below right of the cursor, or on whichever side keeps it inside the map."""
        gap = 16
        width, height = self.preview.width(), self.preview.height()
        x, y = cursor.x() + gap, cursor.y() + gap
        if x + width > self.plot_widget.width():
            x = cursor.x() - gap - width
        if y + height > self.plot_widget.height():
            y = cursor.y() - gap - height
        self.preview.move(int(max(x, 0)), int(max(y, 0)))
        self.preview.show()
        self.preview.raise_()

    def _hide_preview(self) -> None:
        self.preview.hide()
        self.hovered_index = None

    def eventFilter(self, watched, event) -> bool:
        if watched is self.plot_widget and event.type() == QEvent.Type.Leave:
            self._hide_preview()  # the mouse went to the grid or out of the window
        return super().eventFilter(watched, event)
