"""Where the main window opens: where the user left it, or on first use, sized to the screen.

The layout is designed at 1280x800 and gains from more room (wider plots, more thumbnails), so
a first window takes most of a larger screen and all of a smaller one. Qt's own saved geometry
(`saveGeometry`) is kept in the app's settings as base64 text; `restoreGeometry` brings it back
onto a visible screen when the screens have changed since.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSize
from PySide6.QtGui import QGuiApplication

from .settings import AppSettings

GEOMETRY_KEY = "window_geometry"
DESIGN_SIZE = QSize(1280, 800)
SCREEN_SHARE = 0.85  # of a large screen's free area: room left for the desktop around the window


def first_size(available: QSize) -> QSize:
    """The first window's size on a screen whose free area (without task bars) is `available`:
    85% of it, but not below the design size, and never past the screen."""
    def side(free: int, design: int) -> int:
        return min(free, max(design, round(SCREEN_SHARE * free)))
    return QSize(side(available.width(), DESIGN_SIZE.width()), side(available.height(), DESIGN_SIZE.height()))


def place_window(window, settings: AppSettings) -> None:
    """Give `window` (not yet shown) the last session's geometry, else a first size, centred."""
    saved = settings.text(GEOMETRY_KEY)
    if saved and window.restoreGeometry(QByteArray.fromBase64(saved.encode("ascii"))):
        return
    screen = window.screen() or QGuiApplication.primaryScreen()
    free = screen.availableGeometry()
    size = first_size(free.size())
    window.resize(size)
    window.move(free.x() + (free.width() - size.width()) // 2, free.y() + (free.height() - size.height()) // 2)


def remember_geometry(window, settings: AppSettings) -> None:
    settings.set_text(GEOMETRY_KEY, bytes(window.saveGeometry().toBase64()).decode("ascii"))
