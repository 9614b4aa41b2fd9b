"""The embedding map's hover preview: the hovered image larger, with its path and group, in a
frame that floats over the map beside the cursor."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from ssl_engine.data.folder import UnreadableImage, opened_rgb

from .map_thumbnails import ThumbnailImages, rgb_image

PREVIEW_PIXELS = 224
PREVIEW_CACHE_SIZE = 16
CURSOR_GAP = 16       # pixels between the cursor and the preview


def load_preview(path: str, side: int = PREVIEW_PIXELS) -> QImage | None:
    """The image file at `path` fitted in side x side (orientation and colour modes as the
    embedding read them), or None when it cannot be read any more."""
    try:
        with opened_rgb(path, side) as image:
            image.thumbnail((side, side), Image.Resampling.BILINEAR)
            return rgb_image(np.asarray(image))
    except UnreadableImage:  # moved, deleted or damaged since it was embedded: the thumbnail stands in
        return None


class MapPreview(QFrame):
    """A child of the map's plot widget, transparent to the mouse; `image` and `caption` are its labels."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.Box)
        self.setAutoFillBackground(True)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.image, self.caption = QLabel(), QLabel()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.image, 0, Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.caption)
        self._pictures: OrderedDict[int, QPixmap] = OrderedDict()
        self.hide()

    def forget(self) -> None:
        """Drop the pictures made so far (the points are other images now)."""
        self._pictures.clear()

    def show_point(self, index: int, path: str, images: ThumbnailImages, group_line: str) -> None:
        """Show point `index`'s file (its thumbnail from `images` when the file cannot be read),
        its path elided to the picture's width, and `group_line` below when there is one."""
        self.image.setPixmap(self._picture(index, path, images))
        width = max(self.image.pixmap().width(), PREVIEW_PIXELS)
        caption = self.caption.fontMetrics().elidedText(path, Qt.TextElideMode.ElideMiddle, width)
        self.caption.setText(f"{caption}\n{group_line}" if group_line else caption)
        self.adjustSize()

    def place(self, cursor) -> None:
        """Below right of the cursor (in the parent's coordinates), or on whichever side keeps it inside."""
        bounds = self.parentWidget()
        width, height = self.width(), self.height()
        x, y = cursor.x() + CURSOR_GAP, cursor.y() + CURSOR_GAP
        if x + width > bounds.width():
            x = cursor.x() - CURSOR_GAP - width
        if y + height > bounds.height():
            y = cursor.y() - CURSOR_GAP - height
        self.move(int(max(x, 0)), int(max(y, 0)))
        self.show()
        self.raise_()

    def _picture(self, index: int, path: str, images: ThumbnailImages) -> QPixmap:
        """The file fitted in PREVIEW_PIXELS; small images are enlarged with crisp pixels."""
        picture = self._pictures.get(index)
        if picture is not None:
            self._pictures.move_to_end(index)
            return picture
        image = load_preview(path) or images.get(index)
        factor = PREVIEW_PIXELS // max(image.width(), image.height())
        if factor >= 2:
            image = image.scaled(image.width() * factor, image.height() * factor,
                                 Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        picture = QPixmap.fromImage(image)
        self._pictures[index] = picture
        if len(self._pictures) > PREVIEW_CACHE_SIZE:
            self._pictures.popitem(last=False)
        return picture
