"""The augmentation preview: sample images beside the views the method would train on.

Sliders edit the experiment's view recipes (every view at once, or one view for asymmetric
methods such as BYOL); any change to the experiment re-renders at once with the same random
draws, so what moves is the effect of the slider, not new randomness. "New random views" draws
again. The views come from the engine's own ViewAugmenter, the code the Trainer runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout,
                               QWidget)

from ssl_engine import params as P
from ssl_engine.addresses import section_of
from ssl_engine.augment.display import to_display
from ssl_engine.augment.presets import size_rule_notes
from ssl_engine.augment.views import ViewAugmenter, ViewConfig
from ssl_engine.config import ExperimentConfig
from ssl_engine.data.image_set import ImageSet
from ssl_engine.errors import ConfigError
from ssl_engine.methods import METHODS
from ssl_engine.recipes import global_views, recipe_settings, view_scope

from ..experiment_model import ExperimentModel
from ..mask_preview import MaskPreview
from .image_grid import ImageGrid
from .overlays import picture_columns
from .param_form import tooltip

# slider range and step per view field (the declared ranges are open-ended for jitter strengths)
SLIDERS: dict[str, tuple[float, float, float]] = {
    "crop_scale_min": (0.01, 1.0, 0.01), "crop_scale_max": (0.01, 1.0, 0.01), "flip_p": (0, 1, 0.05),
    "jitter_p": (0, 1, 0.05), "brightness": (0, 1.5, 0.05), "contrast": (0, 1.5, 0.05),
    "saturation": (0, 1.5, 0.05), "hue": (0, 0.5, 0.01), "grayscale_p": (0, 1, 0.05),
    "blur_p": (0, 1, 0.05), "blur_sigma_min": (0.1, 5, 0.1), "blur_sigma_max": (0.1, 5, 0.1),
    "solarize_p": (0, 1, 0.05),
}
SAMPLE_COUNT = 8


def pick_samples(images: ImageSet, count: int = SAMPLE_COUNT, seed: int = 0) -> torch.Tensor:
    """`count` images, one per class while classes last, the same ones for the same seed."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    chosen, seen = [], set()
    for index in order.tolist():
        label = int(images.labels[index])
        if label < 0 or label not in seen:
            chosen.append(index)
            seen.add(label)
        if len(chosen) == count:
            break
    for index in order.tolist():  # fewer classes than samples: fill with the next images
        if len(chosen) == count:
            break
        if index not in chosen:
            chosen.append(index)
    return images.images[chosen]


class ViewSlider(QWidget):
    """A slider over one view field's range, with its value shown beside it."""

    def __init__(self, name: str, low: float, high: float, step: float, on_change, parent=None):
        super().__init__(parent)
        self.low, self.step = low, step
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName(name)
        self.slider.setRange(0, round((high - low) / step))
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(36)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.value_label)
        self.slider.valueChanged.connect(lambda position: on_change(self.value_at(position)))

    def value_at(self, position: int) -> float:
        return round(self.low + position * self.step, 6)

    def show_value(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round((float(value) - self.low) / self.step))
        self.slider.blockSignals(False)
        self.value_label.setText(f"{float(value):g}")


