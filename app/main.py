"""Opens the explorer window: `python main.py` with no arguments lands here."""

from __future__ import annotations

import sys


def make_application(argv: list[str] | None = None):
    """The QApplication, named for its settings folder, with plots in the system's palette."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from .compute_threads import keep_this_thread_serial

    keep_this_thread_serial()
    app = QApplication.instance() or QApplication(sys.argv if argv is None else argv)
    app.setApplicationName("SSL Explorer")
    app.setOrganizationName("ssl-explorer")
    palette = app.palette()  # dark or light, as the system is; set before any plot is built
    # no antialiasing: it doubles the cost of redrawing curves, and that time comes out of training
    pg.setConfigOptions(background=palette.base().color(), foreground=palette.text().color(), antialias=False)
    return app


def run_app(argv: list[str] | None = None) -> int:
    # first, before any Qt widget is imported: on Linux without Qt's X11 libraries, one line
    # saying what to install, and exit code 2, instead of Qt's abort
    from .platform_check import report_missing_xcb_libraries

    missing = report_missing_xcb_libraries()
    if missing is not None:
        return missing

    from .main_window import MainWindow
    from .window_geometry import place_window

    app = make_application(argv)
    window = MainWindow()
    place_window(window, window.settings)
    window.show()
    return app.exec()
