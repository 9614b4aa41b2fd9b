"""Tags on the map's images: tag or untag the selection, show only one tag's images.

`MapTags` owns three controls the Evaluate panel places: "Tag…" and "Untag" beside the map's
selection, and a "Show" filter among the map's controls. Tags are kept per folder beside the
embedding cache (`ssl_engine.eval.tags`) and saved at each change, so they are there the next
time the folder is opened, with any model. A colouring by tag is `groups()`.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QSignalBlocker, Signal, Slot
from PySide6.QtWidgets import QComboBox, QInputDialog, QMenu, QPushButton

from ssl_engine.errors import UserError
from ssl_engine.eval.tags import ImageTags, checked_tag

# The Show box's entries hold what they show: a tag, SHOW_UNTAGGED ("", which no tag can be) or
# None for all images.
SHOW_UNTAGGED = ""


class MapTags(QObject):
    """Tagging of an EmbeddingMap's selection. `changed` fires when the tags change (to recolour);
    `notice` and `error` carry one line for the status line."""

    changed = Signal()
    notice = Signal(str)
    error = Signal(str)

    def __init__(self, embedding_map, cache_dir: str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.map, self.cache_dir = embedding_map, cache_dir
        self.tags: ImageTags | None = None
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
        self._fill_show_combo()
        self._update_enabled()

    def set_images(self, roots: list[str], paths: list[str], folder_of: np.ndarray) -> None:
        """The images the map will show (rows of an embedding of the folders `roots`); their tags
        are read. The owner calls `apply_filter` once the map has these points."""
        self.tags = None
        try:
            self.tags = ImageTags.load(roots, paths, folder_of, self.cache_dir)
        except UserError as problem:
            self.error.emit(str(problem))
        self._fill_show_combo()
        self._update_enabled()

    def clear(self) -> None:
        self.tags = None
        self._fill_show_combo()
        self.apply_filter()
        self._update_enabled()

    def names(self) -> list[str]:
        return self.tags.names() if self.tags is not None else []

    def groups(self) -> tuple[np.ndarray, list[str]]:
        """Each image's tag (its first, alphabetically; -1 untagged) and the tag names."""
        if self.tags is None:
            return np.full(len(self.map.shown()), -1, np.int64), []
        return self.tags.groups()

    def tag_selection(self, name: str) -> int:
        """Tag the map's selected images `name`; returns how many were newly tagged."""
        return self._change(name, adding=True)

    def untag_selection(self, name: str) -> int:
        """Remove the tag `name` from the map's selected images; returns how many carried it."""
        return self._change(name, adding=False)

    def _change(self, name: str, adding: bool) -> int:
        selected = self.map.selected()
        if self.tags is None or not len(selected):
            return 0
        try:
            tag = checked_tag(name)
            count = self.tags.add(tag, selected) if adding else self.tags.remove(tag, selected)
        except UserError as problem:
            self.error.emit(str(problem))
            return 0
        self._fill_show_combo()
        self.apply_filter()
        self._update_enabled()
        total = len(self.tags.rows(tag))
        done = "tagged" if adding else "untagged"
        self.notice.emit(f"{count:,} image{'s' if count != 1 else ''} {done} '{tag}' "
                         f"({total:,} carry it now)")
        self.changed.emit()
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
        tag = self.shown_tag()
        if self.tags is None or tag is None or len(self.map.shown()) != len(self.tags.paths):
            self.map.set_filter(None)
            return
        if tag == SHOW_UNTAGGED:
            shown = self.tags.groups()[0] < 0
        else:
            shown = np.zeros(len(self.tags.paths), bool)
            shown[self.tags.rows(tag)] = True
        self.map.set_filter(shown)

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
        selected = self.tags is not None and len(self.map.selected()) > 0
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
        if self.tags is None:
            return
        selected = self.map.selected()
        for name in self.names():
            carried = int(np.isin(selected, self.tags.rows(name)).sum())
            action = self.untag_menu.addAction(f"{name} ({carried:,} of the selected)")
            action.setEnabled(carried > 0)
            action.triggered.connect(lambda _=False, tag=name: self.untag_selection(tag))
