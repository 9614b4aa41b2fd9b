"""The embedding map of an evaluated folder: one point per image, drawn as a dot coloured by
group (label, cluster, folder) or as the image's thumbnail; hover to see the image larger with
its path, drag a rectangle or a lasso to select images and see them in a grid beside the map.

Built for 10,000 points and more (QT-NOTES):
- dots are one `ScatterPlotItem` per group (one brush each, pxMode, no pen); items are reused
  when the points or the colouring change, never cleared and plotted again;
- thumbnails are painted by one item, a capped and thinned subset of the points in view
  (`map_thumbnails`);
- hover and click use a KD-tree of the points (the axes' aspect is locked, so a data-space
  radius is a screen radius), not pyqtgraph's `hoverable`, which builds an item per point; the
  hovered image floats beside the cursor (`map_preview`);
- the selection grid beside the map makes each icon only when it scrolls into view (`map_selection`).
"""

from __future__ import annotations

import os

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QApplication, QButtonGroup, QHBoxLayout, QPushButton, QSizePolicy, QSplitter,
                               QToolButton, QVBoxLayout, QWidget)
from scipy.spatial import cKDTree

from ssl_engine.errors import DataError, UserError

from .map_preview import MapPreview
from .map_selection import GRID_ICON_PIXELS, MapViewBox, SelectionPanel, SelectionShape, points_in_shape
from .map_thumbnails import ThumbnailImages, ThumbnailLayer

DOT_SIZE = 6
HOVER_RADIUS_PIXELS = 8
LEGEND_ROWS = 20               # more groups than this are laid out in several legend columns...
MAX_LEGEND_COLUMNS = 3         # ...up to this many
NO_GROUP_COLOUR = (150, 150, 150)
UNGROUPED = "no group"         # the legend's name of the points of group -1, unless the colouring names it
UNCOLOURED = (70, 130, 220)
SELECTION_RING = (255, 170, 0)
HIGHLIGHT_RING = (230, 30, 200)
PAN, RECTANGLE, LASSO = "pan", "rectangle", "lasso"


def group_colour(value: int, group_count: int) -> QColor:
    """The colour of group `value` of `group_count`; grey for -1 (no group)."""
    return QColor(*NO_GROUP_COLOUR) if value < 0 else pg.intColor(value, hues=max(group_count, 1))


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
        self._images: ThumbnailImages | None = None
        self._tree: cKDTree | None = None
        self._groups: np.ndarray | None = None     # group of each point, when coloured
        self._group_names: list[str] = []
        self._colouring_title = ""
        self._drawable = np.empty(0, bool)          # points shown by the filter, of groups not hidden in the legend
        self._shown: np.ndarray | None = None       # the filter: which points are shown (None: all)
        self._ungrouped_name = UNGROUPED
        self._selection = np.empty(0, np.int64)
        self._highlighted = np.empty(0, np.int64)
        self.hovered_index: int | None = None

        self.view_box = MapViewBox()
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

        self.thumbnail_layer = ThumbnailLayer()
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
        self._shape = SelectionShape(self.plot_item, SELECTION_RING)
        scene = self.plot_item.scene()
        scene.sigMouseMoved.connect(self._on_mouse_moved)
        scene.sigMouseClicked.connect(self._on_mouse_clicked)
        self.plot_widget.installEventFilter(self)

        self.preview = MapPreview(self.plot_widget)

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

        self.selection_panel = SelectionPanel()
        self.selection_panel.clear_button.clicked.connect(self.clear_selection)
        self.selection_panel.point_clicked.connect(self.point_clicked)
        self.selection_actions = self.selection_panel.selection_actions  # buttons on the selection, the owner's

        map_panel = QWidget()
        map_layout = QVBoxLayout(map_panel)
        map_layout.setContentsMargins(0, 0, 0, 0)
        map_layout.addLayout(toolbar)
        map_layout.addWidget(self.plot_widget, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(map_panel)
        splitter.addWidget(self.selection_panel)
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
            self._images = ThumbnailImages(thumbnails)
            self.preview.forget()
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
        if ev.isStart():
            self._hide_preview()
        rectangle = self.mode() == RECTANGLE
        corners = self._shape.drag(ev, self.view_box, rectangle)
        if corners is not None:
            chosen = np.flatnonzero(points_in_shape(self._xy, corners, rectangle) & self._drawable)
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
        self.selection_panel.show_selection(self._selection, self._images, self._paths,
                                            None if self._shown is None else int(self._shown.sum()))

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
            group = self.group_name(index)
            self.preview.show_point(index, self._paths[index], self._images,
                                    f"{self._colouring_title}: {group}" if group else "")
            self.hovered_index = index
        self.preview.place(self.plot_widget.mapFromScene(scene_position))

    def _hide_preview(self) -> None:
        self.preview.hide()
        self.hovered_index = None

    def eventFilter(self, watched, event) -> bool:
        if watched is self.plot_widget and event.type() == QEvent.Type.Leave:
            self._hide_preview()  # the mouse went to the grid or out of the window
        return super().eventFilter(watched, event)
