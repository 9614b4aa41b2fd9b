"""The method's card in the set-up: its family, its objective as a formula, what keeps it from
collapsing, its paper and year, the measures to watch in the Diagnostics view, and a switch that
removes its safeguard (a collapse demo: the safeguard's settings at their off values, seen in the
method's form and saved with the config like any other value).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from ssl_engine.addresses import value_at
from ssl_engine.collapse import removed_safeguard
from ssl_engine.config import ExperimentConfig
from ssl_engine.methods import METHODS
from ssl_engine.methods.base import FAMILIES

from ..experiment_model import ExperimentModel

# what the Diagnostics view calls each measure a safeguard names
MEASURE_NAMES = {"rankme": "effective rank", "embedding_std": "spread", "infonce_bound": "InfoNCE bound",
                 "gaussian_mi": "Gaussian MI", "alignment": "alignment", "uniformity": "uniformity",
                 "held_out_loss": "loss on held-out images"}
MASKED_WATCH = ("held_out_loss", "rankme")
DEFAULT_WATCH = ("rankme", "embedding_std", "alignment", "uniformity")


class MethodCard(QWidget):
    """Observes the model: shows the card of its method, and switches its safeguard off and on
    (then `settings_changed`, for the forms that show those settings)."""

    settings_changed = Signal()

    def __init__(self, model: ExperimentModel, parent=None):
        super().__init__(parent)
        self.model = model
        self.text = QLabel()
        self.text.setObjectName("method_card")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.without_safeguard = QCheckBox()
        self.without_safeguard.setObjectName("method_card.without_safeguard")
        self.without_safeguard.toggled.connect(self._toggled)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text)
        layout.addWidget(self.without_safeguard)
        model.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        cls = METHODS.get(self.model.value("method.name"))
        if cls is None:
            self.text.setText("")
            self.without_safeguard.hide()
            return
        safeguard = cls.safeguard
        watch = safeguard.watch if safeguard else (MASKED_WATCH if cls.family == "masked image modelling"
                                                   else DEFAULT_WATCH)
        lines = [f"<b>{cls.family}</b>: {FAMILIES[cls.family]}.", f"{cls.summary}.",
                 f"<code>{_escape(cls.objective)}</code>"]
        if safeguard is not None:
            lines.append(f"<b>Kept from collapsing by {_escape(safeguard.name)}</b>: {_escape(safeguard.keeps)}")
        lines.append(f"{_escape(cls.paper)}. Watch in Diagnostics: {', '.join(MEASURE_NAMES.get(m, m) for m in watch)}.")
        self.text.setText("<br>".join(lines))
        self.without_safeguard.setVisible(safeguard is not None)
        if safeguard is not None:
            off = removed_safeguard(self.model.table)
            self.without_safeguard.blockSignals(True)
            self.without_safeguard.setText("switch it off (a collapse demo)")  # a check box's text does not wrap
            self.without_safeguard.setToolTip(f"without {safeguard.name}: sets "
                                              + ", ".join(f"{s.key} = {s.value}" for s in safeguard.removed)
                                              + "; the method collapses: watch the Diagnostics view")
            self.without_safeguard.setChecked(len(off) == len(safeguard.removed))
            self.without_safeguard.blockSignals(False)

    def _toggled(self, off: bool) -> None:
        """Put the safeguard's settings at their off values, or back at the recipe's."""
        name = self.model.value("method.name")
        safeguard = METHODS[name].safeguard
        if safeguard is None:
            return
        intact = ExperimentConfig.for_method(name, self.model.image_size(), self.model.recipe).to_dict()
        for setting in safeguard.removed:
            self.model.set_value(setting.key, setting.value if off else value_at(intact, setting.key))
        self.settings_changed.emit()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
