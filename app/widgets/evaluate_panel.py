"""The Evaluate tab: what a trained model learned about the user's own image folders.

A source bar picks the model (a finished run, a checkpoint file, or the random-init floor), a
second model to compare with, and one or more folders; embedding starts by itself when they
change (while the tab is on screen) and runs in an `EmbeddingThread` whose progress a timer
polls. Four sub-tabs work over every opened folder together:

- Map: the embedding projected to 2-D (PCA, t-SNE, UMAP), coloured by label, k-means cluster,
  folder or tag, as dots or thumbnails; clicking a point finds its neighbours and highlights them;
  a selection can be tagged, and the map filtered to one tag.
- Neighbours: the nearest images of a clicked point or of an outside image.
- Duplicates: near-identical images at a threshold the user moves.
- Accuracy: kNN and linear-probe accuracy of both models on the labelled folders.

Long work (projections, k-means, duplicates, accuracy, exports) runs off the UI thread through
`LatestCall`; every failure becomes one line in the status line (and a message box when the user
asked for something that cannot be done); the panel stays usable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFrame, QHBoxLayout, QLabel, QMessageBox,
                               QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSpinBox, QTabWidget, QToolButton,
                               QMenu, QVBoxLayout, QWidget)

from ssl_engine.checkpoint import checkpoint_file
from ssl_engine.errors import UserError
from ssl_engine.eval.export import copy_selection, save_embeddings, save_selection_csv
from ssl_engine.eval.model_source import EvalModel, RunInfo, list_runs, open_model
from ssl_engine.eval.projection import kmeans_clusters, project_2d, projection_methods

from ..evaluation_worker import RANDOM_INIT, EmbeddedFolders, EmbeddingThread, LatestCall, ModelChoice
from ..file_dialogs import existing_folder, open_file, save_file
from .accuracy_view import AccuracyView
from .duplicates_view import DuplicatesView
from .embedding_map import EmbeddingMap
from .label_check_view import LabelCheckView
from .map_tags import MapTags
from .neighbours_view import NeighboursView

POLL_INTERVAL_MS = 100       # progress redraws 10 times a second
EMBED_DEBOUNCE_MS = 300      # wait for the user to finish choosing before embedding
SKIPPED_LISTED = 20          # unreadable files named in the tooltip (all of them in the details)
COLOUR_LABEL, COLOUR_CLUSTER, COLOUR_FOLDER, COLOUR_TAG = "label", "k-means cluster", "folder", "tag"
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


def _copied_into(embedding, rows, folder: str) -> str:
    """What the export notice says of a copy: the files and where they went."""
    written = copy_selection(embedding, rows, folder)
    return f"{len(written):,} images into {folder}"


class EvaluatePanel(QWidget):
    """The Evaluate tab. `folders_changed` carries the opened folders, for the window to remember."""

    folders_changed = Signal(object)   # list[str]

    def __init__(self, runs_dir: str = "runs", *, cache_dir: str | None = None, device: str = "auto", parent=None):
        super().__init__(parent)
        self.runs_dir = runs_dir
        self.cache_dir, self.device = cache_dir, device
        self.folders: list[str] = []
        self.primary: EmbeddedFolders | None = None     # the chosen model's embeddings, once ready
        self.compared: EmbeddedFolders | None = None    # the "compare with" model's, once ready
        self.worker: EmbeddingThread | None = None
        self._worker_key: tuple | None = None           # what the running worker embeds
        self._shown_key: tuple | None = None            # what the views show (or are being fed)
        self._embed_when_shown = False
        self._restart_when_stopped = False
        self._loaded: dict[str, tuple[float, EvalModel]] = {}   # checkpoint -> (mtime, model)
        self._opened_checkpoints: list[ModelChoice] = []
        self._compare_chosen_by_user = False
        self._previous_model_index = 0
        self._map_xy: np.ndarray | None = None
        self._clusters: tuple[int, np.ndarray] | None = None    # (k, cluster of each point)
        self._message_box: QMessageBox | None = None
        self._opening_checkpoint = ""
        self.last_error = ""                            # the latest message shown, for scripts

        self._checkpoint_opener = LatestCall(self)
        self._checkpoint_opener.done.connect(self._checkpoint_opened)
        self._checkpoint_opener.failed.connect(self._checkpoint_refused)
        self._projector = LatestCall(self)
        self._projector.done.connect(self._projected)
        self._projector.failed.connect(self._map_job_failed)
        self._clusterer = LatestCall(self)
        self._clusterer.done.connect(self._clustered)
        self._clusterer.failed.connect(self._map_job_failed)
        self._exporter = LatestCall(self)
        self._exporter.done.connect(self._exported)
        self._exporter.failed.connect(self.show_error)

        self.embed_timer = QTimer(self)
        self.embed_timer.setSingleShot(True)
        self.embed_timer.setInterval(EMBED_DEBOUNCE_MS)
        self.embed_timer.timeout.connect(self._embed_if_changed)
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(POLL_INTERVAL_MS)
        self.poll_timer.timeout.connect(self.poll)

        self._build_source_bar()
        self._build_tabs()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self.source_bar)
        layout.addWidget(self.tabs, 1)
        self.refresh_runs()
        self._update_enabled()

    # -- building ---------------------------------------------------------------------
    def _build_source_bar(self) -> None:
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
        self.compare_combo.currentIndexChanged.connect(self._schedule_embed)
        self.compare_combo.activated.connect(self._compare_chosen)
        self.export_button = QToolButton()
        self.export_button.setText("Export ▾")
        # the style's own arrow overlaps the text of an instant-popup tool button: the text carries it
        self.export_button.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.export_menu = QMenu(self.export_button)
        self.export_menu.aboutToShow.connect(self._update_export_menu)
        self.export_embeddings_action = self.export_menu.addAction("Embeddings (.npz or .csv)…",
                                                                   self._export_embeddings_clicked)
        self.export_map_action = self.export_menu.addAction("Map as PNG…", self._export_map_clicked)
        self.export_neighbours_action = self.export_menu.addAction("Neighbours (CSV)…", self._export_neighbours_clicked)
        self.export_all_neighbours_action = self.export_menu.addAction("Every image's neighbours (CSV)…",
                                                                       self._export_all_neighbours_clicked)
        self.export_duplicates_action = self.export_menu.addAction("Duplicates (CSV)…", self._export_duplicates_clicked)
        self.export_accuracy_action = self.export_menu.addAction("Accuracy table (CSV)…", self._export_accuracy_clicked)
        self.export_menu.addSeparator()
        self.export_selection_action = self.export_menu.addAction("The map's selected images: file list (CSV)…",
                                                                  self._export_selection_clicked)
        self.copy_selection_action = self.export_menu.addAction("The map's selected images: copy into a folder…",
                                                                self._copy_selection_clicked)
        self.export_button.setMenu(self.export_menu)
        models = QHBoxLayout()
        models.addWidget(QLabel("Model"))
        models.addWidget(self.model_combo, 3)
        models.addSpacing(8)
        models.addWidget(QLabel("Compare with"))
        models.addWidget(self.compare_combo, 2)
        models.addSpacing(8)
        models.addWidget(self.export_button)

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
        chips_scroll.setFixedHeight(self.fontMetrics().height() + 22)
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip("add a folder of images (its first-level subfolders are the classes)")
        self.add_folder_button.clicked.connect(self._add_folder_clicked)
        self.embed_button = QPushButton("Embed")
        self.embed_button.setToolTip("embed the folders with the model(s) again (unchanged images come from the cache)")
        self.embed_button.clicked.connect(self._embed_clicked)
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
        self.cancel_button.clicked.connect(self.cancel_embedding)
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

        self.source_bar = QVBoxLayout()
        self.source_bar.addLayout(models)
        self.source_bar.addLayout(folders)
        self.source_bar.addLayout(state)

    def _build_tabs(self) -> None:
        self.map = EmbeddingMap()
        self.map.point_clicked.connect(self._point_clicked)
        self.projection_combo = QComboBox()
        self.projection_combo.addItems(projection_methods())
        self.projection_combo.setToolTip("PCA is instant; t-SNE and UMAP keep neighbourhoods (seeded: the same "
                                         "picture twice) and take longer")
        self.projection_combo.currentIndexChanged.connect(self._project)
        self.colour_combo = QComboBox()
        self.colour_combo.addItems([COLOUR_LABEL, COLOUR_CLUSTER, COLOUR_FOLDER, COLOUR_TAG])
        self.colour_combo.currentIndexChanged.connect(self._apply_colouring)
        self.clusters_spin = QSpinBox()
        self.clusters_spin.setRange(2, 100)
        self.clusters_spin.setValue(10)
        self.clusters_spin.setPrefix("k = ")
        self.clusters_spin.setToolTip("number of k-means clusters")
        self.clusters_spin.valueChanged.connect(self._apply_colouring)
        self.map_tags = MapTags(self.map, self.cache_dir, self)
        self.map_tags.notice.connect(self.show_notice)
        self.map_tags.error.connect(self.show_error)
        self.map_tags.changed.connect(self._tags_changed)
        for widget in (self.map_tags.tag_button, self.map_tags.untag_button):
            self.map.selection_actions.addWidget(widget)
        self.map.selection_actions.addStretch(1)
        self.map.toolbar.addWidget(QLabel("Show"))
        self.map.toolbar.addWidget(self.map_tags.show_combo)
        self.thumbnails_check = QCheckBox("Thumbnails")
        self.thumbnails_check.setToolTip("draw each point as its image instead of a dot")
        self.thumbnails_check.toggled.connect(self.map.set_thumbnails_shown)
        self.map_status = QLabel()
        self.map_status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Projection"))
        controls.addWidget(self.projection_combo)
        controls.addSpacing(8)
        controls.addWidget(QLabel("Colour by"))
        controls.addWidget(self.colour_combo)
        controls.addWidget(self.clusters_spin)
        controls.addSpacing(8)
        controls.addWidget(self.thumbnails_check)
        controls.addSpacing(8)
        controls.addWidget(self.map_status, 1)
        map_tab = QWidget()
        map_layout = QVBoxLayout(map_tab)
        map_layout.addLayout(controls)
        map_layout.addWidget(self.map, 1)

        self.neighbours = NeighboursView()
        self.neighbours.neighbours_shown.connect(self._neighbours_shown)
        self.duplicates = DuplicatesView()
        self.label_check = LabelCheckView()
        self.accuracy = AccuracyView()
        for view in (self.neighbours, self.duplicates, self.label_check, self.accuracy):
            view.notice.connect(self.show_notice)
            view.error.connect(self.show_error)
        self.tabs = QTabWidget()
        self.tabs.addTab(map_tab, "Map")
        self.tabs.addTab(self.neighbours, "Neighbours")
        self.tabs.addTab(self.duplicates, "Duplicates")
        self.tabs.addTab(self.label_check, "Label check")
        self.tabs.addTab(self.accuracy, "Accuracy")
        self._update_colour_controls()

    # -- models -----------------------------------------------------------------------
    def set_runs_dir(self, runs_dir: str) -> None:
        if runs_dir != self.runs_dir:
            self.runs_dir = runs_dir
            self.refresh_runs()

    def refresh_runs(self, select: str | None = None) -> None:
        """List the runs with a checkpoint again; `select` (a run folder) becomes the chosen model."""
        chosen = self.model_choice()
        compared = self.compare_combo.currentData()
        try:
            runs = list_runs(self.runs_dir)
        except (OSError, UserError) as error:  # an unreadable runs folder: the other sources still work
            runs = []
            self.show_notice(f"cannot list the runs in {self.runs_dir}: {error}")
        choices = [ModelChoice(run_label(run), run.path) for run in runs]
        tips = [f"{run.path}\n{run.backbone}, {run.epochs_done or 0:g} epochs" for run in runs]
        choices += self._opened_checkpoints
        tips += [choice.checkpoint for choice in self._opened_checkpoints]
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
        self._schedule_embed()

    def run_finished(self, run_dir: str) -> None:
        """A training run finished or stopped: list it and make it the chosen model."""
        self.refresh_runs(select=run_dir)

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
            self.open_checkpoint()
            return
        self._previous_model_index = self.model_combo.currentIndex()
        if not self._compare_chosen_by_user:
            with QSignalBlocker(self.compare_combo):
                self._select(self.compare_combo, RANDOM_INIT if self.model_choice() != RANDOM_INIT else None)
        self._schedule_embed()

    def open_checkpoint(self, path: str | None = None) -> None:
        """Open a checkpoint file or run folder (a file dialog when no path is given), checked off
        the UI thread; a file that is not a safe checkpoint is refused with one message."""
        if not path:
            path = open_file(self, "Open checkpoint", "Checkpoints (*.pt);;All files (*)", self.runs_dir)
        if not path:
            return
        self.status.setText(f"opening {path}…")
        self._opening_checkpoint = path
        self._checkpoint_opener.request(open_model, path)

    @Slot(object)
    def _checkpoint_opened(self, model: EvalModel) -> None:
        choice = ModelChoice(model.name, model.source)
        self._remember_model(model)
        if choice not in self._opened_checkpoints:
            self._opened_checkpoints.append(choice)
        self.status.setText(f"opened {model.source}")
        self.refresh_runs(select=model.source)

    @Slot(str)
    def _checkpoint_refused(self, message: str) -> None:
        name = os.path.basename(self._opening_checkpoint)
        self.show_error(message if name in message else f"cannot open {name}: {message}")

    def _remember_model(self, model: EvalModel) -> None:
        if os.path.exists(model.source):
            self._loaded[model.source] = (os.path.getmtime(model.source), model)

    def _loaded_models(self, choices: list[ModelChoice]) -> dict[str, EvalModel]:
        """Models already opened for these choices whose checkpoint has not changed since."""
        loaded = {}
        for choice in choices:
            for source, (mtime, model) in self._loaded.items():
                if same_path(choice.checkpoint, source) or same_path(checkpoint_file(choice.checkpoint), source):
                    if os.path.exists(source) and os.path.getmtime(source) == mtime:
                        loaded[choice.checkpoint] = model
        return loaded

    # -- folders ----------------------------------------------------------------------
    def add_folder(self, folder: str | None = None) -> None:
        if not folder:
            start = self.folders[-1] if self.folders else ""
            folder = existing_folder(self, "Add a folder of images", start)
        if not folder:
            return
        folder = os.path.abspath(folder)
        if not os.path.isdir(folder):
            self.show_error(f"{folder} is not a folder")
            return
        if folder not in self.folders:
            self.set_folders([*self.folders, folder])

    @Slot()
    def _add_folder_clicked(self) -> None:
        self.add_folder()

    @Slot(str)
    def remove_folder(self, folder: str) -> None:
        self.set_folders([f for f in self.folders if f != folder])

    def set_folders(self, folders: list[str]) -> None:
        """The folders to evaluate, in order (the window restores the last session's with this)."""
        self.folders = list(dict.fromkeys(os.path.abspath(f) for f in folders))
        while self.chips_layout.count() > 2:   # the placeholder label and the stretch stay
            chip = self.chips_layout.itemAt(1).widget()
            self.chips_layout.removeWidget(chip)
            chip.deleteLater()
        for position, folder in enumerate(self.folders, start=1):
            chip = FolderChip(folder)
            chip.remove_requested.connect(self.remove_folder)
            self.chips_layout.insertWidget(position, chip)
        self.no_folder_label.setVisible(not self.folders)
        self.folders_changed.emit(list(self.folders))
        self._schedule_embed()

    def _chips(self) -> list[FolderChip]:
        return [self.chips_layout.itemAt(i).widget() for i in range(1, self.chips_layout.count() - 1)]

    # -- embedding --------------------------------------------------------------------
    def wanted_key(self) -> tuple | None:
        """What should be embedded now: (model, compared model, folders), or None when nothing can be."""
        if self.model_choice() is None or not self.folders:
            return None
        return self.model_choice(), self.compare_choice(), tuple(self.folders)

    @Slot()
    def _schedule_embed(self) -> None:
        self.embed_timer.start()
        self._update_enabled()

    @Slot()
    def _embed_if_changed(self) -> None:
        if self.wanted_key() != self._shown_key:
            self.embed()

    def embed(self) -> None:
        """Embed the folders with the chosen model(s) (waits until the tab is on screen)."""
        self.embed_timer.stop()
        if not self.isVisible():
            self._embed_when_shown = True
            return
        self._embed_when_shown = False
        key = self.wanted_key()
        if self.worker is not None:
            if key != self._worker_key:   # stop the old job; this one starts when it has ended
                self._restart_when_stopped = True
                self.worker.cancel()
            return
        self._show_embeddings(None, None)
        self._shown_key = key
        if key is None:
            self.status.setText("add a folder of images" if self.model_choice() else "choose a model")
            self._update_enabled()
            return
        choices = [key[0]] + ([key[1]] if key[1] is not None else [])
        loaded = self._loaded_models(choices)
        # only the models in use stay loaded: a ViT-B is hundreds of MB
        self._loaded = {model.source: self._loaded[model.source] for model in loaded.values()}
        self.worker = EmbeddingThread(choices, self.folders, loaded=loaded,
                                      cache_dir=self.cache_dir, device=self.device)
        self.worker.finished.connect(self._embedding_finished)
        self._worker_key = key
        self.worker.start()
        self.status.setText(f"opening {key[0].label}…")
        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self.progress.show()
        self.cancel_button.show()
        self.poll_timer.start()
        self._update_enabled()

    @Slot()
    def _embed_clicked(self) -> None:
        self._shown_key = None
        self.embed()

    def embedding(self) -> bool:
        return self.worker is not None

    def busy(self) -> bool:
        """Whether anything the source bar or the map started is still running (or about to)."""
        return (self.embedding() or self.embed_timer.isActive() or self._checkpoint_opener.busy()
                or self._projector.busy() or self._clusterer.busy())

    @Slot()
    def cancel_embedding(self) -> None:
        if self.worker is not None:
            self._restart_when_stopped = False
            self.worker.cancel()
            self.status.setText("cancelling…")

    @Slot()
    def poll(self) -> None:
        """Draw the worker's progress, and whatever it has finished since the last poll."""
        if self.worker is None:
            return
        state = self.worker.state()
        folder_count = len(self.worker.folders)
        choices = self.worker.choices
        if state.total:
            where = f"{os.path.basename(self.worker.folders[state.folder_index])}"
            if len(choices) > 1:
                where = f"{choices[state.model_index].label} · {where}"
            self.progress.setRange(0, state.total)
            self.progress.setValue(state.done)
            self.progress.setFormat(f"{state.done:,} / {state.total:,} · {state.images_per_second:,.0f} img/s")
            self.status.setText(f"embedding {where}")
        if self.primary is None and state.ready(0, folder_count):
            self._show_embeddings(self._embedded(state, 0), self.compared)
        if len(choices) > 1 and self.compared is None and state.ready(1, folder_count):
            self._show_embeddings(self.primary, self._embedded(state, 1))

    def _embedded(self, state, model_index: int) -> EmbeddedFolders:
        folders = [state.finished[(model_index, f)] for f in range(len(self.worker.folders))]
        model = state.models[model_index]
        self._remember_model(model)
        return EmbeddedFolders(model, folders)

    @Slot()
    def _embedding_finished(self) -> None:
        if self.worker is None:   # shut down already: `shutdown` waited for it
            return
        self.poll()
        worker, self.worker = self.worker, None
        worker.wait()
        self.poll_timer.stop()
        self.progress.hide()
        self.cancel_button.hide()
        if self._restart_when_stopped:
            self._restart_when_stopped = False
            self._shown_key = None
            self.embed()
            return
        if worker.error:
            self._shown_key = None   # "Embed" tries again
            self.show_error(worker.error)
        elif worker.cancelled:
            self._shown_key = None
            shown = " (the chosen model's images are shown)" if self.primary is not None else ""
            self.status.setText(f"{worker.cancel_message or 'embedding cancelled'}{shown}: Embed resumes")
        else:
            self.status.setText(self._embedded_summary())
            self.status.setToolTip(self.status.text())  # the line may be cut at the window's edge
        self._update_enabled()

    def _embedded_summary(self) -> str:
        combined = self.primary.combined
        folders = len(self.primary.folders)
        reused = f" ({combined.reused:,} from the cache)" if combined.reused else ""
        where = f"{folders} folders" if folders > 1 else os.path.basename(combined.root)
        compared = f", and with {self.compared.model.name}" if self.compared is not None else ""
        size = self.primary.model.image_size
        return (f"{len(combined.paths):,} images of {where} embedded at {size} px (the model's size) with "
                f"{self.primary.model.name}{reused}{compared}")

    def _show_embeddings(self, primary: EmbeddedFolders | None, compared: EmbeddedFolders | None) -> None:
        """Feed the views; the map, neighbours and duplicates only when the chosen model's changed."""
        if primary is not self.primary:
            self.primary = primary
            self._map_xy, self._clusters = None, None
            self._projector.drop()
            self._clusterer.drop()
            combined = primary.combined if primary is not None else None
            self.neighbours.set_embedding(combined, primary.model if primary is not None else None)
            self.duplicates.set_embedding(combined)
            self.label_check.set_embedding(combined)
            self._show_counts()
            if primary is None:
                self.map.set_points(np.zeros((0, 2), np.float32), np.zeros((0, 64, 64, 3), np.uint8), [])
                self.map_tags.clear()
                self.map_status.setText("")
            else:
                self.map_tags.set_images([folder.root for folder in primary.folders], combined.paths,
                                         primary.folder_of)
                self._update_colour_controls()
                self._project()
        self.compared = compared
        self.accuracy.set_models([m for m in (primary, compared) if m is not None])
        self.tabs.setTabEnabled(self.tabs.indexOf(self.accuracy), self.accuracy.has_labels() or primary is None)
        self.tabs.setTabEnabled(self.tabs.indexOf(self.label_check), self.accuracy.has_labels() or primary is None)
        self._update_enabled()

    def _show_counts(self) -> None:
        folders = self.primary.folders if self.primary is not None else [None] * len(self.folders)
        for chip, folder in zip(self._chips(), folders):
            chip.set_counts(None if folder is None else len(folder.paths), None if folder is None else folder.has_labels)
        skipped = self.primary.combined.skipped if self.primary is not None else []
        self.skipped_label.setVisible(bool(skipped))
        if skipped:
            plural = "s" if len(skipped) != 1 else ""
            self.skipped_label.setText(f"<a href='skipped'>{len(skipped)} file{plural} skipped</a>")
            listed = [f"{path}: {reason}" for path, reason in skipped[:SKIPPED_LISTED]]
            more = [f"… and {len(skipped) - SKIPPED_LISTED} more"] if len(skipped) > SKIPPED_LISTED else []
            self.skipped_label.setToolTip("unreadable files, not embedded:\n" + "\n".join(listed + more))

    @Slot()
    def _show_skipped(self) -> None:
        skipped = self.primary.combined.skipped if self.primary is not None else []
        box = QMessageBox(QMessageBox.Icon.Information, "Skipped files",
                          f"{len(skipped)} files could not be read and were not embedded.", parent=self)
        box.setDetailedText("\n".join(f"{path}: {reason}" for path, reason in skipped))
        box.setObjectName("skipped_files")
        box.open()

    # -- the map ----------------------------------------------------------------------
    @Slot()
    def _project(self) -> None:
        if self.primary is None:
            return
        method = self.projection_combo.currentText()
        self.map_status.setText(f"computing {method} of {len(self.primary.combined.paths):,} images…")
        self._projector.request(_projection_job, self.primary.combined, method)

    @Slot(object)
    def _projected(self, result) -> None:
        combined, method, xy = result
        if self.primary is None or combined is not self.primary.combined:
            return
        self._map_xy = xy
        self.map.set_points(xy, combined.thumbnails, combined.paths)
        self.map.set_thumbnails_shown(self.thumbnails_check.isChecked())
        self.map_tags.apply_filter()
        self._apply_colouring()

    @Slot()
    def _apply_colouring(self) -> None:
        self._update_colour_controls()
        if self.primary is None or self._map_xy is None:
            return
        colour_by, method = self.colour_combo.currentText(), self.projection_combo.currentText()
        count = f"{method} of {len(self.primary.combined.paths):,} images"
        if colour_by == COLOUR_LABEL:
            combined = self.primary.combined
            self.map.set_colouring(combined.labels, combined.class_names, "label")
        elif colour_by == COLOUR_FOLDER:
            self.map.set_colouring(self.primary.folder_of, self.primary.folder_names, "folder")
        elif colour_by == COLOUR_TAG:
            groups, names = self.map_tags.groups()
            self.map.set_colouring(groups, names, "tag", ungrouped="untagged")
        else:
            k = self.clusters_spin.value()
            if self._clusters is None or self._clusters[0] != k:
                self.map_status.setText(f"{count} · finding {k} k-means clusters…")
                self._clusterer.request(_clustering_job, self.primary.combined, k)
                return
            self.map.set_colouring(self._clusters[1], [f"cluster {i + 1}" for i in range(k)], f"k-means, k = {k}")
        self.map_status.setText(f"{count} · click a point for its neighbours")

    @Slot(object)
    def _clustered(self, result) -> None:
        combined, k, clusters = result
        if self.primary is None or combined is not self.primary.combined:
            return
        self._clusters = (k, clusters)
        self._apply_colouring()

    @Slot()
    def _tags_changed(self) -> None:
        if self.colour_combo.currentText() == COLOUR_TAG:
            self._apply_colouring()

    @Slot(str)
    def _map_job_failed(self, message: str) -> None:
        self.map_status.setText(f"failed: {message}")
        self.show_error(message)

    def _update_colour_controls(self) -> None:
        self.clusters_spin.setVisible(self.colour_combo.currentText() == COLOUR_CLUSTER)
        if self.primary is not None and self.colour_combo.currentText() == COLOUR_LABEL \
                and not self.primary.combined.has_labels:
            # unlabelled images are all grey by label: clusters say more (or folders, when several)
            with QSignalBlocker(self.colour_combo):
                self.colour_combo.setCurrentText(COLOUR_FOLDER if len(self.primary.folders) > 1 else COLOUR_CLUSTER)
            self.clusters_spin.setVisible(self.colour_combo.currentText() == COLOUR_CLUSTER)

    @Slot(int)
    def _point_clicked(self, index: int) -> None:
        self.neighbours.show_neighbours_of(index)

    @Slot(object)
    def _neighbours_shown(self, indices: np.ndarray) -> None:
        if self.primary is None:
            return
        self.map.highlight(indices)
        if len(indices) and self.neighbours.query_index is not None:
            name = os.path.basename(self.neighbours.query_path)
            self.map_status.setText(f"{len(indices)} neighbours of {name} ringed")
            self.map_status.setToolTip(f"{self.neighbours.query_path}: its {len(indices)} nearest images are "
                                       "ringed; the Neighbours tab shows them")

    # -- exports ----------------------------------------------------------------------
    def export_embeddings(self, path: str) -> None:
        """The chosen model's embeddings of every opened folder (.npz or .csv), written off the UI thread."""
        self.status.setText(f"writing {path}…")
        self._exporter.request(save_embeddings, self.primary.combined, path)

    def export_selection(self, path: str) -> None:
        """The map's selected images as a CSV list (path, label, class)."""
        self._exporter.request(save_selection_csv, path, self.primary.combined, self.map.selected())

    def copy_selection(self, folder: str) -> None:
        """The map's selected images copied into `folder` (by class where labelled), off the UI thread."""
        self.status.setText(f"copying {len(self.map.selected()):,} images into {folder}…")
        self._exporter.request(_copied_into, self.primary.combined, self.map.selected(), folder)

    def exporting(self) -> bool:
        return self._exporter.busy() or self.neighbours.exporting()

    @Slot(object)
    def _exported(self, path: str) -> None:
        self.show_notice(f"wrote {path}")

    @Slot()
    def _update_export_menu(self) -> None:
        embedded = self.primary is not None
        self.export_embeddings_action.setEnabled(embedded)
        self.export_map_action.setEnabled(self._map_xy is not None)
        self.export_neighbours_action.setEnabled(len(self.neighbours.indices) > 0)
        self.export_all_neighbours_action.setEnabled(embedded)
        self.export_duplicates_action.setEnabled(self.duplicates.pairs is not None and len(self.duplicates.pairs) > 0)
        self.export_accuracy_action.setEnabled(bool(self.accuracy.reports))
        selected = embedded and len(self.map.selected()) > 0
        self.export_selection_action.setEnabled(selected)
        self.copy_selection_action.setEnabled(selected)

    @Slot()
    def _export_selection_clicked(self) -> None:
        path = save_file(self, "Export the selected images' list", "selection.csv", "CSV (*.csv)")
        if path:
            self.export_selection(path)

    @Slot()
    def _copy_selection_clicked(self) -> None:
        folder = existing_folder(self, "Copy the selected images into")
        if folder:
            self.copy_selection(folder)

    @Slot()
    def _export_embeddings_clicked(self) -> None:
        path = save_file(self, "Export embeddings", "embeddings.npz", "NumPy archive (*.npz);;CSV (*.csv)")
        if path:
            self.export_embeddings(path)

    @Slot()
    def _export_map_clicked(self) -> None:
        path = save_file(self, "Export the map", "map.png", "PNG (*.png)")
        if not path:
            return
        try:
            self.map.save_png(path)
        except (OSError, UserError) as error:
            self.show_error(f"cannot write {path}: {error}")
            return
        self.show_notice(f"wrote {path}")

    @Slot()
    def _export_neighbours_clicked(self) -> None:
        self.neighbours._export_query_clicked()

    @Slot()
    def _export_all_neighbours_clicked(self) -> None:
        self.neighbours._export_all_clicked()

    @Slot()
    def _export_duplicates_clicked(self) -> None:
        self.duplicates._export_clicked()

    @Slot()
    def _export_accuracy_clicked(self) -> None:
        self.accuracy._export_clicked()

    # -- messages, state, shutdown ----------------------------------------------------
    @Slot(str)
    def show_notice(self, text: str) -> None:
        self.status.setText(text)

    @Slot(str)
    def show_error(self, text: str) -> None:
        """One line in the status line and in a message box that does not block the window."""
        line = text.strip().splitlines()[0] if text.strip() else "failed"
        self.last_error = line
        self.status.setText(line)
        if self._message_box is not None:
            self._message_box.close()
        self._message_box = QMessageBox(QMessageBox.Icon.Warning, "Evaluate", line, parent=self)
        self._message_box.setObjectName("evaluate_message")
        self._message_box.open()

    def _update_enabled(self) -> None:
        running = self.worker is not None
        self.embed_button.setEnabled(not running and self.wanted_key() is not None)
        self.export_button.setEnabled(self.primary is not None)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._embed_when_shown:
            self.embed()

    def shutdown(self) -> None:
        """Stop the embedding and wait for every job: nothing may keep a thread running."""
        self.embed_timer.stop()
        self.poll_timer.stop()
        self._restart_when_stopped = False
        if self.worker is not None:
            self.worker.cancel()
            self.worker.wait()
            self.worker = None
        for job in (self._checkpoint_opener, self._projector, self._clusterer, self._exporter):
            job.shutdown()
        for view in (self.neighbours, self.duplicates, self.label_check, self.accuracy):
            view.shutdown()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)


def same_path(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    return bool(first) and bool(second) and os.path.abspath(first) == os.path.abspath(second)


def _projection_job(combined, method: str):
    return combined, method, project_2d(combined.features, method)


def _clustering_job(combined, k: int):
    return combined, k, kmeans_clusters(combined.features, k)
