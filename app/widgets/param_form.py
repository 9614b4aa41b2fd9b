"""A form built from a dataclass of declared parameters: one editor per field, with the
field's help, valid range and default as its tooltip, and its problem marked beside it.

Numbers are typed into line edits rather than spin boxes on purpose: a spin box silently
clamps, and the user would never learn why 0 became 0.0001. Here the value is kept as typed,
the engine says what is wrong with it, and the field turns red with that reason. Each field is
known by its setting's address (`method.temperature`), which is also how the engine names the
field a problem is about.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QWidget

from ssl_engine import params as P
from ssl_engine.errors import Problem

from ..experiment_model import ExperimentModel

INVALID_STYLE = "border: 1px solid #d9534f; background: rgba(217, 83, 79, 40);"


# field names a user would not read as words
LABELS = {"lr": "learning rate", "min_lr_ratio": "final learning rate ratio", "bias_lr_ratio": "bias learning rate ratio",
          "beta2": "Adam beta2", "lars_eta": "LARS eta", "lars_clip": "LARS clipping", "knn_k": "kNN neighbours",
          "vit_depth": "ViT depth", "vit_features": "ViT features", "grad_clip": "gradient clipping",
          "grad_clip_mode": "gradient clipping mode", "tensorboard": "TensorBoard folder",
          # a name is the section's choice
          "backbone.name": "backbone", "optim.name": "optimiser", "method.name": "method"}


def field_label(address: str) -> str:
    """The words the form shows for the setting at `address`: 'learning rate' for optim.lr,
    'backbone' for backbone.name, 'batch size' for train.batch_size."""
    name = address.rsplit(".", 1)[-1]
    return LABELS.get(address, LABELS.get(name, name.replace("_", " ")))


def in_words(problem: Problem, label: str) -> str:
    """An engine problem (optim.lr, 'must be > 0, got -1') as the form says it, its setting
    called `label` ('learning rate must be > 0, got -1')."""
    return f"{label} {problem.message}" if problem.address else problem.message


def tooltip(spec: P.Spec, default) -> str:
    parts = [spec.help]
    if spec.range_text():
        parts.append(f"valid: {spec.range_text()}")
    parts.append(f"default: {default}")
    return "\n".join(p for p in parts if p)


def make_editor(kind, spec: P.Spec, value, on_change, labels: dict | None = None) -> QWidget:
    """The editor for one field; `on_change(value)` receives the typed or parsed value.
    `labels` gives a combo box's text for some of its values."""
    if kind is bool:
        editor = QCheckBox()
        editor.setChecked(bool(value))
        editor.toggled.connect(on_change)
    elif spec.choices is not None:
        editor = QComboBox()
        for choice in spec.choices:
            editor.addItem((labels or {}).get(choice, str(choice)), choice)
        editor.setCurrentIndex(max(editor.findData(value), 0))
        editor.currentIndexChanged.connect(lambda index: on_change(editor.itemData(index)))
    else:
        editor = QLineEdit(f"{value:g}" if isinstance(value, float) else str(value))
        if kind in (int, float):
            editor.textEdited.connect(lambda text: on_change(P.value_from_text(text.strip()) if text.strip() else text))
        else:
            editor.textEdited.connect(on_change)
    return editor


class ParamForm(QWidget):
    """Editors for the fields of `cls`, the settings of config section `section` (their
    addresses are `section.field`: "method" for a method's parameters).

    `only` limits the form to some fields, in that order; `choices` gives a combo box for a
    free-text field: a list of values (the backbone names) or of (value, label) pairs (devices).
    Problems are re-marked after every model change. `edited` gives the address of a field the
    user changed.
    """

    edited = Signal(str)

    def __init__(self, model: ExperimentModel, cls, section: str, *, only: list[str] | None = None,
                 choices: dict[str, list] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.section = section
        self.editors: dict[str, QWidget] = {}
        self.problem_labels: dict[str, QLabel] = {}
        self._tips: dict[str, str] = {}
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        types = P.field_types(cls)
        defaults = cls()
        for name in only or [f for f in fields if f != "params" and not f.startswith("_")]:
            spec, labels = P.spec_of(fields[name]), None
            if choices and name in choices:
                pairs = [c if isinstance(c, tuple) else (c, str(c)) for c in choices[name]]
                spec, labels = dataclasses.replace(spec, choices=tuple(v for v, _ in pairs)), dict(pairs)
            address = self.address(name)
            editor = make_editor(types[name], spec, model.value(address),
                                 lambda value, address=address: self._set(address, value), labels)
            self._tips[name] = tooltip(P.spec_of(fields[name]), getattr(defaults, name))
            editor.setToolTip(self._tips[name])
            editor.setObjectName(address)
            problem = QLabel()
            problem.setWordWrap(True)
            problem.setStyleSheet("color: #d9534f;")
            problem.hide()
            label = QLabel(field_label(address))
            label.setToolTip(editor.toolTip())
            layout.addRow(label, editor)
            layout.addRow("", problem)
            self.editors[name], self.problem_labels[name] = editor, problem
        model.changed.connect(self.mark_problems)
        self.mark_problems()

    def address(self, name: str) -> str:
        """The address of field `name`'s setting."""
        return f"{self.section}.{name}"

    def set_notes(self, notes: dict[str, str]) -> None:
        """Add a line to some fields' tooltips (where the recipe's value comes from), `notes`
        by address; fields not in `notes` get their plain tooltip back."""
        for name, editor in self.editors.items():
            note = notes.get(self.address(name))
            tip = self._tips[name] + (f"\n{note}" if note is not None else "")
            editor.setToolTip(tip)
            self.layout().labelForField(editor).setToolTip(tip)

    def _set(self, address: str, value) -> None:
        self.model.set_value(address, value)
        self.edited.emit(address)

    def mark_problems(self) -> None:
        for name, editor in self.editors.items():
            address = self.address(name)
            problem = self.model.problem_for(address)
            label = self.problem_labels[name]
            editor.setStyleSheet(INVALID_STYLE if problem else "")
            if problem:
                label.setMinimumHeight(0)
                label.setText(in_words(problem, field_label(address)))
                label.setToolTip(f"setting {address}: {problem}")
                label.show()
            elif label.isVisible():
                # a message that goes keeps its room: the fields below do not jump back and
                # forth as the user types through a bad value
                label.setMinimumHeight(label.height())
                label.setText("")
                label.setToolTip("")

    def release_room(self) -> None:
        """Give back the room of messages that went (the form now shows other values: a file
        opened, another method)."""
        for label in self.problem_labels.values():
            if not label.text():
                label.setMinimumHeight(0)
                label.hide()
