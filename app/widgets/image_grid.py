"""A grid of sample images and their augmented views, drawn as one picture.

One row per sample image: the original, then each view. The cells are composed into a single
numpy mosaic and shown as one pixmap, scaled with nearest-neighbour sampling so that 32 px
images stay crisp when enlarged: one paint per update instead of dozens of labels.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

GAP = 2  # pixels between cells in the mosaic, before scaling


def mosaic(columns: list[np.ndarray], groups: int = 1, gap: int = GAP) -> np.ndarray:
    """Columns of uint8 (n, h, w, 3) images (each column may have its own size; cells are
    resized to the largest side by nearest neighbour) -> one uint8 (H, W, 3) picture.

    With `groups` > 1 the rows are split into that many blocks placed side by side, so that a
    tall grid fills a wide panel."""
    side = max(c.shape[1] for c in columns)
    rows = columns[0].shape[0]
    per_group = -(-rows // groups)
    group_width = len(columns) * (side + gap) - gap
    picture = np.full((per_group * (side + gap) - gap, groups * (group_width + 4 * gap) - 4 * gap, 3), 128, np.uint8)
    for j, column in enumerate(columns):
        h, w = column.shape[1:3]
        cells = column[:, np.arange(side) * h // side][:, :, np.arange(side) * w // side]
        for i in range(rows):
            group, row = divmod(i, per_group)
            top, left = row * (side + gap), group * (group_width + 4 * gap) + j * (side + gap)
            picture[top:top + side, left:left + side] = cells[i]
    return picture


def best_groups(rows: int, columns: int, width: int, height: int) -> int:
    """How many side-by-side blocks show `rows` x `columns` square cells largest in width x height."""
    def cell(groups: int) -> float:
        return min(width / (groups * columns + groups - 1), height / -(-rows // groups))
    return max(range(1, rows + 1), key=lambda g: (cell(g), -g))


def thumbnail_strip(thumbnails, rows: list[int], height: int) -> QPixmap:
    """The thumbnails of `rows`, side by side, scaled to `height` pixels: a list row's picture."""
    strip = mosaic([np.asarray(thumbnails[row])[None] for row in rows])
    return to_pixmap(strip).scaledToHeight(height, Qt.TransformationMode.SmoothTransformation)


def to_pixmap(picture: np.ndarray) -> QPixmap:
    picture = np.ascontiguousarray(picture)
    h, w = picture.shape[:2]
    image = QImage(picture.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())  # copy: the QImage must not outlive the numpy buffer


class ScaledPicture(QLabel):
    """A pixmap that fills the label, keeping its aspect ratio, with crisp pixels."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(120, 120)

    def set_picture(self, picture: np.ndarray) -> None:
        self._pixmap = to_pixmap(picture)
        self._rescale()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is not None:
            self.setPixmap(self._pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.FastTransformation))


class ImageGrid(QWidget):
    """A caption naming the columns over a mosaic of originals and views."""

    def __init__(self, placeholder: str = "", parent=None):
        super().__init__(parent)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.picture = ScaledPicture()
        self.picture.setText(placeholder)
        self.shown: list[np.ndarray] = []  # the columns on screen, for tests and tooltips
        self.groups = 0  # side-by-side blocks in the picture now
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.picture, 1)

    def set_images(self, originals: np.ndarray, views: list[np.ndarray], caption: str | None = None) -> None:
        """Each original beside its views (or other pictures of it, named by `caption`)."""
        columns = [originals, *views]
        # short whatever the number of views: a long caption would widen the whole window
        self.caption.setText(caption or f"each row: an image, then its {len(views)} view{'s' if len(views) != 1 else ''}, left to right")
        self.shown = columns
        self.groups = 0
        self._compose()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if self.shown:
            self._compose()

    def _compose(self) -> None:
        groups = best_groups(len(self.shown[0]), len(self.shown), self.picture.width(), self.picture.height())
        if groups != self.groups:  # recomposed only when the layout changes, not on every resize
            self.groups = groups
            self.picture.set_picture(mosaic(self.shown, groups))

    def clear(self, placeholder: str = "") -> None:
        self.shown = []
        self.caption.clear()  # the last run's "its 2 views" would describe nothing
        self.picture._pixmap = None
        self.picture.clear()
        self.picture.setText(placeholder)
