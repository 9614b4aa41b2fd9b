"""What the app remembers between sessions: the last experiment, folders and window geometry.

Stored with QSettings in an INI file (the user's config folder by default; tests pass their own
file). The experiment is kept as the same TOML text the command line reads.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w
from PySide6.QtCore import QSettings, QStandardPaths

from ssl_engine.config import ExperimentConfig, tomllib
from ssl_engine.errors import ConfigError


def default_settings_path() -> Path:
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppConfigLocation)
    return Path(folder or Path.home() / ".config" / "ssl-explorer") / "settings.ini"


class AppSettings:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_settings_path()
        self._settings = QSettings(str(self.path), QSettings.Format.IniFormat)

    def text(self, key: str, default: str = "") -> str:
        value = self._settings.value(key, default)
        return value if isinstance(value, str) else default

    def set_text(self, key: str, value: str) -> None:
        self._settings.setValue(key, value)
        self._settings.sync()

    def experiment(self) -> ExperimentConfig | None:
        """The experiment of the last session, or None when there is none or it no longer reads."""
        text = self.text("experiment")
        if not text:
            return None
        try:
            return ExperimentConfig.from_dict(tomllib.loads(text)).validate()
        except (ConfigError, tomllib.TOMLDecodeError):
            return None

    def set_experiment(self, table: dict) -> None:
        self.set_text("experiment", tomli_w.dumps(table))
