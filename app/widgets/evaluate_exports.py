"""The Evaluate tab's "Export ▾" menu: the embeddings, the map as a picture, the neighbours, the
duplicates, the accuracy table and the map's selected images (their list, or their files copied
into a folder).

What is written is the evaluation session's (`session.exports`); the long exports (embeddings,
the selection) run off the UI thread, the others in the views that hold their controls. Each
outcome is one line on `notice` ("wrote …") or `error`.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QMenu, QToolButton, QWidget

from ssl_engine.errors import UserError
from ssl_engine.eval.session import EvaluationSession

from ..evaluation_worker import LatestCall
from ..file_dialogs import existing_folder, save_file


class ExportMenu(QObject):
    """`button` opens the menu; `parent` (a widget) owns the file dialogs."""

    notice = Signal(str)
    error = Signal(str)

    def __init__(self, session: EvaluationSession, map_tab, neighbours, duplicates, accuracy, parent: QWidget):
        super().__init__(parent)
        self.session, self.map = session, map_tab.map
        self.neighbours, self.duplicates, self.accuracy = neighbours, duplicates, accuracy
        self._exporter = LatestCall(self)
        self._exporter.done.connect(self._exported)
        self._exporter.failed.connect(self.error)
        self.button = QToolButton()
        self.button.setText("Export ▾")
        # the style's own arrow overlaps the text of an instant-popup tool button: the text carries it
        self.button.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu = QMenu(self.button)
        self.menu.aboutToShow.connect(self.update_actions)
        self.embeddings_action = self.menu.addAction("Embeddings (.npz or .csv)…", self._embeddings_clicked)
        self.map_action = self.menu.addAction("Map as PNG…", self._map_clicked)
        self.neighbours_action = self.menu.addAction("Neighbours (CSV)…", neighbours.export_query_to_chosen_file)
        self.all_neighbours_action = self.menu.addAction("Every image's neighbours (CSV)…",
                                                         neighbours.export_every_image_to_chosen_file)
        self.duplicates_action = self.menu.addAction("Duplicates (CSV)…", duplicates.export_to_chosen_file)
        self.accuracy_action = self.menu.addAction("Accuracy table (CSV)…", accuracy.export_to_chosen_file)
        self.menu.addSeparator()
        self.selection_action = self.menu.addAction("The map's selected images: file list (CSV)…",
                                                    self._selection_clicked)
        self.copy_action = self.menu.addAction("The map's selected images: copy into a folder…", self._copy_clicked)
        self.button.setMenu(self.menu)

    def export_embeddings(self, path: str) -> None:
        """The chosen model's embeddings of every opened folder (.npz or .csv), written off the UI thread."""
        self.notice.emit(f"writing {path}…")
        self._exporter.request(self.session.exports.embeddings(path))

    def export_selection(self, path: str) -> None:
        """The map's selected images as a CSV list (path, label, class)."""
        self._exporter.request(self.session.exports.selection_list(path, self.map.selected()))

    def copy_selection(self, folder: str) -> None:
        """The map's selected images copied into `folder` (by class where labelled), off the UI thread."""
        self.notice.emit(f"copying {len(self.map.selected()):,} images into {folder}…")
        self._exporter.request(self.session.exports.selection_copy(self.map.selected(), folder))

    def exporting(self) -> bool:
        return self._exporter.busy() or self.neighbours.exporting()

    def shutdown(self) -> None:
        self._exporter.shutdown()

    @Slot()
    def update_actions(self) -> None:
        """Each entry enabled when there is something to export."""
        embedded = self.session.primary is not None
        found, duplicates = self.session.neighbours, self.session.duplicates
        self.embeddings_action.setEnabled(embedded)
        self.map_action.setEnabled(self.session.projection is not None)
        self.neighbours_action.setEnabled(found is not None and len(found.indices) > 0)
        self.all_neighbours_action.setEnabled(embedded)
        self.duplicates_action.setEnabled(duplicates is not None and len(duplicates.pairs) > 0)
        self.accuracy_action.setEnabled(self.session.accuracy is not None and bool(self.session.accuracy.reports))
        selected = embedded and len(self.map.selected()) > 0
        self.selection_action.setEnabled(selected)
        self.copy_action.setEnabled(selected)

    @Slot(object)
    def _exported(self, path: str) -> None:
        self.notice.emit(f"wrote {path}")

    @Slot()
    def _selection_clicked(self) -> None:
        path = save_file(self.parent(), "Export the selected images' list", "selection.csv", "CSV (*.csv)")
        if path:
            self.export_selection(path)

    @Slot()
    def _copy_clicked(self) -> None:
        folder = existing_folder(self.parent(), "Copy the selected images into")
        if folder:
            self.copy_selection(folder)

    @Slot()
    def _embeddings_clicked(self) -> None:
        path = save_file(self.parent(), "Export embeddings", "embeddings.npz", "NumPy archive (*.npz);;CSV (*.csv)")
        if path:
            self.export_embeddings(path)

    @Slot()
    def _map_clicked(self) -> None:
        path = save_file(self.parent(), "Export the map", "map.png", "PNG (*.png)")
        if not path:
            return
        try:
            self.map.save_png(path)
        except (OSError, UserError) as error:
            self.error.emit(f"cannot write {path}: {error}")
            return
        self.notice.emit(f"wrote {path}")
