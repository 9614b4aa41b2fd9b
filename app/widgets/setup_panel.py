"""The set-up column: data, method and its hyperparameters, backbone, optimiser, training.

Every form is built from the engine's declared parameters (default, range, help), so a new
method's hyperparameters appear here without any change to the app. The method list is
grouped by family, with the method's one-line summary and paper under it.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QGroupBox, QLabel, QVBoxLayout, QWidget

from ssl_engine.config import DATA_SOURCES, BackboneConfig, DataConfig, OptimConfig, TrainConfig
from ssl_engine.methods import FAMILIES, METHODS
from ssl_engine.models.backbones import backbone_names
from ssl_engine.recipes import RECIPES, recipe_sources

from ..devices import device_choices
from ..experiment_model import ExperimentModel
from ..file_dialogs import existing_folder
from .method_card import MethodCard
from .param_form import ParamForm, field_label

FOLDER_ITEM = "image folder…"
DATA_LABELS = {"digits": "digits (bundled, 1,797 handwritten digits)",
               "shapes": "shapes (bundled, generated, 10 classes)",
               "cifar10": "CIFAR-10 (torchvision, downloads)", "cifar100": "CIFAR-100 (torchvision, downloads)",
               "stl10": "STL-10 (torchvision, downloads)"}


class MethodPicker(QComboBox):
    """Methods grouped under non-selectable family headings."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("method")
        for family in FAMILIES:
            names = sorted(name for name, cls in METHODS.items() if cls.family == family)
            if not names:
                continue
            self.addItem(family.upper())
            heading = self.model().item(self.count() - 1)
            heading.setEnabled(False)
            heading.setSelectable(False)
            for name in names:
                self.addItem(f"    {name}", name)
                self.setItemData(self.count() - 1, METHODS[name].summary, 3)  # 3: Qt.ToolTipRole

    def select(self, name: str) -> None:
        index = self.findData(name)
        if index >= 0 and index != self.currentIndex():
            self.blockSignals(True)
            self.setCurrentIndex(index)
            self.blockSignals(False)

    def selected(self) -> str | None:
        return self.currentData()


VIT_FIELDS = ("patch_size", "vit_depth", "vit_features", "position_embedding", "layer_scale")
CNN_FIELDS = ("small_stem",)
SWITCH_CHANGES_SHOWN = 4  # in the note; the tooltip lists all


