"""The experiment being set up: one config table that every panel edits and observes.

The table is the same plain dict `ExperimentConfig.to_dict()` gives and the TOML files hold, so
a field may hold a value the engine rejects (a typed "abc", a negative rate): the model keeps
it, asks the engine what is wrong, and tells each field its own problem. Settings are read,
set and told their problems by address (`method.temperature`, `ssl_engine.addresses`).
`config` is the validated ExperimentConfig, or None while any problem remains.
"""

from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ssl_engine.addresses import table_path
from ssl_engine.config import (ExperimentConfig, changed_settings, recipe_views, table_image_size, table_problems,
                               table_recipe, views_follow_size)
from ssl_engine.errors import ConfigError, Problem
from ssl_engine.params import to_dict
from ssl_engine.recipes import recipe_for

# what the window opens on the first time: SimCLR's quick recipe on the bundled shapes, a run
# that ends within minutes on a CPU
FIRST_EXPERIMENT = ("simclr", "quick")


class ExperimentModel(QObject):
    """Holds the config table; `changed` after any edit, `reset` when its structure changed
    (another method, a file opened) and forms must be rebuilt."""

    changed = Signal()
    reset = Signal()

    def __init__(self, config: ExperimentConfig | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._table: dict = {}
        self.config: ExperimentConfig | None = None
        self.problems: list[Problem] = []
        # (old method, new method, recipe, changed settings) of the last switch, None after a file
        self.last_switch: tuple | None = None
        self.set_config(config or ExperimentConfig.for_method(FIRST_EXPERIMENT[0], recipe=FIRST_EXPERIMENT[1]))

    # -- reading ----------------------------------------------------------------------
    @property
    def table(self) -> dict:
        """A copy of the table (edit through `set_value`)."""
        return copy.deepcopy(self._table)

    def value(self, address: str):
        """What the table holds for the setting at `address` (`method.name`, `augment.views`)."""
        node = self._table
        for part in table_path(address):
            node = node[part]
        return node

    def problem_for(self, address: str) -> Problem | None:
        """The first problem the engine reports for the setting at `address`, or None."""
        return next((problem for problem in self.problems if problem.address == address), None)

    # -- editing ----------------------------------------------------------------------
    def set_value(self, address: str, value) -> None:
        """Put `value` (as typed: it may be invalid) at `address`."""
        path = table_path(address)
        node = self._table
        for part in path[:-1]:
            node = node[part]
        if node.get(path[-1], object()) == value and type(node.get(path[-1])) is type(value):
            return
        node[path[-1]] = value
        if address == "data.image_size" and self._views_are_recipes and views_follow_size(value):
            # views the user has not touched follow the recipe for the new size (blur is off at
            # 32 px and less, as in the papers' CIFAR settings)
            self._table["augment"]["views"] = self._recipe_views(value)
        self._revalidate()
        self.changed.emit()

    def set_view_value(self, views: list[int] | None, key: str, value) -> None:
        """Set `key` on the views numbered in `views`, or on every view when it is None."""
        table_views = self._table["augment"]["views"]
        self._views_are_recipes = False
        for i in range(len(table_views)) if views is None else views:
            table_views[i][key] = value
        self._revalidate()
        self.changed.emit()

    def switch_method(self, name: str) -> None:
        """Method `name` in the same recipe, with its own hyperparameters, views and optimiser;
        data, backbone and training settings stay as they are, unless the recipe sets them or
        the method cannot use the backbone (`ExperimentConfig.switched`)."""
        self._switch(method=name)

    def set_recipe(self, recipe: str) -> None:
        """The method's recipe `recipe` (small, imagenet or quick)."""
        self._switch(recipe=recipe)

    @property
    def recipe(self) -> str:
        return table_recipe(self._table)

    def recipe_hint(self) -> str:
        """A line for the user when the recipe is not the image size's usual one, else ''."""
        size, recipe = self.image_size(), self.recipe
        usual = recipe_for(size)
        if recipe == "quick" or recipe == usual:
            return ""
        return f"the {usual} recipe is the usual one for {size} px images"

    def _switch(self, **change) -> None:
        old = self._table
        self._table = ExperimentConfig.switched(old, **change)
        new = self._table["method"]
        # what the switch changed outside the method's own parameters and views, to be said
        self.last_switch = (old.get("method", {}).get("name"), new["name"], new["recipe"], changed_settings(old, self._table))
        self._views_are_recipes = True
        self._revalidate()
        self.reset.emit()
        self.changed.emit()

    def image_size(self) -> int:
        """The data's image size, 32 while the field holds no usable size."""
        return table_image_size(self._table)

    def _recipe_views(self, size: int) -> list[dict]:
        return [to_dict(view) for view in recipe_views(self._table["method"]["name"], size, self.recipe)]

    def set_config(self, config: ExperimentConfig) -> None:
        self._table = config.to_dict()
        self.last_switch = None
        self._views_are_recipes = config.augment.views == config.recipe_views(config.data.image_size)
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
        self.problems = table_problems(self._table)  # all of them at once, not in rounds
        self.config = None if self.problems else ExperimentConfig.from_dict(self._table)
