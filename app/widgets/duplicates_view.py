"""The Evaluate tab's Duplicates view: groups of near-identical images at a threshold the user moves.

The pairs are searched when the view is first on screen for an embedding (comparing every image
with every other is the costliest of the views on a large folder), then again when the slider moves.
Moving the slider recomputes off the UI thread once the slider rests (debounced); only the
latest threshold's pairs reach the evaluation session, whose duplicates this view shows. Each
group is one row: a strip of its thumbnails, its size, the range of similarities inside it and
its paths. Only the first groups get a picture, so a folder with thousands of duplicates does
not turn into thousands of pixmaps.
"""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QSlider, QVBoxLayout, QWidget)

from ssl_engine.eval.neighbours import THRESHOLD_QUANTILE, DuplicatePairs
from ssl_engine.eval.results import MIN_DUPLICATE_THRESHOLD, Duplicates, find_duplicates
from ssl_engine.eval.session import DUPLICATES, PRIMARY, EvaluationSession

from ..evaluation_worker import LatestCall
from ..file_dialogs import export_to_file
from .image_grid import thumbnail_strip

SLIDER_STEPS_PER_UNIT = 1000       # the slider moves in steps of 0.001
DEFAULT_THRESHOLD = 0.95            # shown before a folder's own threshold is known
CONFLICT_COLOUR = "#d9534f"
DEBOUNCE_MS = 250
GROUPS_SHOWN = 200                 # rows listed; the export holds every pair
THUMBNAILS_PER_GROUP = 8           # pictures in a group's strip
PATHS_PER_GROUP = 4                # paths written in a row (all of them in its tooltip)
THUMBNAIL_SIDE = 56


def group_similarity_ranges(pairs: DuplicatePairs, groups: list[list[int]]) -> list[tuple[float, float]]:
    """(lowest, highest) similarity among the pairs that link each group."""
    group_of = {row: g for g, group in enumerate(groups) for row in group}
    lowest, highest = np.full(len(groups), np.inf), np.full(len(groups), -np.inf)
    for first, similarity in zip(pairs.first.tolist(), pairs.similarity.tolist()):
        g = group_of[first]
        lowest[g], highest[g] = min(lowest[g], similarity), max(highest[g], similarity)
    return list(zip(lowest.tolist(), highest.tolist()))


def label_conflict(embedding, group: list[int]) -> list[str] | None:
    """The class folders a group's images come from, when there are several (the same image
    filed under two labels), else None."""
    labels = sorted({int(embedding.labels[row]) for row in group} - {-1})
    if len(labels) < 2:
        return None
    return [embedding.class_names[label] for label in labels]


