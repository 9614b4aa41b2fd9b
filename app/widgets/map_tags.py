"""Tags on the map's images: tag or untag the selection, show only one tag's images.

`MapTags` owns three controls the map tab places: "Tag…" and "Untag" beside the map's
selection, and a "Show" filter among the map's controls. The tags are the evaluation
session's (`ssl_engine.eval.tags`, kept per folder beside the embedding cache and saved at each
change, so they are there the next time the folder is opened, with any model); this view
observes them.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QSignalBlocker, Signal, Slot
from PySide6.QtWidgets import QComboBox, QInputDialog, QMenu, QPushButton

from ssl_engine.errors import UserError
from ssl_engine.eval.session import TAGS, EvaluationSession
from ssl_engine.eval.tags import checked_tag

# The Show box's entries hold what they show: a tag, SHOW_UNTAGGED ("", which no tag can be) or
# None for all images.
SHOW_UNTAGGED = ""


class MapTags(QObject):
    """Tagging of an EmbeddingMap's selection with the session's tags; `notice` and `error`
    carry one line for the status line."""

    notice = Signal(str)
    error = Signal(str)

    def __init__(self, session: EvaluationSession, embedding_map, parent: QObject | None = None):
        super().__init__(parent)
        self.session, self.map = session, embedding_map
        self.tag_button = QPushButton("Tag…", toolTip="Give the selected images a tag (kept beside the "
                                                      "embedding cache, there the next time the folder is opened)")
        self.tag_button.clicked.connect(self._tag_clicked)
        self.untag_menu = QMenu()
        self.untag_menu.aboutToShow.connect(self._fill_untag_menu)
        self.untag_button = QPushButton("Untag", toolTip="Remove a tag from the selected images")
        self.untag_button.setMenu(self.untag_menu)
        self.show_combo = QComboBox(toolTip="Show all images, or only those with a tag (the others cannot be "
                                            "hovered or selected)")
        self.show_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.show_combo.currentIndexChanged.connect(self.apply_filter)
        self.map.selection_changed.connect(self._update_enabled)
        session.events.connect(TAGS, self._tags_changed)
        self._fill_show_combo()
        self._update_enabled()

    def names(self) -> list[str]:
        tags = self.session.tags
        return tags.names() if tags is not None else []

    def tag_selection(self, name: str) -> int:
        """Tag the map's selected images `name`; returns how many were newly tagged."""
        return self._change(name, adding=True)

    def untag_selection(self, name: str) -> int:
        """Remove the tag `name` from the map's selected images; returns how many carried it."""
        return self._change(name, adding=False)

    def _change(self, name: str, adding: bool) -> int:
        selected = self.map.selected()
        if self.session.tags is None or not len(selected):
            return 0
        try:
            tag = checked_tag(name)
            count = self.session.tag(tag, selected) if adding else self.session.untag(tag, selected)
        except UserError as problem:
            self.error.emit(str(problem))
            return 0
        total = len(self.session.tags.rows(tag))
        done = "tagged" if adding else "untagged"
        self.notice.emit(f"{count:,} image{'s' if count != 1 else ''} {done} '{tag}' "
                         f"({total:,} carry it now)")
        return count

    def shown_tag(self):
        """The tag the map is filtered to, SHOW_UNTAGGED, or None for all images."""
        return self.show_combo.currentData()

    def show_only(self, tag) -> None:
        """Filter the map to the images tagged `tag` (SHOW_UNTAGGED: the untagged ones; None: all)."""
        index = next((i for i in range(self.show_combo.count()) if self.show_combo.itemData(i) == tag), -1)
        if index < 0:
            raise ValueError(f"no such tag: {tag}")
        self.show_combo.setCurrentIndex(index)

    @Slot()
    def apply_filter(self) -> None:
        """Filter the map as the Show box says (again after the map got new points)."""
        tag, tags = self.shown_tag(), self.session.tags
        if tags is None or tag is None or len(self.map.shown()) != len(tags.paths):
            self.map.set_filter(None)
            return
        if tag == SHOW_UNTAGGED:
            shown = tags.groups()[0] < 0
        else:
            shown = np.zeros(len(tags.paths), bool)
            shown[tags.rows(tag)] = True
        self.map.set_filter(shown)

    def _tags_changed(self) -> None:
        """The tags of new images (read when the chosen model's embeddings change), or a change
        of them: the Show box's entries, and the filter once the map shows the session's images
        (the map tab applies it when their projection comes)."""
        self._fill_show_combo()
        if self.session.projection is not None:
            self.apply_filter()
        self._update_enabled()

    def _fill_show_combo(self) -> None:
        """All images, each tag, the untagged; keeps the choice while it still exists (the
        caller applies the filter)."""
        current = self.shown_tag()
        names = self.names()
        entries = [("all images", None)] + [(f"tagged '{name}'", name) for name in names]
        entries += [("untagged images", SHOW_UNTAGGED)] if names else []
        with QSignalBlocker(self.show_combo):
            self.show_combo.clear()
            for text, tag in entries:
                self.show_combo.addItem(text, tag)
            kept = [tag for _, tag in entries]
            self.show_combo.setCurrentIndex(kept.index(current) if current in kept else 0)
        self.show_combo.setEnabled(len(entries) > 1)

    @Slot()
    def _update_enabled(self, *_) -> None:
        selected = self.session.tags is not None and len(self.map.selected()) > 0
        self.tag_button.setEnabled(selected)
        self.untag_button.setEnabled(selected and bool(self.names()))

    @Slot()
    def _tag_clicked(self) -> None:
        count = len(self.map.selected())
        name, accepted = QInputDialog.getItem(self.tag_button.window(), "Tag the selection",
                                              f"Tag for the {count:,} selected image{'s' if count != 1 else ''}:",
                                              self.names(), 0, True)
        if accepted and name.strip():
            self.tag_selection(name)

    @Slot()
    def _fill_untag_menu(self) -> None:
        self.untag_menu.clear()
        tags = self.session.tags
        if tags is None:
            return
        selected = self.map.selected()
        for name in self.names():
            carried = int(np.isin(selected, tags.rows(name)).sum())
            action = self.untag_menu.addAction(f"{name} ({carried:,} of the selected)")
            action.setEnabled(carried > 0)
            action.triggered.connect(lambda _=False, tag=name: self.untag_selection(tag))
