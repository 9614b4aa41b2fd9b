"""The mouse wheel scrolls, it does not edit: a wheel turned over a combo box, spin box or slider
that does not have the keyboard focus scrolls the column it sits in instead of changing its value.

Qt gives such widgets the wheel whenever the pointer is over them, so scrolling a long form
changes whichever setting passes under the pointer (the Set-up column's "position embedding"
went from auto to relative that way, unseen). One filter on the application covers every
window; a widget the user clicked (it has the focus) takes the wheel as usual.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox,
                               QScrollBar, QWidget)

EDITORS = (QComboBox, QAbstractSpinBox, QAbstractSlider)


def _guarded_editor(widget: QObject) -> QWidget | None:
    """The value editor `widget` is or belongs to (a spin box's line edit), None for others.
    A scroll bar is a slider too, but it is what scrolls: it keeps the wheel."""
    while isinstance(widget, QWidget):
        if isinstance(widget, EDITORS):
            return None if isinstance(widget, QScrollBar) else widget
        if isinstance(widget, QAbstractScrollArea):
            return None  # e.g. a combo's popup list: it scrolls itself
        widget = widget.parentWidget()
    return None


class WheelGuard(QObject):
    """Application event filter: a wheel over an unfocused editor goes to the scroll area
    around it (or nowhere)."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Polish and isinstance(watched, EDITORS):
            # Qt hands focus to a WheelFocus widget (a combo box's default) before any filter
            # sees the wheel: editors take focus by click or Tab only
            if watched.focusPolicy() == Qt.FocusPolicy.WheelFocus:
                watched.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            return False
        if event.type() != QEvent.Type.Wheel:
            return False
        editor = _guarded_editor(watched)
        if editor is None or editor.hasFocus():
            return False
        area = editor.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is not None:
            QApplication.sendEvent(area.viewport(), event)
        return True


def install_wheel_guard(app: QApplication) -> WheelGuard:
    """Install the guard on `app` once (later calls return the same guard), before the editors
    are shown: it covers every editor polished afterwards."""
    guard = app.findChild(WheelGuard, "wheel-guard")
    if guard is None:
        guard = WheelGuard(app)
        guard.setObjectName("wheel-guard")
        app.installEventFilter(guard)
    return guard
