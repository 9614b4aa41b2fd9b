"""The mouse wheel over an unfocused combo box of the Set-up column scrolls the column and
leaves the value, over an Augmentations slider it leaves the value; once the user clicked the
editor, the wheel edits it."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QComboBox, QScrollArea  # noqa: E402

from tests.test_app_window import open_window  # noqa: E402


def turn_wheel(widget, notches: int = -1) -> None:
    """One wheel turn over the middle of `widget`, as the window system sends it (-1: towards
    the user, which scrolls down and steps a combo box to its next entry)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def setup_scroll(window) -> QScrollArea:
    return next(area for area in window.findChildren(QScrollArea) if area.widget() is window.setup)


def editors_in_view(area, kind):
    """Enabled editors of `kind` shown inside the scroll area's viewport, with room to step."""
    viewport = area.viewport()
    found = []
    for editor in area.widget().findChildren(kind):
        if not editor.isVisible() or not editor.isEnabled():
            continue
        top = editor.mapTo(viewport, QPoint(0, 0)).y()
        if 0 <= top and top + editor.height() <= viewport.height():
            found.append(editor)
    return found


def test_the_wheel_over_an_unfocused_combo_scrolls_the_column_and_keeps_the_value(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    area = setup_scroll(window)
    bar = area.verticalScrollBar()
    assert bar.maximum() > 0, "the set-up column should be taller than the window at 1280x800"
    combos = [c for c in editors_in_view(area, QComboBox) if c.currentIndex() < c.count() - 1]
    assert len(combos) >= 2
    for combo in combos[:3]:
        bar.setValue(0)
        before = combo.currentIndex()
        turn_wheel(combo)
        assert combo.currentIndex() == before, f"the wheel changed {combo.objectName()}"
        assert not combo.hasFocus()
        assert bar.value() > 0, "the wheel should have scrolled the column"


def test_the_wheel_over_an_unfocused_slider_keeps_its_value(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    window.tabs.setCurrentWidget(window.preview)
    slider = window.preview.sliders["hue"].slider
    before, views = slider.value(), window.model.table["augment"]["views"]
    turn_wheel(slider)
    assert slider.value() == before and window.model.table["augment"]["views"] == views


def test_a_clicked_combo_takes_the_wheel(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    area = setup_scroll(window)
    combo = next(c for c in editors_in_view(area, QComboBox) if c.currentIndex() < c.count() - 1)
    before = combo.currentIndex()
    qtbot.mouseClick(combo, Qt.MouseButton.LeftButton)  # opens its list; Escape closes it, focus stays
    qtbot.keyClick(combo.view(), Qt.Key.Key_Escape)
    qtbot.waitUntil(combo.hasFocus, timeout=2000)
    turn_wheel(combo)
    assert combo.currentIndex() != before
