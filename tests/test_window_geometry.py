"""The main window's first size fits the screen, and the size a user leaves it at comes back."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSize  # noqa: E402

from app.main_window import MainWindow  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from app.window_geometry import first_size, place_window  # noqa: E402


def test_first_size_takes_most_of_a_large_screen_and_all_of_a_small_one():
    assert first_size(QSize(1920, 1050)) == QSize(1632, 892)      # 85% of a 1080p desktop
    assert first_size(QSize(1280, 770)) == QSize(1280, 770)       # a laptop: the whole free area
    assert first_size(QSize(1400, 1000)) == QSize(1280, 850)      # never below the design size


def test_the_window_comes_back_at_the_size_it_was_closed_at(qtbot, tmp_path):
    settings_path = tmp_path / "settings.ini"
    window = MainWindow(AppSettings(settings_path))
    qtbot.addWidget(window)
    place_window(window, window.settings)                          # no saved geometry: fits the screen
    free = window.screen().availableGeometry()
    first = window.size()
    assert first.height() <= free.height()
    window.resize(first.width(), first.height() - 43)              # the user makes it shorter
    window.show()
    qtbot.waitExposed(window)
    closed_at = window.size()
    assert closed_at != first
    window.close()

    again = MainWindow(AppSettings(settings_path))
    qtbot.addWidget(again)
    place_window(again, again.settings)
    # the height it was closed at; the width: restoreGeometry keeps the window on the offscreen
    # screen, narrower than this window's minimum width
    assert again.height() == closed_at.height() != first.height()
    again.close()                                                  # waits for its data loader
