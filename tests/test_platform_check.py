"""`python main.py` on a Linux desktop without Qt's X11 libraries: one line naming the missing
ones with the command that installs them, exit code 2, and never a check where Qt would not use
its xcb plugin (offscreen, as these tests run, or Wayland)."""

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from app import platform_check
from app.platform_check import (XCB_LIBRARIES, missing_libraries, missing_libraries_message,
                                report_missing_xcb_libraries, xcb_platform_expected)

ROOT = Path(__file__).resolve().parents[1]
ABSENT = "libssl-explorer-absent.so.7"   # a library no machine has
ABSENT_PACKAGES = ("libssl-explorer-absent7", "ssl-explorer-absent")


@pytest.mark.parametrize("environ, platform, expected", [
    ({}, "linux", True),                                          # Qt's default on Linux: xcb
    ({"DISPLAY": ":0"}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({"QT_QPA_PLATFORM": " XCB:nograb ;wayland"}, "linux", True),  # options and fallbacks
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),             # the tests
    ({"QT_QPA_PLATFORM": "minimal", "DISPLAY": ":0"}, "linux", False),
    ({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux", False),           # xcb only if wayland fails
    ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "linux", False),
    ({"XDG_SESSION_TYPE": "wayland"}, "linux", False),
    ({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}, "linux", True),
    ({"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"}, "linux", True),  # asked for
    ({}, "darwin", False),
    ({"QT_QPA_PLATFORM": "xcb"}, "win32", False),
])
def test_the_check_runs_only_where_qt_would_load_its_xcb_plugin(environ, platform, expected):
    assert xcb_platform_expected(environ, platform) is expected


def test_a_missing_library_is_named_with_the_commands_that_install_it():
    # the real loader, on a soname that exists nowhere, beside one that every Linux has
    table = {"libc.so.6": ("libc6", "glibc"), ABSENT: ABSENT_PACKAGES}
    if sys.platform.startswith("linux"):
        assert missing_libraries(table) == [ABSENT]
    message = missing_libraries_message([ABSENT], table)
    assert "\n" not in message and message.startswith("error: the window cannot open: ")
    assert f"needs {ABSENT}," in message and "install it with" in message
    assert "`sudo apt-get install libssl-explorer-absent7` (Debian, Ubuntu)" in message
    assert "`sudo dnf install ssl-explorer-absent` (Fedora)" in message


def test_the_usual_three_on_a_bare_debian_desktop():
    missing = missing_libraries(loads=lambda soname: soname not in (
        "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-shm.so.0"))
    assert missing == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-shm.so.0"]
    message = missing_libraries_message(missing)
    assert "needs libxcb-cursor.so.0, libxcb-icccm.so.4, libxcb-keysyms.so.1, libxcb-shm.so.0," in message
    assert "`sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shm0`" in message
    # libxcb-shm is part of Fedora's libxcb
    assert "`sudo dnf install xcb-util-cursor xcb-util-wm xcb-util-keysyms libxcb`" in message
    assert missing_libraries(loads=lambda soname: True) == []


def test_report_prints_one_line_and_gives_2_only_for_xcb(monkeypatch, capsys):
    monkeypatch.setattr(platform_check, "XCB_LIBRARIES", {ABSENT: ABSENT_PACKAGES})
    monkeypatch.setattr(platform_check.sys, "platform", "linux")
    for environ in ({"QT_QPA_PLATFORM": "offscreen"}, {"WAYLAND_DISPLAY": "wayland-0"}):
        assert report_missing_xcb_libraries(environ) is None
    assert capsys.readouterr().err == ""
    assert report_missing_xcb_libraries({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":99"}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ABSENT in err and "sudo apt-get install libssl-explorer-absent7" in err
    # every library there: nothing printed, the window opens
    monkeypatch.setattr(platform_check, "_loads", lambda soname: True)
    assert report_missing_xcb_libraries({"QT_QPA_PLATFORM": "xcb"}) is None
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb plugin is Linux's")
def test_python_main_py_exits_2_with_the_line_before_qt_starts(tmp_path):
    """A real `python main.py` (its `main()`, as `python main.py` calls it) with xcb forced and
    one library missing: the table gains a soname no machine has, so the check fails here
    whatever is installed, before Qt could load its plugin (no X server is needed)."""
    code = (
        "import sys\n"
        "import app.platform_check as check\n"
        f"check.XCB_LIBRARIES = {{{ABSENT!r}: {ABSENT_PACKAGES!r}, **check.XCB_LIBRARIES}}\n"
        "sys.path.insert(0, '.')\n"
        "import main\n"
        "sys.argv = ['main.py']\n"
        "code = main.main()\n"
        "assert 'PySide6.QtWidgets' not in sys.modules and 'PySide6.QtGui' not in sys.modules\n"
        "sys.exit(code)\n")
    environ = {key: value for key, value in os.environ.items()
               if key not in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    environ.update(QT_QPA_PLATFORM="xcb", DISPLAY=":99")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: the window cannot open: Qt's X11 platform plugin (xcb) needs ")
    assert ABSENT in result.stderr and "sudo apt-get install libssl-explorer-absent7" in result.stderr
    assert "sudo dnf install ssl-explorer-absent" in result.stderr
    assert "Traceback" not in result.stderr and "Could not load the Qt platform plugin" not in result.stderr


def _needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF shared library (what `ldd` resolves)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, path
    section_offset, = struct.unpack_from("<Q", data, 0x28)
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, section_offset + i * entry_size) for i in range(count)]
    names = []
    for _, kind, _, _, offset, size, link, _, _, _ in sections:
        if kind != 6:  # SHT_DYNAMIC
            continue
        strings = sections[link][4]
        for tag_offset in range(offset, offset + size, 16):
            tag, value = struct.unpack_from("<qQ", data, tag_offset)
            if tag == 1:  # DT_NEEDED
                names.append(data[strings + value:data.index(b"\0", strings + value)].decode())
    return names


def test_the_table_holds_every_library_the_installed_xcb_plugin_links():
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    plugin, qpa = qt / "plugins" / "platforms" / "libqxcb.so", qt / "lib" / "libQt6XcbQpa.so.6"
    if not (plugin.is_file() and qpa.is_file()):
        pytest.skip("no xcb plugin in this PySide6 (not Linux)")
    runtime = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libdl.so.2", "libpthread.so.0"}
    needed = {name for path in (plugin, qpa) for name in _needed(path)
              if not name.startswith("libQt6") and name not in runtime}
    assert {"libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"} <= needed   # the parser reads them
    assert needed <= set(XCB_LIBRARIES), sorted(needed - set(XCB_LIBRARIES))
    assert all(debian and fedora for debian, fedora in XCB_LIBRARIES.values())
