"""Colours the plots share, taken from the system palette so dark and light themes both read."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QGuiApplication


def legend_brush() -> pg.QtGui.QBrush:
    """A legend background in the palette's base colour, translucent so points show through."""
    app = QGuiApplication.instance()
    colour = QColor(app.palette().base().color()) if app else QColor(255, 255, 255)
    colour.setAlpha(200)
    return pg.mkBrush(colour)
