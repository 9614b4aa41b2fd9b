"""File dialogs that start where the user last was: in the folder of the last file or folder
chosen in any dialog of this session, else in the home folder; never in the working directory
the app happened to be started from (a dialog given a bare name such as "duplicates.csv" would
open there)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from ssl_engine.errors import UserError

_last_folder: str = ""  # the folder of the last choice in any dialog of this session


def start_folder(preferred: str = "") -> str:
    """`preferred` when it is an existing folder (or a file's folder), else the last folder
    used, else the home folder."""
    for candidate in (preferred, _last_folder):
        if candidate:
            path = Path(candidate).expanduser()
            folder = path if path.is_dir() else path.parent
            if folder.is_dir() and str(folder) not in ("", "."):
                return str(folder.resolve())
    return str(Path.home())


def remember(path: str) -> None:
    """Later dialogs start in the folder of `path` (a file or a folder the user chose)."""
    global _last_folder
    if path:
        chosen = Path(path).expanduser()
        _last_folder = str(chosen if chosen.is_dir() else chosen.parent)


def open_file(parent: QWidget | None, title: str, name_filter: str, preferred: str = "") -> str:
    path, _ = QFileDialog.getOpenFileName(parent, title, start_folder(preferred), name_filter)
    remember(path)
    return path


def save_file(parent: QWidget | None, title: str, file_name: str, name_filter: str, folder: str = "") -> str:
    """A path to write to, or '': the dialog suggests `file_name` in the start folder."""
    path, _ = QFileDialog.getSaveFileName(parent, title, str(Path(start_folder(folder)) / file_name), name_filter)
    remember(path)
    return path


def export_to_file(parent: QWidget, title: str, file_name: str, name_filter: str, export, notice, error) -> None:
    """Ask where to write, call `export(path)` (which returns the path written) and emit one line
    on `notice` ("wrote …") or `error` ("cannot write …"); nothing when the dialog is cancelled."""
    path = save_file(parent, title, file_name, name_filter)
    if not path:
        return
    try:
        notice.emit(f"wrote {export(path)}")
    except (OSError, UserError) as failure:
        error.emit(f"cannot write {path}: {failure}")


def existing_folder(parent: QWidget | None, title: str, preferred: str = "") -> str:
    folder = QFileDialog.getExistingDirectory(parent, title, start_folder(preferred))
    remember(folder)
    return folder