class SetupPanel(QWidget):
    """Edits the experiment model; `folder_chosen` tells the window to remember the folder."""

    folder_chosen = Signal(str)

    def __init__(self, model: ExperimentModel, last_folder: str = "", parent=None):
        super().__init__(parent)
        self.model = model
        self.last_folder = last_folder
        layout = QVBoxLayout(self)

        # data
        self.source = QComboBox()
        self.source.setObjectName("data.source")
        for source in DATA_SOURCES:
            self.source.addItem(DATA_LABELS.get(source, source), source)
        self.source.addItem(FOLDER_ITEM, "folder")
        self.source.setToolTip("the images to train on; a folder's subfolders are its classes")
        self.source.activated.connect(self._source_picked)
        self.folder_label = QLabel()
        self.folder_label.setWordWrap(True)
        data_box = QGroupBox("Data")
        data_layout = QVBoxLayout(data_box)
        data_layout.addWidget(self.source)
        data_layout.addWidget(self.folder_label)
        self.data_form_holder = QVBoxLayout()
        data_layout.addLayout(self.data_form_holder)
        layout.addWidget(data_box)

        # method
        self.method = MethodPicker()
        self.method.currentIndexChanged.connect(self._method_picked)
        self.method_card = MethodCard(self.model)
        self.method_card.settings_changed.connect(self._refresh_forms)
        self.recipe = QComboBox()
        self.recipe.setObjectName("method.recipe")
        for recipe, blurb in RECIPES.items():
            self.recipe.addItem(f"{recipe} recipe", recipe)
            self.recipe.setItemData(self.recipe.count() - 1, blurb, 3)  # 3: Qt.ToolTipRole
        self.recipe.activated.connect(self._recipe_picked)
        self.recipe_note = QLabel()
        self.recipe_note.setWordWrap(True)
        self.recipe_note.setObjectName("recipe_note")
        self.switch_note = QLabel()  # what the last switch of method or recipe changed
        self.switch_note.setWordWrap(True)
        self.switch_note.setObjectName("switch_note")
        self.switch_note.hide()
        method_box = QGroupBox("Method")
        method_layout = QVBoxLayout(method_box)
        method_layout.addWidget(self.method)
        method_layout.addWidget(self.method_card)
        method_layout.addWidget(self.recipe)
        method_layout.addWidget(self.recipe_note)
        method_layout.addWidget(self.switch_note)
        self.method_form_holder = QVBoxLayout()
        method_layout.addLayout(self.method_form_holder)
        layout.addWidget(method_box)

        # backbone, optimiser, training: fixed forms over fixed sections
        self.backbone_form = ParamForm(model, BackboneConfig, "backbone",
                                       choices={"name": backbone_names()})
        layout.addWidget(self._box("Backbone", self.backbone_form))
        self.optim_form = ParamForm(model, OptimConfig, "optim",
                                    only=["name", "lr", "weight_decay", "weight_decay_schedule", "weight_decay_end",
                                          "momentum", "beta2", "warmup_epochs", "min_lr_ratio", "bias_lr_ratio",
                                          "decay_exclusions", "lars_eta", "lars_clip", "grad_clip", "grad_clip_mode"])
        layout.addWidget(self._box("Optimiser", self.optim_form))
        self.train_form = ParamForm(model, TrainConfig, "train",
                                    only=["epochs", "minutes", "batch_size", "device", "precision", "seed", "runs_dir",
                                          "tensorboard"],
                                    choices={"device": device_choices()})
        layout.addWidget(self._box("Training", self.train_form))
        layout.addStretch(1)

        self.data_form = self.method_form = None
        model.reset.connect(self.rebuild)
        model.changed.connect(self._show_source)
        model.changed.connect(self._show_recipe)
        model.changed.connect(self._show_backbone_fields)
        self.rebuild()

    @staticmethod
    def _box(title: str, form: QWidget) -> QGroupBox:
        box = QGroupBox(title)
        QVBoxLayout(box).addWidget(form)
        return box

    # -- following the model ----------------------------------------------------------
    def rebuild(self) -> None:
        """New forms for what depends on the method or on a newly opened file."""
        for holder, attribute, form in (
                (self.data_form_holder, "data_form",
                 lambda: ParamForm(self.model, DataConfig, "data", only=["image_size", "shapes_count", "test_fraction"])),
                (self.method_form_holder, "method_form", self._method_form)):
            old = getattr(self, attribute)
            if old is not None:
                holder.removeWidget(old)
                old.hide()  # at once: deleteLater waits for the event loop
                old.deleteLater()
            setattr(self, attribute, form())
            holder.addWidget(getattr(self, attribute))
        for form in (self.backbone_form, self.optim_form, self.train_form):
            self._refresh(form)
        name = self.model.value("method.name")
        self.method.select(name)
        cls = METHODS.get(name)
        self._show_source()
        self._show_recipe()
        self._show_switch()
        self._show_backbone_fields()
        sources = recipe_sources(cls, self.model.recipe) if cls else {}
        notes = {key: f"{self.model.recipe} recipe: {setting.value} ({setting.source})" for key, setting in sources.items()}
        for form in (self.method_form, self.backbone_form, self.optim_form, self.train_form):
            if isinstance(form, ParamForm):
                form.set_notes(notes)

    def _show_switch(self) -> None:
        """After a switch of method or recipe: what it changed beyond the method's own settings
        and views, and that the rest stayed."""
        if self.model.last_switch is None:
            self.switch_note.hide()
            return
        old, new, recipe, changes = self.model.last_switch
        lead = (f"Switched from {old} to {new}" if old != new else f"Switched to the {recipe} recipe") + \
            f": its own {'parameters and views' if old != new else 'values'}"
        # a change to a field now hidden (a ViT's patch size under a CNN) says nothing
        is_vit = self._backbone_is_vit()
        vit_only = {f"backbone.{name}" for name in VIT_FIELDS}
        words = [f"{field_label(address)} {before} → {after}" for address, before, after in changes
                 if is_vit or address not in vit_only]
        shown = words[:SWITCH_CHANGES_SHOWN] + ([f"{len(words) - SWITCH_CHANGES_SHOWN} more"]
                                                 if len(words) > SWITCH_CHANGES_SHOWN else [])
        self.switch_note.setText(lead + (", and " + "; ".join(shown) if shown else "") +
                                 ". Data and your other settings stay.")
        self.switch_note.setToolTip("\n".join(words) or "nothing outside the method's own settings changed")
        self.switch_note.show()

    def _show_backbone_fields(self) -> None:
        """ViT-only fields for a ViT, the small stem for a CNN: a field that does nothing is hidden."""
        is_vit = self._backbone_is_vit()
        form = self.backbone_form
        for name in form.editors:
            if name in VIT_FIELDS or name in CNN_FIELDS:
                form.layout().setRowVisible(form.editors[name], is_vit == (name in VIT_FIELDS))
                form.layout().setRowVisible(form.problem_labels[name], is_vit == (name in VIT_FIELDS))

    def _backbone_is_vit(self) -> bool:
        return BackboneConfig(name=str(self.model.value("backbone.name"))).is_vit

    def forms(self) -> list[ParamForm]:
        return [form for form in (self.data_form, self.method_form, self.backbone_form, self.optim_form,
                                  self.train_form) if isinstance(form, ParamForm)]

    def field_for(self, address: str) -> tuple[QWidget, str] | None:
        """(the editor, its label) of the setting at `address`, None when no field of the set-up
        holds it (a view's setting lives in the Augmentations tab)."""
        for form in self.forms():
            for name, editor in form.editors.items():
                if form.address(name) == address:
                    return editor, field_label(address)
        if address == "data.source":
            return self.source, "data"
        return None

    def _show_recipe(self) -> None:
        """The recipe in use, what it is for, and a hint when the image size usually takes another."""
        recipe = self.model.recipe
        self.recipe.setCurrentIndex(max(self.recipe.findData(recipe), 0))
        cls = METHODS.get(self.model.value("method.name"))
        count = len(recipe_sources(cls, recipe)) if cls else 0
        changed = f"; it sets {count} values (their tooltips give the sources)" if count else ""
        hint = self.model.recipe_hint()
        self.recipe_note.setText(f"{RECIPES[recipe]}{changed}" + (f".\nNote: {hint}." if hint else "."))

    def _method_form(self) -> QWidget:
        cls = METHODS.get(self.model.value("method.name"))
        return ParamForm(self.model, cls.Params, "method") if cls else QWidget()

    def _refresh_forms(self) -> None:
        """Every form shows the model's values again (after the method card changed some)."""
        for form in (self.method_form, self.backbone_form, self.optim_form, self.train_form):
            if isinstance(form, ParamForm):
                self._refresh(form)

    def _refresh(self, form: ParamForm) -> None:
        """Show the model's values in a fixed form (after a file was opened or the method switched)."""
        for name, editor in form.editors.items():
            value = self.model.value(form.address(name))
            editor.blockSignals(True)
            if isinstance(editor, QComboBox):
                index = editor.findData(value) if editor.findData(value) >= 0 else editor.findText(str(value))
                editor.setCurrentIndex(max(index, 0))
            elif hasattr(editor, "setChecked"):
                editor.setChecked(bool(value))
            else:
                editor.setText(f"{value:g}" if isinstance(value, float) else str(value))
            editor.blockSignals(False)
        form.mark_problems()
        form.release_room()

    def _show_source(self) -> None:
        source = str(self.model.value("data.source"))
        is_folder = source.startswith("folder:")
        index = self.source.findData("folder" if is_folder else source)
        self.source.blockSignals(True)
        self.source.setCurrentIndex(max(index, 0))
        self.source.blockSignals(False)
        self.folder_label.setText(source[len("folder:"):] if is_folder else "")
        self.folder_label.setVisible(is_folder)
        if self.data_form is not None:
            shapes = source == "shapes"
            for name in ("shapes_count",):
                self.data_form.editors[name].setVisible(shapes)
                self.data_form.layout().labelForField(self.data_form.editors[name]).setVisible(shapes)

    # -- user actions -----------------------------------------------------------------
    def _source_picked(self, index: int) -> None:
        value = self.source.itemData(index)
        if value == "folder":
            folder = existing_folder(self, "Image folder (one subfolder per class, or none)", self.last_folder)
            if not folder:
                self._show_source()  # cancelled: show the source that is still in use
                return
            self.choose_folder(folder)
        else:
            self.model.set_value("data.source", value)

    def choose_folder(self, folder: str) -> None:
        self.last_folder = folder
        self.folder_chosen.emit(folder)
        self.model.set_value("data.source", f"folder:{folder}")

    def _recipe_picked(self, index: int) -> None:
        recipe = self.recipe.itemData(index)
        if recipe and recipe != self.model.recipe:
            self.model.set_recipe(recipe)

    def _method_picked(self, index: int) -> None:
        name = self.method.itemData(index)
        if name and name != self.model.value("method.name"):
            self.model.switch_method(name)
