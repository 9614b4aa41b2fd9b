"""The dialog that sets up a race of methods: which methods (grouped by family), which seeds,
the data set, the minutes each run trains, the recipe, the backbone, the device and any
settings for every run (by address, as `--set` on the command line). The plan
is checked whole before the dialog closes (`RaceRunner` refuses a bad plan before anything
is created), and its problems are shown in the dialog, which stays open to fix them.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit,
                               QListWidget, QListWidgetItem, QVBoxLayout)

from ssl_engine.errors import ConfigError, UserError
from ssl_engine.methods import METHODS
from ssl_engine.methods.base import FAMILIES
from ssl_engine.models.backbones import backbone_names
from ssl_engine.race import Race, RaceRunner
from ssl_engine.recipes import RECIPES

from ..devices import device_choices
from .setup_panel import DATA_LABELS

DEFAULT_METHODS = ("simclr", "byol")
NAME_ROLE = Qt.ItemDataRole.UserRole


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0, 1 2' -> (0, 1, 2); a ConfigError naming what is not a seed."""
    parts = text.replace(",", " ").split()
    if not parts:
        raise ConfigError(["seeds: give at least one seed, e.g. 0 or 0, 1"])
    try:
        seeds = tuple(int(part) for part in parts)
    except ValueError:
        raise ConfigError([f"seeds: {text.strip()!r} is not a list of whole numbers, e.g. 0, 1"]) from None
    return tuple(dict.fromkeys(seeds))


class RaceDialog(QDialog):
    """`runner` holds the checked race once the dialog is accepted."""

    def __init__(self, *, data_source: str, runs_dir: str, device: str = "auto", parent=None):
        super().__init__(parent)
        self.setWindowTitle("Race methods")
        self.runs_dir = runs_dir
        self.runner: RaceRunner | None = None

        self.methods = QListWidget()
        self.methods.setObjectName("race.methods")
        for family in FAMILIES:
            names = sorted(name for name, cls in METHODS.items() if cls.family == family)
            if not names:
                continue
            heading = QListWidgetItem(family.upper())
            heading.setFlags(Qt.ItemFlag.NoItemFlags)
            self.methods.addItem(heading)
            for name in names:
                item = QListWidgetItem(f"    {name}")
                item.setData(NAME_ROLE, name)
                item.setToolTip(METHODS[name].summary)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if name in DEFAULT_METHODS else Qt.CheckState.Unchecked)
                self.methods.addItem(item)
        self.seeds = QLineEdit("0")
        self.seeds.setObjectName("race.seeds")
        self.seeds.setToolTip("one run of each method per seed, e.g. 0, 1, 2")
        self.data = QComboBox()
        self.data.setObjectName("race.data")
        self.data.setEditable(True)  # folder:PATH as well
        for source, label in DATA_LABELS.items():
            self.data.addItem(label, source)
        index = self.data.findData(data_source)
        if index >= 0:
            self.data.setCurrentIndex(index)
        else:
            self.data.setEditText(data_source)
        self.minutes = QDoubleSpinBox()
        self.minutes.setObjectName("race.minutes")
        self.minutes.setRange(0.05, 24 * 60)
        self.minutes.setDecimals(2)
        self.minutes.setValue(3.0)
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("minutes of training for each run (the evaluation that follows is not counted)")
        self.recipe = QComboBox()
        self.recipe.setObjectName("race.recipe")
        self.recipe.addItem("the image size's", None)
        for name, text in RECIPES.items():
            self.recipe.addItem(name, name)
            self.recipe.setItemData(self.recipe.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.backbone = QComboBox()
        self.backbone.setObjectName("race.backbone")
        self.backbone.addItem("each recipe's", None)
        for name in backbone_names():
            self.backbone.addItem(name, name)
        self.device = QComboBox()
        self.device.setObjectName("race.device")
        for value, label in device_choices():
            self.device.addItem(label, value)
        self.device.setCurrentIndex(max(self.device.findData(device), 0))
        self.assignments = QLineEdit()
        self.assignments.setObjectName("race.settings")
        self.assignments.setPlaceholderText("optional, e.g. train.batch_size=64 method.temperature=0.2")
        self.assignments.setToolTip("settings for every run, by address (as --set on the command line), "
                                    "separated by spaces")
        self.without_safeguard = QCheckBox("also each method without its safeguard (a collapse demo beside it)")
        self.without_safeguard.setObjectName("race.without_safeguard")
        self.without_safeguard.setToolTip("SimSiam without its stop-gradient, BYOL without its predictor, ...: "
                                          "see each method's card")
        self.problems = QLabel()
        self.problems.setObjectName("race.problems")
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #d9534f")

        form = QFormLayout()
        form.addRow("seeds", self.seeds)
        form.addRow("data", self.data)
        form.addRow("minutes each", self.minutes)
        form.addRow("recipe", self.recipe)
        form.addRow("backbone", self.backbone)
        form.addRow("device", self.device)
        form.addRow("settings", self.assignments)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Start race")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Methods (each trains for the same minutes, one after another):"))
        layout.addWidget(self.methods, 1)
        layout.addLayout(form)
        layout.addWidget(self.without_safeguard)
        layout.addWidget(self.problems)
        layout.addWidget(buttons)
        self.resize(460, 640)

    def chosen_methods(self) -> tuple[str, ...]:
        items = (self.methods.item(row) for row in range(self.methods.count()))
        return tuple(item.data(NAME_ROLE) for item in items
                     if item.data(NAME_ROLE) and item.checkState() == Qt.CheckState.Checked)

    def data_source(self) -> str:
        text = self.data.currentText().strip()
        index = self.data.findText(text)
        return self.data.itemData(index) if index >= 0 else text

    def race(self) -> Race:
        return Race(methods=self.chosen_methods(), dataset=self.data_source(), minutes=float(self.minutes.value()),
                    seeds=parse_seeds(self.seeds.text()), recipe=self.recipe.currentData(),
                    backbone=self.backbone.currentData(), device=self.device.currentData(), runs_dir=self.runs_dir,
                    assignments=tuple(self.assignments.text().split()),
                    also_without_safeguard=self.without_safeguard.isChecked())

    def accept(self) -> None:
        try:
            if not self.chosen_methods():
                raise ConfigError(["methods: tick at least one method"])
            self.runner = RaceRunner(self.race())
        except UserError as error:
            self.problems.setText(str(error))
            return
        super().accept()