class DuplicatesView(QWidget):
    """Near-duplicate groups of the session's chosen embeddings; `notice` and `error` are one
    line each for the user."""

    notice = Signal(str)
    error = Signal(str)

    def __init__(self, session: EvaluationSession, parent=None):
        super().__init__(parent)
        self.session = session
        self._finder = LatestCall(self)
        self._finder.done.connect(self._pairs_found)
        self._finder.failed.connect(self._failed)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.recompute)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(int(MIN_DUPLICATE_THRESHOLD * SLIDER_STEPS_PER_UNIT), SLIDER_STEPS_PER_UNIT)
        self.slider.setSingleStep(1)
        self.slider.setPageStep(10)
        self.slider.setValue(int(DEFAULT_THRESHOLD * SLIDER_STEPS_PER_UNIT))
        self.slider.setToolTip("pairs of images at least this similar count as near-duplicates: the cosine similarity "
                                  "of their features after subtracting the folder's mean feature (copies score 1, "
                                  "unrelated images about 0)")
        self.slider.valueChanged.connect(self._threshold_moved)
        self.slider.valueChanged.connect(self._chosen_by_user)
        self.user_threshold = False  # until the user moves it, each embedding gets its own suggestion
        self.suggested: float | None = None  # the folder's own threshold, once found
        self.threshold_label = QLabel()
        self.threshold_label.setMinimumWidth(self.threshold_label.fontMetrics().horizontalAdvance("0.000") + 8)
        self.summary = QLabel("no images embedded yet")
        self.summary.setWordWrap(True)  # a long summary wraps instead of widening the window
        self.export_button = QPushButton("Export duplicates…")
        self.export_button.clicked.connect(self.export_to_chosen_file)
        self.list = QListWidget()
        self.list.setIconSize(QSize(THUMBNAILS_PER_GROUP * (THUMBNAIL_SIDE + 2), THUMBNAIL_SIDE))
        self.list.setAlternatingRowColors(True)
        self.list.setWordWrap(False)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Similarity at least"))
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.threshold_label)
        controls.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.summary)
        layout.addWidget(self.list, 1)
        session.events.connect(PRIMARY, self._primary_changed)
        session.events.connect(DUPLICATES, self._show_duplicates)
        self._threshold_moved()

    def threshold(self) -> float:
        return self.slider.value() / SLIDER_STEPS_PER_UNIT

    def set_threshold(self, threshold: float) -> None:
        self.slider.setValue(round(threshold * SLIDER_STEPS_PER_UNIT))

    @Slot()
    def _chosen_by_user(self) -> None:
        self.user_threshold = True

    def _primary_changed(self) -> None:
        self.suggested = None
        self.list.clear()
        self._finder.drop()
        self.summary.setText("no images embedded yet" if self.session.primary is None else "")
        if self.session.primary is not None and self.isVisible():
            self.recompute()
        self._update_enabled()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.session.primary is not None and self.session.duplicates is None and not self.computing():
            self.recompute()

    def computing(self) -> bool:
        return self._debounce.isActive() or self._finder.busy()

    @Slot()
    def recompute(self) -> None:
        self._debounce.stop()
        if self.session.primary is None:
            return
        if self.user_threshold:
            self.summary.setText(f"finding pairs at similarity ≥ {self.threshold():.3f}…")
        else:
            self.summary.setText("finding this folder's threshold and its pairs…")
        self._finder.request(find_duplicates, self.session.primary.combined,
                             self.threshold() if self.user_threshold else None)
        self._update_enabled()

    def export(self, path: str) -> str:
        return self.session.exports.duplicates(path)()

    def shutdown(self) -> None:
        self._debounce.stop()
        self._finder.shutdown()

    @Slot()
    def _threshold_moved(self) -> None:
        self.threshold_label.setText(f"{self.threshold():.3f}")
        if self.session.primary is not None and self.isVisible():
            self._debounce.start()

    @Slot(object)
    def _pairs_found(self, found: Duplicates) -> None:
        if found.suggested and self.user_threshold:
            return  # the user moved the slider meanwhile: their threshold's pairs are on the way
        self.session.accept(found)

    def _show_duplicates(self) -> None:
        found = self.session.duplicates
        if found.suggested:
            self.suggested = found.threshold
            self.slider.blockSignals(True)  # not the user's choice: the next embedding gets its own
            self.set_threshold(found.threshold)
            self.slider.blockSignals(False)
            self.threshold_label.setText(f"{self.threshold():.3f}")
        more = " (the most similar kept; raise the threshold to see all)" if found.pairs.truncated else ""
        pairs = f"{len(found.pairs):,} pair{'s' if len(found.pairs) != 1 else ''}"
        groups = f"{len(found.groups):,} group{'s' if len(found.groups) != 1 else ''}"
        conflicts = sum(label_conflict(found.embedding, group) is not None for group in found.groups)
        conflict_text = (f"; {conflicts:,} group{'s' if conflicts != 1 else ''} mix class folders (a label "
                         f"conflict)" if conflicts else "")
        why = " (this folder's own threshold)" if found.suggested else ""
        self.summary.setText(f"{pairs} in {groups} at similarity ≥ {found.threshold:.3f}{why} among "
                             f"{len(found.embedding.paths):,} images{more}{conflict_text}")
        self.summary.setToolTip(f"the folder's own threshold: {1 - THRESHOLD_QUANTILE:.1%} of its images have a "
                                f"neighbour at least this similar; move the slider to see more or fewer"
                                if found.suggested else "")
        self._list_groups(found)
        self._update_enabled()

    @Slot(str)
    def _failed(self, message: str) -> None:
        self.summary.setText(f"cannot find duplicates: {message}")
        self.error.emit(f"cannot find duplicates: {message}")
        self._update_enabled()

    def _list_groups(self, found: Duplicates) -> None:
        self.list.clear()
        embedding = found.embedding
        ranges = group_similarity_ranges(found.pairs, found.groups)
        for number, (group, (lowest, highest)) in enumerate(zip(found.groups[:GROUPS_SHOWN], ranges), start=1):
            picture = thumbnail_strip(embedding.thumbnails, group[:THUMBNAILS_PER_GROUP], THUMBNAIL_SIDE)
            similarity = f"{highest:.3f}" if np.isclose(lowest, highest) else f"{lowest:.3f}–{highest:.3f}"
            paths = [embedding.paths[row] for row in group]
            shown = [os.path.basename(path) for path in paths[:PATHS_PER_GROUP]]
            more = f", … {len(paths) - PATHS_PER_GROUP} more" if len(paths) > PATHS_PER_GROUP else ""
            conflict = label_conflict(embedding, group)
            flag = f" · label conflict: {', '.join(conflict)}" if conflict else ""
            item = QListWidgetItem(picture, f"group {number} · {len(group)} images · similarity {similarity}{flag}\n"
                                            f"{', '.join(shown)}{more}")
            item.setToolTip("\n".join(paths))
            if conflict:
                item.setForeground(QColor(CONFLICT_COLOUR))
            item.setData(Qt.ItemDataRole.UserRole, group)
            self.list.addItem(item)
        if len(found.groups) > GROUPS_SHOWN:
            self.list.addItem(f"… {len(found.groups) - GROUPS_SHOWN:,} more groups: export them to see all")

    def _update_enabled(self) -> None:
        found = self.session.duplicates
        self.export_button.setEnabled(found is not None and len(found.pairs) > 0 and not self.computing())

    @Slot()
    def export_to_chosen_file(self) -> None:
        export_to_file(self, "Export duplicates", "duplicates.csv", "CSV (*.csv)", self.export, self.notice, self.error)
