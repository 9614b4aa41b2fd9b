"""The embedding map's thumbnails: each point drawn as its image, for many points at once.

One item paints the thumbnails at a fixed size on screen, only for points in view, at most
THUMBNAILS_PER_FRAME of them, picked in a fixed random priority order and thinned
(`spread_out`) so that they do not pile up: the choice is stable while panning, and zooming in
reveals more. Their QImages are made when first drawn and kept in a bounded cache, since the
thumbnails array may be a memmap of a million rows.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QImage, QPen

THUMBNAIL_PIXELS = 32          # side of a thumbnail on screen with the whole map in view...
MAX_THUMBNAIL_PIXELS = 64      # ...growing with the zoom up to this (the thumbnails' own size)
THUMBNAIL_CELL = 1.0           # thinning grid's cell, in thumbnail sides: none drawn closer than half of it
THUMBNAILS_PER_FRAME = 800
THUMBNAIL_CANDIDATES = 20_000  # visible points, in priority order, considered for one frame
IMAGE_CACHE_SIZE = 2048        # QImages kept (16 KB each at 64 px)


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


def rgb_image(pixels: np.ndarray) -> QImage:
    """A QImage that owns a copy of uint8 (H, W, 3) `pixels`."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class ThumbnailImages:
    """QImages of the rows of a uint8 (N, 64, 64, 3) array, made on first use, the latest kept."""

    def __init__(self, thumbnails: np.ndarray):
        self.thumbnails = thumbnails
        self._cache: OrderedDict[int, QImage] = OrderedDict()

    def get(self, index: int) -> QImage:
        image = self._cache.get(index)
        if image is None:
            # RGB32 is what the raster engine draws without converting each time.
            image = rgb_image(self.thumbnails[index]).convertToFormat(QImage.Format.Format_RGB32)
            self._cache[index] = image
            if len(self._cache) > IMAGE_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return image


class ThumbnailLayer(pg.GraphicsObject):
    """Paints the thumbnails of a spread-out subset of the points in view, at a fixed size on screen."""

    def __init__(self):
        super().__init__()
        self.images: ThumbnailImages | None = None
        self._order = np.empty(0, np.int64)          # point index of each row, in drawing priority
        self._xy = np.empty((0, 2), np.float64)      # positions, in that order
        self._drawable = np.empty(0, bool)           # whether each row's group is shown, in that order
        self._border_pens: list[QPen] | None = None  # one pen per group, when coloured
        self._pen_of_row = np.empty(0, np.int64)
        self._bounds = QRectF()
        self.drawn = np.empty(0, np.int64)           # points drawn by the last paint, bottom to top
        self._drawn_xy = np.empty((0, 2), np.float64)
        self.drawn_side = 0.0                        # their side on screen, pixels

    def set_points(self, xy: np.ndarray, images: ThumbnailImages) -> None:
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
