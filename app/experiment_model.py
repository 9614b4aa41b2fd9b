"""The experiment being set up: one config table that every panel edits and observes.

The table is the same plain dict `ExperimentConfig.to_dict()` gives and the TOML files hold, so
a field may hold a value the engine rejects (a typed "abc", a negative rate): the model keeps
it, asks the engine what is wrong, and tells each field its own problem. `config` is the
validated ExperimentConfig, or None while any problem remains.
"""

from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ssl_engine.augment.presets import PRESETS, preset_views
from ssl_engine.config import ExperimentConfig, usable_backbone
from ssl_engine.errors import ConfigError
from ssl_engine.params import to_dict


def path_key(path: tuple) -> str:
    """The name the engine's messages use for a table path: ('augment', 'views', 0, 'hue') ->
    'augment.views[0].hue', ('method', 'params', 'temperature') -> 'method.temperature'."""
    if path[:2] == ("method", "params"):
        path = ("method",) + tuple(path[2:])
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


class ExperimentModel(QObject):
    """Holds the config table; `changed` after any edit, `reset` when its structure changed
    (another method, a file opened) and forms must be rebuilt."""

    changed = Signal()
    reset = Signal()

    def __init__(self, config: ExperimentConfig | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._table: dict = {}
        self.config: ExperimentConfig | None = None
        self.problems: list[str] = []
        self.set_config(config or ExperimentConfig.for_method("simclr"))

    # -- reading ----------------------------------------------------------------------
    @property
    def table(self) -> dict:
        """A copy of the table (edit through `set_value`)."""
        return copy.deepcopy(self._table)

    def value(self, path: tuple):
        node = self._table
        for part in path:
            node = node[part]
        return node

    def problem_for(self, path: tuple) -> str | None:
        """The first problem the engine reports for this field, or None."""
        key = path_key(path)
        for problem in self.problems:
            if problem.startswith(key + " ") or problem.startswith(key + ":"):
                return problem
        return None

    # -- editing ----------------------------------------------------------------------
    def set_value(self, path: tuple, value) -> None:
        node = self._table
        for part in path[:-1]:
            node = node[part]
        if node.get(path[-1], object()) == value and type(node.get(path[-1])) is type(value):
            return
        node[path[-1]] = value
        if path == ("data", "image_size") and self._views_are_preset and isinstance(value, int) and value >= 8:
            # views the user has not touched follow the preset for the new size (blur is off at
            # 32 px and less, as in the papers' CIFAR settings)
            self._table["augment"]["views"] = [to_dict(v) for v in preset_views(self._table["augment"]["preset"], value)]
        self._revalidate()
        self.changed.emit()

    def set_view_value(self, view: int | None, key: str, value) -> None:
        """Set `key` on one view, or on every view when `view` is None."""
        views = self._table["augment"]["views"]
        self._views_are_preset = False
        for i in range(len(views)) if view is None else [view]:
            views[i][key] = value
        self._revalidate()
        self.changed.emit()

    def switch_method(self, name: str) -> None:
        """Method `name` with its paper's hyperparameters, views and optimiser; data, backbone
        and training settings stay as they are, unless the method cannot use the backbone."""
        size = self._table.get("data", {}).get("image_size", 32)
        recipe = ExperimentConfig.for_method(name, size if isinstance(size, int) else 32).to_dict()
        for section in ("method", "augment", "optim"):
            self._table[section] = recipe[section]
        self._views_are_preset = True
        backbone = self._table["backbone"]
        backbone["name"] = usable_backbone(name, str(backbone.get("name")))
        self._revalidate()
        self.reset.emit()
        self.changed.emit()

    def set_config(self, config: ExperimentConfig) -> None:
        self._table = config.to_dict()
        preset = config.augment.preset
        self._views_are_preset = preset in PRESETS and config.augment.views == preset_views(preset, config.data.image_size)
        self._revalidate()
        self.reset.emit()
        self.changed.emit()

    # -- files ------------------------------------------------------------------------
    def load(self, path: str | Path) -> None:
        """Open a TOML experiment; raises ConfigError (one line per problem) and keeps the
        current experiment when the file is unreadable or invalid."""
        self.set_config(ExperimentConfig.load(path).validate())

    def save(self, path: str | Path) -> None:
        if self.config is None:
            raise ConfigError(self.problems)
        self.config.save(path)

    def _revalidate(self) -> None:
        try:
            config = ExperimentConfig.from_dict(self._table)
            self.problems = config.problems()
        except ConfigError as error:
            config, self.problems = None, list(error.problems)
        self.config = None if self.problems else config
