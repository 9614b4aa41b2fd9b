"""The Evaluate tab: what a trained model learned about the user's own image folders.

The tab is a view and controller of an `EvaluationSession` (ssl_engine.eval.session), which
holds the models, the folders, their embeddings and everything computed from them. A source bar
(`evaluate_sources`) picks the model (a finished run, a checkpoint file, or the random-init
floor), a second model to compare with, and one or more folders; embedding starts by itself
when they change (while the tab is on screen) and runs in an `EmbeddingThread` whose progress a
timer polls, and what it finishes is handed to the session. Five sub-tabs observe the session,
over every opened folder together:

- Map (`evaluate_map`): the embedding projected to 2-D, coloured by label, k-means cluster,
  folder or tag, as dots or thumbnails; clicking a point finds its neighbours and rings them;
  a selection can be tagged, and the map filtered to one tag.
- Neighbours: the nearest images of a clicked point or of an outside image.
- Duplicates: near-identical images at a threshold the user moves.
- Label check: images whose neighbours mostly carry another label.
- Accuracy: kNN and linear-probe accuracy of both models on the labelled folders.

Long work (projections, k-means, duplicates, accuracy, exports) runs off the UI thread through
`LatestCall`; every failure becomes one line in the status line (and a message box when the user
asked for something that cannot be done); the panel stays usable.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import QMessageBox, QTabWidget, QVBoxLayout, QWidget

from ssl_engine.errors import UserError
from ssl_engine.eval.embedded import EmbeddedFolders
from ssl_engine.eval.model_source import EvalModel, open_model
from ssl_engine.eval.session import EMBEDDINGS, FOLDERS, EvaluationSession

from ..evaluation_worker import EmbeddingThread, LatestCall
from ..file_dialogs import existing_folder, open_file
from .accuracy_view import AccuracyView
from .duplicates_view import DuplicatesView
from .evaluate_exports import ExportMenu
from .evaluate_map import MapTab
from .evaluate_sources import SourceBar
from .label_check_view import LabelCheckView
from .neighbours_view import NeighboursView

POLL_INTERVAL_MS = 100       # progress redraws 10 times a second
EMBED_DEBOUNCE_MS = 300      # wait for the user to finish choosing before embedding


class EvaluatePanel(QWidget):
    """The Evaluate tab. `folders_changed` carries the opened folders, for the window to remember."""

    folders_changed = Signal(object)   # list[str]

    def __init__(self, runs_dir: str = "runs", *, cache_dir: str | None = None, device: str = "auto", parent=None):
        super().__init__(parent)
        self.session = EvaluationSession(cache_dir=cache_dir, device=device)
        self.worker: EmbeddingThread | None = None
        self._worker_key: tuple | None = None           # what the running worker embeds
        self._shown_key: tuple | None = None            # what the views show (or are being fed)
        self._embed_when_shown = False
        self._restart_when_stopped = False
        self._message_box: QMessageBox | None = None
        self._opening_checkpoint = ""
        self.last_error = ""                            # the latest message shown, for scripts

        self._checkpoint_opener = LatestCall(self)
        self._checkpoint_opener.done.connect(self._checkpoint_opened)
        self._checkpoint_opener.failed.connect(self._checkpoint_refused)
        self.embed_timer = QTimer(self)
        self.embed_timer.setSingleShot(True)
        self.embed_timer.setInterval(EMBED_DEBOUNCE_MS)
        self.embed_timer.timeout.connect(self._embed_if_changed)
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(POLL_INTERVAL_MS)
        self.poll_timer.timeout.connect(self.poll)

        self.sources = SourceBar(self.session, runs_dir, self)
        self.sources.choices_changed.connect(self._schedule_embed)
        self.sources.open_checkpoint_requested.connect(self.open_checkpoint)
        self.sources.notice.connect(self.show_notice)
        self.sources.add_folder_button.clicked.connect(self._add_folder_clicked)
        self.sources.embed_button.clicked.connect(self._embed_clicked)
        self.sources.cancel_button.clicked.connect(self.cancel_embedding)
        self._build_tabs()
        self.export_menu = ExportMenu(self.session, self.map_tab, self.neighbours, self.duplicates, self.accuracy, self)
        self.sources.models_row.addWidget(self.export_menu.button)
        for source in (self.map_tab, self.neighbours, self.duplicates, self.label_check, self.accuracy,
                       self.export_menu):
            source.notice.connect(self.show_notice)
            source.error.connect(self.show_error)
        self.session.events.connect(FOLDERS, self._folders_changed)
        self.session.events.connect(EMBEDDINGS, self._embeddings_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self.sources.bar_layout)
        layout.addWidget(self.tabs, 1)
        self.refresh_runs()
        self._update_enabled()

    def _build_tabs(self) -> None:
        self.map_tab = MapTab(self.session)
        self.map = self.map_tab.map
        self.neighbours = NeighboursView(self.session)
        self.duplicates = DuplicatesView(self.session)
        self.label_check = LabelCheckView(self.session)
        self.accuracy = AccuracyView(self.session)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.map_tab, "Map")
        self.tabs.addTab(self.neighbours, "Neighbours")
        self.tabs.addTab(self.duplicates, "Duplicates")
        self.tabs.addTab(self.label_check, "Label check")
        self.tabs.addTab(self.accuracy, "Accuracy")

    # -- models -----------------------------------------------------------------------
    def set_runs_dir(self, runs_dir: str) -> None:
        if runs_dir != self.sources.runs_dir:
            self.sources.runs_dir = runs_dir
            self.refresh_runs()

    def refresh_runs(self, select: str | None = None) -> None:
        """List the runs with a checkpoint again; `select` (a run folder) becomes the chosen model."""
        self.sources.refresh_runs(select)

    def run_finished(self, run_dir: str) -> None:
        """A training run finished or stopped: list it and make it the chosen model."""
        self.refresh_runs(select=run_dir)

    @Slot()
    def open_checkpoint(self, path: str | None = None) -> None:
        """Open a checkpoint file or run folder (a file dialog when no path is given), checked off
        the UI thread; a file that is not a safe checkpoint is refused with one message."""
        if not path:
            path = open_file(self, "Open checkpoint", "Checkpoints (*.pt);;All files (*)", self.sources.runs_dir)
        if not path:
            return
        self.show_notice(f"opening {path}…")
        self._opening_checkpoint = path
        self._checkpoint_opener.request(open_model, path)

    @Slot(object)
    def _checkpoint_opened(self, model: EvalModel) -> None:
        self.session.models.opened_by_hand(model)
        self.show_notice(f"opened {model.source}")
        self.refresh_runs(select=model.source)

    @Slot(str)
    def _checkpoint_refused(self, message: str) -> None:
        name = os.path.basename(self._opening_checkpoint)
        self.show_error(message if name in message else f"cannot open {name}: {message}")

    # -- folders ----------------------------------------------------------------------
    def add_folder(self, folder: str | None = None) -> None:
        if not folder:
            start = self.session.folders[-1] if self.session.folders else ""
            folder = existing_folder(self, "Add a folder of images", start)
        if not folder:
            return
        folder = os.path.abspath(folder)
        if not os.path.isdir(folder):
            self.show_error(f"{folder} is not a folder")
            return
        if folder not in self.session.folders:
            self.set_folders([*self.session.folders, folder])

    @Slot()
    def _add_folder_clicked(self) -> None:
        self.add_folder()

    def set_folders(self, folders: list[str]) -> None:
        """The folders to evaluate, in order (the window restores the last session's with this)."""
        self.session.set_folders(folders)

    def _folders_changed(self) -> None:
        self.folders_changed.emit(list(self.session.folders))
        self._schedule_embed()

    # -- embedding --------------------------------------------------------------------
    @Slot()
    def _schedule_embed(self) -> None:
        self.session.choose(self.sources.model_choice(), self.sources.compare_choice())
        self.embed_timer.start()
        self._update_enabled()

    @Slot()
    def _embed_if_changed(self) -> None:
        if self.session.wanted() != self._shown_key:
            self.embed()

    def embed(self) -> None:
        """Embed the folders with the chosen model(s) (waits until the tab is on screen)."""
        self.embed_timer.stop()
        if not self.isVisible():
            self._embed_when_shown = True
            return
        self._embed_when_shown = False
        key = self.session.wanted()
        if self.worker is not None:
            if key != self._worker_key:   # stop the old job; this one starts when it has ended
                self._restart_when_stopped = True
                self.worker.cancel()
            return
        self._show_embeddings(None, None)
        self._shown_key = key
        if key is None:
            self.show_notice("add a folder of images" if self.session.model_choice else "choose a model")
            self._update_enabled()
            return
        choices = [key[0]] + ([key[1]] if key[1] is not None else [])
        loaded = self.session.models.for_choices(choices)
        self.session.models.keep_only(loaded.values())
        self.worker = EmbeddingThread(choices, list(self.session.folders), loaded=loaded,
                                      cache_dir=self.session.cache_dir, device=self.session.device)
        self.worker.finished.connect(self._embedding_finished)
        self._worker_key = key
        self.worker.start()
        self.show_notice(f"opening {key[0].label}…")
        progress = self.sources.progress
        progress.setRange(0, 0)
        progress.setFormat("")
        progress.show()
        self.sources.cancel_button.show()
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
                or self.map_tab.busy())

    @Slot()
    def cancel_embedding(self) -> None:
        if self.worker is not None:
            self._restart_when_stopped = False
            self.worker.cancel()
            self.show_notice("cancelling…")

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
            progress = self.sources.progress
            progress.setRange(0, state.total)
            progress.setValue(state.done)
            progress.setFormat(f"{state.done:,} / {state.total:,} · {state.images_per_second:,.0f} img/s")
            self.show_notice(f"embedding {where}")
        if self.session.primary is None and state.ready(0, folder_count):
            self._show_embeddings(self._embedded(state, 0), self.session.compared)
        if len(choices) > 1 and self.session.compared is None and state.ready(1, folder_count):
            self._show_embeddings(self.session.primary, self._embedded(state, 1))

    def _embedded(self, state, model_index: int) -> EmbeddedFolders:
        folders = [state.finished[(model_index, f)] for f in range(len(self.worker.folders))]
        return EmbeddedFolders(state.models[model_index], folders)

    def _show_embeddings(self, primary: EmbeddedFolders | None, compared: EmbeddedFolders | None) -> None:
        """Hand the session new embeddings; the tags of new chosen ones are read from their folders."""
        primary_changed = primary is not self.session.primary
        self.session.set_embeddings(primary, compared)
        if primary_changed:
            try:
                self.session.load_tags()
            except UserError as problem:
                self.show_error(str(problem))

    @Slot()
    def _embedding_finished(self) -> None:
        if self.worker is None:   # shut down already: `shutdown` waited for it
            return
        self.poll()
        worker, self.worker = self.worker, None
        worker.wait()
        self.poll_timer.stop()
        self.sources.progress.hide()
        self.sources.cancel_button.hide()
        if self._restart_when_stopped:
            self._restart_when_stopped = False
            self._shown_key = None
            self.embed()
            return
        status = self.sources.status
        if worker.error:
            self._shown_key = None   # "Embed" tries again
            self.show_error(worker.error)
        elif worker.cancelled:
            self._shown_key = None
            shown = " (the chosen model's images are shown)" if self.session.primary is not None else ""
            status.setText(f"{worker.cancel_message or 'embedding cancelled'}{shown}: Embed resumes")
        else:
            status.setText(self._embedded_summary())
            status.setToolTip(status.text())  # the line may be cut at the window's edge
        self._update_enabled()

    def _embedded_summary(self) -> str:
        primary, compared = self.session.primary, self.session.compared
        combined = primary.combined
        folders = len(primary.folders)
        reused = f" ({combined.reused:,} from the cache)" if combined.reused else ""
        where = f"{folders} folders" if folders > 1 else os.path.basename(combined.root)
        compared = f", and with {compared.model.name}" if compared is not None else ""
        return (f"{len(combined.paths):,} images of {where} embedded at {primary.model.image_size} px (the model's "
                f"size) with {primary.model.name}{reused}{compared}")

    def _embeddings_changed(self) -> None:
        """The Accuracy and Label check tabs need a labelled folder (while nothing is embedded, they say so)."""
        allowed = bool(self.session.protocols()) or self.session.primary is None
        self.tabs.setTabEnabled(self.tabs.indexOf(self.accuracy), allowed)
        self.tabs.setTabEnabled(self.tabs.indexOf(self.label_check), allowed)
        self._update_enabled()

    # -- messages, state, shutdown ----------------------------------------------------
    @Slot(str)
    def show_notice(self, text: str) -> None:
        self.sources.status.setText(text)

    @Slot(str)
    def show_error(self, text: str) -> None:
        """One line in the status line and in a message box that does not block the window."""
        line = text.strip().splitlines()[0] if text.strip() else "failed"
        self.last_error = line
        self.sources.status.setText(line)
        if self._message_box is not None:
            self._message_box.close()
        self._message_box = QMessageBox(QMessageBox.Icon.Warning, "Evaluate", line, parent=self)
        self._message_box.setObjectName("evaluate_message")
        self._message_box.open()

    def _update_enabled(self) -> None:
        self.sources.embed_button.setEnabled(self.worker is None and self.session.wanted() is not None)
        self.export_menu.button.setEnabled(self.session.primary is not None)

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
        self._checkpoint_opener.shutdown()
        for part in (self.map_tab, self.export_menu, self.neighbours, self.duplicates, self.label_check,
                     self.accuracy):
            part.shutdown()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
