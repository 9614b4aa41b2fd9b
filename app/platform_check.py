"""Before the window opens on Linux: are the X11 libraries Qt's xcb platform plugin needs there?

Without them Qt prints "Could not load the Qt platform plugin "xcb"" with a page of advice and
aborts the process. A fresh Debian desktop lacks libxcb-cursor0, libxcb-icccm4 and libxcb-keysyms1
(PySide6's wheels bundle Qt but not these system libraries). So `python main.py` checks first,
and when one is missing prints one line naming it with the command that installs it, and exits
with code 2, as the command line does for a user's mistake.

The check loads each library with `ctypes.CDLL`, as the plugin's own loader would find it (the
standard search path: LD_LIBRARY_PATH, the ld.so cache, /lib, /usr/lib), in about a millisecond
and without `ldd`. It imports nothing from Qt, and it runs only where Qt would load the xcb
plugin (see `xcb_platform_expected`): never under QT_QPA_PLATFORM=offscreen (the tests), nor on
Wayland, macOS or Windows.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping

# The libraries that PySide6 6.11's xcb plugin (plugins/platforms/libqxcb.so) and its
# libQt6XcbQpa.so.6 link against (their ELF NEEDED entries, which `ldd` reports as "not found"
# when missing), less Qt's own libraries and the C/C++ runtime: soname -> (Debian/Ubuntu
# package, Fedora package).
XCB_LIBRARIES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
}


def xcb_platform_expected(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether the QApplication would start on Qt's X11 (xcb) platform plugin.

    QT_QPA_PLATFORM, when set, is a ';'-separated list of plugins Qt tries in turn ("xcb",
    "wayland;xcb", "offscreen", "xcb:option=value"): xcb is expected when it comes first.
    Unset, Qt 6 on Linux picks xcb, except in a Wayland session, where it tries wayland first
    and falls back to xcb only if that fails. Qt reads XDG_SESSION_TYPE for this; WAYLAND_DISPLAY
    (set by every Wayland compositor) counts here too. A Wayland session is left alone, even on
    builds that prefer XWayland there: a window that would open must never be stopped, and
    if xcb is used after all, Qt's own message still says what is wrong.
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        return False
    requested = environ.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        first = requested.split(";")[0].split(":")[0].strip().lower()
        return first == "xcb"
    wayland_session = (environ.get("XDG_SESSION_TYPE", "").strip().lower() == "wayland"
                       or bool(environ.get("WAYLAND_DISPLAY", "").strip()))
    return not wayland_session


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(sonames: Mapping[str, object] | None = None,
                      loads: Callable[[str], bool] | None = None) -> list[str]:
    """The sonames (by default every one in XCB_LIBRARIES) that `loads` (by default ctypes)
    cannot load, in table order."""
    loads = _loads if loads is None else loads
    return [soname for soname in (XCB_LIBRARIES if sonames is None else sonames) if not loads(soname)]


def missing_libraries_message(missing: list[str], table: Mapping[str, tuple[str, str]] | None = None) -> str:
    """One line naming the missing libraries and the commands that install them."""
    table = XCB_LIBRARIES if table is None else table

    def packages(column: int) -> str:
        return " ".join(dict.fromkeys(table[soname][column] for soname in missing))   # in order, once each

    return (f"error: the window cannot open: Qt's X11 platform plugin (xcb) needs {', '.join(missing)}, "
            f"not installed here; install {'it' if len(missing) == 1 else 'them'} with "
            f"`sudo apt-get install {packages(0)}` (Debian, Ubuntu) or `sudo dnf install {packages(1)}` "
            f"(Fedora), or use the command line: `python main.py train --help`")


def report_missing_xcb_libraries(environ: Mapping[str, str] | None = None, stream=None) -> int | None:
    """For `python main.py` before the QApplication exists: when Qt would use xcb and a library
    it needs is missing, print the one-line message to `stream` (stderr) and return the exit
    code 2; otherwise None, and the window opens."""
    if not xcb_platform_expected(environ):
        return None
    missing = missing_libraries()
    if not missing:
        return None
    print(missing_libraries_message(missing), file=sys.stderr if stream is None else stream)
    return 2
