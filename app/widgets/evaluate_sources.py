"""The Evaluate tab's source bar: the model and the model to compare it with, the folders, and
the embedding's progress.

The model lists offer the runs of the runs folder (newest first), the checkpoints opened by
hand, the random-init floor and "Open checkpoint…". The folders are the evaluation session's,
one chip each, with their image count and whether they are labelled once embedded; the bar
observes the session for both. The owner (the Evaluate panel) drives the progress bar, Cancel
and the status line, and reacts to `choices_changed` and `open_checkpoint_requested`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import QObject, QSignalBlocker, Qt, Signal, Slot
from PySide6.QtWidgets import (QComboBox, QFrame, QHBoxLayout, QLabel, QMessageBox, QProgressBar, QPushButton,
                               QScrollArea, QSizePolicy, QToolButton, QVBoxLayout, QWidget)

from ssl_engine.errors import UserError
from ssl_engine.eval.embedded import RANDOM_INIT, ModelChoice, same_path
from ssl_engine.eval.model_source import RunInfo, list_runs
from ssl_engine.eval.session import FOLDERS, PRIMARY, EvaluationSession

SKIPPED_LISTED = 20          # unreadable files named in the tooltip (all of them in the details)
OPEN_CHECKPOINT = "open"     # item data of the "Open checkpoint…" entry


def run_label(run: RunInfo) -> str:
    """"simclr · shapes · kNN 39.8% · 20261122-1015" for the model list."""
    data = Path(run.data[len("folder:"):]).name if run.data.startswith("folder:") else run.data
    knn = f" · kNN {run.knn_top1:.1%}" if run.knn_top1 is not None else ""
    return f"{run.method} · {data}{knn} · {time.strftime('%Y%m%d-%H%M', time.localtime(run.modified))}"


class FolderChip(QFrame):
    """One opened folder: its name, image count and labels once embedded, and a remove button."""

    remove_requested = Signal(str)

    def __init__(self, folder: str, parent=None):
        super().__init__(parent)
        self.folder = folder
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel()
        self.label.setToolTip(folder)
        remove = QToolButton()
        remove.setText("✕")
        remove.setAutoRaise(True)
        remove.setToolTip(f"stop evaluating {folder}")
        remove.clicked.connect(self._remove_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 1, 1, 1)
        layout.setSpacing(2)
        layout.addWidget(self.label)
        layout.addWidget(remove)
        self.set_counts(None, None)

    def set_counts(self, images: int | None, labelled: bool | None) -> None:
        name = os.path.basename(self.folder.rstrip(os.sep)) or self.folder
        if images is None:
            self.label.setText(name)
        else:
            kind = "labelled" if labelled else "no labels"
            self.label.setText(f"{name} · {images:,} images · {kind}")

    @Slot()
    def _remove_clicked(self) -> None:
        self.remove_requested.emit(self.folder)


class SourceBar(QObject):
    """The bar's widgets, laid out in `bar_layout` for the owner (`parent`, a widget) to place;
    `models_row` is the first row, which the owner may extend. `notice` carries one line."""

    choices_changed = Signal()
    open_checkpoint_requested = Signal()
    notice = Signal(str)

    def __init__(self, session: EvaluationSession, runs_dir: str, parent: QWidget):
        super().__init__(parent)
        self.session, self.runs_dir = session, runs_dir
        self._compare_chosen_by_user = False
        self._previous_model_index = 0
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("the model whose features are evaluated")
        self.model_combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.model_combo.setMinimumContentsLength(28)
        self.model_combo.currentIndexChanged.connect(self._model_chosen)
        self.compare_combo = QComboBox()
        self.compare_combo.setToolTip("a second model measured beside it in the Accuracy tab, "
                                      "e.g. the random-init floor")
        self.compare_combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.compare_combo.setMinimumContentsLength(18)
        self.compare_combo.currentIndexChanged.connect(self.choices_changed)
        self.compare_combo.activated.connect(self._compare_chosen)
        self.models_row = QHBoxLayout()
        self.models_row.addWidget(QLabel("Model"))
        self.models_row.addWidget(self.model_combo, 3)
        self.models_row.addSpacing(8)
        self.models_row.addWidget(QLabel("Compare with"))
        self.models_row.addWidget(self.compare_combo, 2)
        self.models_row.addSpacing(8)

        self.chips = QWidget()
        self.chips_layout = QHBoxLayout(self.chips)
        self.chips_layout.setContentsMargins(0, 0, 0, 0)
        self.chips_layout.addStretch(1)
        self.no_folder_label = QLabel("no folder yet: add one whose subfolders are its classes (or any folder of images)")
        self.chips_layout.insertWidget(0, self.no_folder_label)
        chips_scroll = QScrollArea()
        chips_scroll.setWidget(self.chips)
        chips_scroll.setWidgetResizable(True)
        chips_scroll.setFrameShape(QFrame.Shape.NoFrame)
        chips_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        chips_scroll.setFixedHeight(parent.fontMetrics().height() + 22)
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip("add a folder of images (its first-level subfolders are the classes)")
        self.embed_button = QPushButton("Embed")
        self.embed_button.setToolTip("embed the folders with the model(s) again (unchanged images come from the cache)")
        folders = QHBoxLayout()
        folders.addWidget(QLabel("Folders"))
        folders.addWidget(chips_scroll, 1)
        folders.addWidget(self.add_folder_button)
        folders.addWidget(self.embed_button)

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setMinimumWidth(320)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("stop embedding (what is embedded so far stays cached)")
        self.cancel_button.hide()
        self.status = QLabel("choose a model and add a folder of images")
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.skipped_label = QLabel()
        self.skipped_label.setTextFormat(Qt.TextFormat.RichText)
        self.skipped_label.linkActivated.connect(self._show_skipped)
        self.skipped_label.hide()
        state = QHBoxLayout()
        state.addWidget(self.progress)
        state.addWidget(self.cancel_button)
        state.addWidget(self.status, 1)
        state.addWidget(self.skipped_label)

        self.bar_layout = QVBoxLayout()
        self.bar_layout.addLayout(self.models_row)
        self.bar_layout.addLayout(folders)
        self.bar_layout.addLayout(state)
        session.events.connect(FOLDERS, self._show_folders)
        session.events.connect(PRIMARY, self._show_counts)

    # -- models ------------------------------------------------------------------------
    def refresh_runs(self, select: str | None = None) -> None:
        """List the runs with a checkpoint again; `select` (a run folder) becomes the chosen model."""
        chosen = self.model_choice()
        compared = self.compare_combo.currentData()
        try:
            runs = list_runs(self.runs_dir)
        except (OSError, UserError) as error:  # an unreadable runs folder: the other sources still work
            runs = []
            self.notice.emit(f"cannot list the runs in {self.runs_dir}: {error}")
        opened = self.session.models.opened
        choices = [ModelChoice(run_label(run), run.path) for run in runs] + opened
        tips = [f"{run.path}\n{run.backbone}, {run.epochs_done or 0:g} epochs" for run in runs]
        tips += [choice.checkpoint for choice in opened]
        with QSignalBlocker(self.model_combo), QSignalBlocker(self.compare_combo):
            self.model_combo.clear()
            self.compare_combo.clear()
            self.compare_combo.addItem("none", None)
            for choice, tip in zip([*choices, RANDOM_INIT], [*tips, "a randomly initialised backbone: the floor"]):
                for combo in (self.model_combo, self.compare_combo):
                    combo.addItem(choice.label, choice)
                    combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            self.model_combo.addItem("Open checkpoint…", OPEN_CHECKPOINT)
            if select is not None:
                chosen = next((choice for choice in choices if same_path(choice.checkpoint, select)), chosen)
            self._select(self.model_combo, chosen if chosen is not None else (choices or [RANDOM_INIT])[0])
            if not self._compare_chosen_by_user:   # the floor beside a trained model, unless the user chose
                compared = RANDOM_INIT if self.model_choice() != RANDOM_INIT else None
            self._select(self.compare_combo, compared)
        self._previous_model_index = self.model_combo.currentIndex()
        self.choices_changed.emit()

    @staticmethod
    def _select(combo: QComboBox, choice) -> None:
        index = next((i for i in range(combo.count()) if combo.itemData(i) == choice), 0)
        combo.setCurrentIndex(index)

    def model_choice(self) -> ModelChoice | None:
        choice = self.model_combo.currentData()
        return choice if isinstance(choice, ModelChoice) else None

    def compare_choice(self) -> ModelChoice | None:
        choice = self.compare_combo.currentData()
        return choice if isinstance(choice, ModelChoice) and choice != self.model_choice() else None

    @Slot()
    def _compare_chosen(self) -> None:
        self._compare_chosen_by_user = True

    @Slot()
    def _model_chosen(self) -> None:
        if self.model_combo.currentData() == OPEN_CHECKPOINT:
            with QSignalBlocker(self.model_combo):
                self.model_combo.setCurrentIndex(self._previous_model_index)
            self.open_checkpoint_requested.emit()
            return
        self._previous_model_index = self.model_combo.currentIndex()
        if not self._compare_chosen_by_user:
            with QSignalBlocker(self.compare_combo):
                self._select(self.compare_combo, RANDOM_INIT if self.model_choice() != RANDOM_INIT else None)
        self.choices_changed.emit()

    # -- folders -----------------------------------------------------------------------
    def chips_shown(self) -> list[FolderChip]:
        return [self.chips_layout.itemAt(i).widget() for i in range(1, self.chips_layout.count() - 1)]

    def _show_folders(self) -> None:
        while self.chips_layout.count() > 2:   # the placeholder label and the stretch stay
            chip = self.chips_layout.itemAt(1).widget()
            self.chips_layout.removeWidget(chip)
            chip.deleteLater()
        for position, folder in enumerate(self.session.folders, start=1):
            chip = FolderChip(folder)
            chip.remove_requested.connect(self._remove_folder)
            self.chips_layout.insertWidget(position, chip)
        self.no_folder_label.setVisible(not self.session.folders)

    @Slot(str)
    def _remove_folder(self, folder: str) -> None:
        self.session.set_folders([f for f in self.session.folders if f != folder])

    def _show_counts(self) -> None:
        primary = self.session.primary
        folders = primary.folders if primary is not None else [None] * len(self.session.folders)
        for chip, folder in zip(self.chips_shown(), folders):
            chip.set_counts(None if folder is None else len(folder.paths), None if folder is None else folder.has_labels)
        skipped = primary.combined.skipped if primary is not None else []
        self.skipped_label.setVisible(bool(skipped))
        if skipped:
            plural = "s" if len(skipped) != 1 else ""
            self.skipped_label.setText(f"<a href='skipped'>{len(skipped)} file{plural} skipped</a>")
            listed = [f"{path}: {reason}" for path, reason in skipped[:SKIPPED_LISTED]]
            more = [f"… and {len(skipped) - SKIPPED_LISTED} more"] if len(skipped) > SKIPPED_LISTED else []
            self.skipped_label.setToolTip("unreadable files, not embedded:\n" + "\n".join(listed + more))

    @Slot()
    def _show_skipped(self) -> None:
        primary = self.session.primary
        skipped = primary.combined.skipped if primary is not None else []
        box = QMessageBox(QMessageBox.Icon.Information, "Skipped files",
                          f"{len(skipped)} files could not be read and were not embedded.", parent=self.parent())
        box.setDetailedText("\n".join(f"{path}: {reason}" for path, reason in skipped))
        box.setObjectName("skipped_files")
        box.open()
