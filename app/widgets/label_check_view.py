"""The Evaluate tab's Label check: images of a labelled folder whose nearest neighbours mostly
carry another label (`ssl_engine.eval.label_check`), most suspicious first, each with its
neighbours' thumbnails, so that a picture filed in the wrong class folder is found by looking.

Searched off the UI thread when the view is first on screen for an embedding, and kept by the
evaluation session, which this view observes; only the first rows get a picture, as in the
Duplicates view.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from ssl_engine.eval.folder_embedding import class_name_of
from ssl_engine.eval.label_check import NEIGHBOURS
from ssl_engine.eval.results import check_labels
from ssl_engine.eval.session import LABEL_CHECK, PRIMARY, EvaluationSession

from ..evaluation_worker import LatestCall
from ..file_dialogs import export_to_file
from .image_grid import thumbnail_strip

ROWS_SHOWN = 200
NEIGHBOURS_SHOWN = 8
THUMBNAIL_SIDE = 56


class LabelCheckView(QWidget):
    """The session's label check of its chosen embeddings; `notice` and `error` are one line each for the user."""

    notice = Signal(str)
    error = Signal(str)

    def __init__(self, session: EvaluationSession, parent=None):
        super().__init__(parent)
        self.session = session
        self._finder = LatestCall(self)
        self._finder.done.connect(self._found)
        self._finder.failed.connect(self._failed)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(3, 50)
        self.k_spin.setValue(NEIGHBOURS)
        self.k_spin.setPrefix("neighbours: ")
        self.k_spin.setToolTip("how many nearest images vote on each image's label")
        self.k_spin.valueChanged.connect(self.recompute)
        self.summary = QLabel("no images embedded yet")
        self.summary.setWordWrap(True)
        self.export_button = QPushButton("Export list…")
        self.export_button.clicked.connect(self.export_to_chosen_file)
        self.list = QListWidget()
        self.list.setIconSize(QSize((NEIGHBOURS_SHOWN + 1) * (THUMBNAIL_SIDE + 2) + 8, THUMBNAIL_SIDE))
        self.list.setAlternatingRowColors(True)
        self.list.setWordWrap(True)
        controls = QHBoxLayout()
        controls.addWidget(self.k_spin)
        controls.addStretch(1)
        controls.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.summary)
        layout.addWidget(self.list, 1)
        session.events.connect(PRIMARY, self._primary_changed)
        session.events.connect(LABEL_CHECK, self._show_suspects)
        self._update_enabled()

    def _embedding(self):
        """The chosen model's embeddings of the folders, None before there are any."""
        return self.session.primary.combined if self.session.primary is not None else None

    def _primary_changed(self) -> None:
        embedding = self._embedding()
        self.list.clear()
        self._finder.drop()
        if embedding is None:
            self.summary.setText("no images embedded yet")
        elif not embedding.has_labels:
            self.summary.setText("the label check needs a labelled folder (one subfolder per class)")
        elif self.isVisible():
            self.recompute()
        self._update_enabled()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        embedding = self._embedding()
        if embedding is not None and embedding.has_labels and self.session.label_check is None \
                and not self._finder.busy():
            self.recompute()

    def computing(self) -> bool:
        return self._finder.busy()

    @Slot()
    def recompute(self) -> None:
        embedding = self._embedding()
        if embedding is None or not embedding.has_labels:
            return
        self.summary.setText("looking for images whose neighbours carry another label…")
        self._finder.request(check_labels, embedding, self.k_spin.value())
        self._update_enabled()

    def export(self, path: str) -> str:
        return self.session.exports.label_check(path)()

    def shutdown(self) -> None:
        self._finder.shutdown()

    @Slot(object)
    def _found(self, found) -> None:
        self.session.accept(found)

    def _show_suspects(self) -> None:
        found = self.session.label_check
        labelled = int((found.embedding.labels >= 0).sum())
        self.summary.setText(
            f"{len(found.suspects):,} of {labelled:,} labelled images have most of their {found.k} "
            f"nearest images in another class: a wrong folder, an ambiguous picture, or classes the model does "
            f"not tell apart. Each row: the image, then its nearest images" if found.suspects else
            f"every one of {labelled:,} labelled images has most of its neighbours in its own class")
        self._list(found)
        self._update_enabled()

    @Slot(str)
    def _failed(self, message: str) -> None:
        self.summary.setText(f"cannot check the labels: {message}")
        self.error.emit(f"cannot check the labels: {message}")
        self._update_enabled()

    def _list(self, found) -> None:
        self.list.clear()
        embedding = found.embedding
        names, thumbnails = embedding.class_names, embedding.thumbnails
        for suspect in found.suspects[:ROWS_SHOWN]:
            rows = [suspect.row, *suspect.neighbours[:NEIGHBOURS_SHOWN].tolist()]
            picture = thumbnail_strip(thumbnails, rows, THUMBNAIL_SIDE)
            path = embedding.paths[suspect.row]
            votes = round(suspect.share * len(suspect.neighbours))
            item = QListWidgetItem(picture, f"{os.path.basename(path)} · filed as {names[suspect.label]}\n"
                                            f"{votes} of {len(suspect.neighbours)} neighbours are "
                                            f"{names[suspect.suggested]} (similarity {suspect.similarity:.2f})")
            item.setToolTip("\n".join([path, "its neighbours:"] +
                                      [f"{class_name_of(embedding, row)}: {embedding.paths[row]}"
                                       for row in suspect.neighbours.tolist()]))
            item.setData(Qt.ItemDataRole.UserRole, suspect.row)
            self.list.addItem(item)
        if len(found.suspects) > ROWS_SHOWN:
            self.list.addItem(f"… {len(found.suspects) - ROWS_SHOWN:,} more: export the list to see all")

    def _update_enabled(self) -> None:
        found = self.session.label_check
        self.export_button.setEnabled(found is not None and bool(found.suspects) and not self.computing())

    @Slot()
    def export_to_chosen_file(self) -> None:
        export_to_file(self, "Export possible label mistakes", "label_check.csv", "CSV (*.csv)", self.export,
                       self.notice, self.error)