class PreviewPanel(QWidget):
    """Sample images, their augmented views, and the sliders that shape them."""

    def __init__(self, model: ExperimentModel, parent=None):
        super().__init__(parent)
        self.model = model
        self.samples: torch.Tensor | None = None
        self.draw = 0  # the random draw shown; "New random views" moves to the next
        self.grid = ImageGrid("loading the data set…")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #d9534f;")
        self.view_choice = QComboBox()
        self.view_choice.setObjectName("preview_view_choice")
        self.view_choice.setToolTip("edit every view at once, or one view (asymmetric recipes such as BYOL's)")
        self.view_choice.currentIndexChanged.connect(self._show_values)
        self.new_views = QPushButton("New random views")
        self.new_views.clicked.connect(self.next_draw)

        fields = {f.name: f for f in dataclasses.fields(ViewConfig)}
        defaults = ViewConfig()
        controls = QGridLayout()
        self.sliders: dict[str, ViewSlider] = {}
        self._tips: dict[str, tuple[str, QLabel]] = {}  # each slider's plain tooltip, and its label
        self._slider_tips: dict[str, str] = {}  # ...with the recipe's sources
        self.rule_notes: dict[str, QLabel] = {}  # a setting the size rule turned off says so here
        for row, (name, (low, high, step)) in enumerate(SLIDERS.items()):
            slider = ViewSlider(name, low, high, step, lambda value, name=name: self._slide(name, value))
            slider.setToolTip(tooltip(P.spec_of(fields[name]), getattr(defaults, name)))
            label = QLabel(name.replace("_", " "))
            label.setToolTip(slider.toolTip())
            note = QLabel()
            note.setWordWrap(True)
            note.setObjectName(f"rule_note.{name}")
            note.setStyleSheet("color: palette(mid); font-size: small;")
            note.hide()
            controls.addWidget(label, 2 * row, 0)
            controls.addWidget(slider, 2 * row, 1)
            controls.addWidget(note, 2 * row + 1, 0, 1, 2)
            self.sliders[name] = slider
            self.rule_notes[name] = note
            self._tips[name] = (slider.toolTip(), label)

        side = QVBoxLayout()
        top = QHBoxLayout()
        top.addWidget(QLabel("edit"))
        top.addWidget(self.view_choice, 1)
        side.addLayout(top)
        side.addLayout(controls)
        side.addWidget(self.new_views)
        side.addStretch(1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        side_widget.setMaximumWidth(360)
        images = QVBoxLayout()
        images.addWidget(self.grid, 1)
        images.addWidget(self.message)
        layout = QHBoxLayout(self)
        layout.addLayout(images, 1)
        layout.addWidget(side_widget)

        self._mask_preview = MaskPreview()
        model.reset.connect(self._fill_view_choice)
        model.changed.connect(self.render)  # which also shows the values (and the size rule's notes)
        self._fill_view_choice()

    # -- inputs -----------------------------------------------------------------------
    def set_data(self, images: ImageSet | None, seed: int = 0) -> None:
        self.samples = None if images is None else pick_samples(images, seed=seed)
        self.render()

    def next_draw(self) -> None:
        self.draw += 1
        self.render()

    def _fill_view_choice(self) -> None:
        """'all views', multi-crop's 'global views' and 'local views', then each view, with its
        kind and size; each entry's data is the views it edits."""
        views = self.model.value("augment.views")
        size = self.model.image_size()
        is_global = global_views(views, size)
        self.view_choice.blockSignals(True)
        self.view_choice.clear()
        self.view_choice.addItem("all views", list(range(len(views))))
        if not all(is_global):
            for kind in ("global", "local"):
                self.view_choice.addItem(f"{kind} views", [i for i, g in enumerate(is_global) if g == (kind == "global")])
        for i, view in enumerate(views):
            side = view.get("output_size") or size
            kind = f"{'global' if is_global[i] else 'local'}, " if not all(is_global) else ""
            self.view_choice.addItem(f"view {i + 1} ({kind}{side} px)", [i])
        self.view_choice.blockSignals(False)
        self._show_recipe_sources()
        self._show_values()

    def _show_recipe_sources(self) -> None:
        """Each slider's tooltip says which of the recipe's view settings set it, and why."""
        method, recipe = METHODS.get(self.model.value("method.name")), self.model.recipe
        settings = [s for s in recipe_settings(method, recipe) if s.key.startswith("augment.")] if method else []
        for name, (tip, label) in self._tips.items():
            lines = []
            for setting in settings:
                if setting.key.split(".")[-1] == name:
                    lines.append(f"{recipe} recipe, {view_scope(setting.key)}: {setting.value} ({setting.source})")
            text = "\n".join([tip, *lines])
            self._slider_tips[name] = text  # `_show_values` adds what the edited views do not share
            self.sliders[name].setToolTip(text)
            label.setToolTip(text)

    def _edited_views(self) -> list[int]:
        chosen = self.view_choice.currentData()
        return list(chosen) if chosen else list(range(len(self.model.value("augment.views"))))

    def _show_values(self) -> None:
        """Each slider at the value the edited views share; a value they do not share (DINO's
        local crops' smaller scale) is shown per view and can only be set on a narrower choice."""
        views = self.model.value("augment.views")
        chosen = [i for i in self._edited_views() if i < len(views)]
        for name, slider in self.sliders.items():
            values = [views[i].get(name) for i in chosen]
            shared = all(isinstance(v, (int, float)) for v in values) and len(set(values)) == 1
            slider.setEnabled(shared)
            tip = self._slider_tips.get(name, self._tips[name][0])
            if shared:
                slider.show_value(values[0])
            elif values:
                slider.value_label.setText("differs")
                per_view = ", ".join(f"view {i + 1}: {views[i].get(name)}" for i in chosen)
                tip += f"\n(differs between these views: {per_view}; choose one view or a group to edit it)"
            slider.setToolTip(tip)
        rules = size_rule_notes(str(self.model.value("augment.preset")), self.model.image_size())
        for name, note in self.rule_notes.items():
            values = [views[i].get(name) for i in chosen]
            off = name in rules and all(value == 0 for value in values)
            note.setText(rules.get(name, "") if off else "")
            note.setVisible(off)

    def _slide(self, name: str, value: float) -> None:
        self.sliders[name].value_label.setText(f"{value:g}")
        self.model.set_view_value(self._edited_views(), name, value)
        if name in self.rule_notes and value != 0:
            self.rule_notes[name].hide()  # set again by the user: the rule no longer speaks

    # -- drawing ----------------------------------------------------------------------
    def view_configs(self) -> list[ViewConfig]:
        """The views in the table, or ConfigError naming what is wrong with them. Checked on their
        own, with the engine's own reader, so that a bad value elsewhere does not stop the preview."""
        table = self.model.table
        config = ExperimentConfig.from_dict({"method": {"name": table["method"]["name"], "recipe": self.model.recipe},
                                             "augment": table["augment"]})
        problems = [p for p in config.problems() if section_of(p.address) == "augment"]
        if problems:
            raise ConfigError(problems)
        return config.augment.views

    def render(self) -> None:
        self._show_values()
        if self.samples is None:
            return
        try:
            views = self.view_configs()
        except ConfigError as error:
            self.message.setText(f"cannot draw the views: {error}")
            return
        self.message.setText("")
        size = self.samples.shape[-1]
        generator = torch.Generator().manual_seed(self.draw)
        augmented = ViewAugmenter(views, size)(self.samples, generator)
        originals = to_display(self.samples)
        columns, caption = [to_display(v) for v in augmented], None
        masks = self._masks()
        if masks:
            names = ", ".join(masks)
            columns += picture_columns(originals, masks)
            caption = (f"each row: an image, its {len(augmented)} view{'s' if len(augmented) != 1 else ''}, then "
                       f"the {names} the method draws with these settings (as at its first step)")
        self.grid.set_images(originals, columns, caption)

    def _masks(self) -> dict[str, np.ndarray]:
        """A masked method's masks over the samples, or nothing (no valid config, not masked)."""
        config = self.model.config
        if config is None or config.data.image_size != self.samples.shape[-1]:
            return {}
        try:
            return self._mask_preview.pictures(config, self.samples.float() / 255.0)
        except ConfigError as error:
            self.message.setText(f"cannot draw the masks: {error}")
            return {}

    def shown_views(self) -> list[np.ndarray]:
        return self.grid.shown[1:]
