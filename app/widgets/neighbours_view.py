"""The Evaluate tab's Neighbours view: an image and the images nearest to it in the opened folders.

The query is a point clicked on the map (an image of the folders, left out of its own
neighbours) or an outside image opened from disk and embedded off the UI thread. The
neighbours are the evaluation session's (one (N, D) x (D,) product, found in the UI thread);
this view observes them. For a ViT the query's class-token attention per head (last block) is
drawn over it, computed off the UI thread; the neighbours of every image, for the export,
run in the background.
"""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem, QMenu,
                               QPushButton, QSizePolicy, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from ssl_engine.eval.attention import has_attention, image_attention
from ssl_engine.eval.folder_embedding import class_name_of, embed_image_file
from ssl_engine.eval.model_source import EvalModel
from ssl_engine.eval.session import NEIGHBOURS, PRIMARY, EvaluationSession

from ..evaluation_worker import LatestCall
from ..file_dialogs import export_to_file, open_file, save_file
from .image_grid import ScaledPicture, mosaic, to_pixmap
from .overlays import attention_columns

QUERY_SIDE = 128      # pixels of the query image
ATTENTION_HEIGHT = 120  # pixels of the attention strip (the image, then one map per head)
NEIGHBOUR_SIDE = 96   # pixels of each neighbour's icon
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp);;All files (*)"


class NeighboursView(QWidget):
    """Shows the session's neighbours of one query (`k` of them); `notice` and `error` are one
    line each for the user."""

    notice = Signal(str)
    error = Signal(str)

    def __init__(self, session: EvaluationSession, parent=None):
        super().__init__(parent)
        self.session = session
        self._drawn_query: np.ndarray | None = None   # the feature of the query drawn, to tell a new one
        self._outside_image = LatestCall(self)
        self._outside_image.done.connect(self._outside_image_embedded)
        self._outside_image.failed.connect(self.error)
        self._attention = LatestCall(self)
        self._attention.done.connect(self._attention_computed)
        self._attention.failed.connect(self._attention_failed)
        self._export_all = LatestCall(self)
        self._export_all.done.connect(self._all_neighbours_written)
        self._export_all.failed.connect(self.error)

        self.query_picture = QLabel()
        self.query_picture.setFixedSize(QUERY_SIDE, QUERY_SIDE)
        self.query_picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.query_picture.setFrameShape(QLabel.Shape.StyledPanel)
        self.query_caption = QLabel("click a point on the map, or open an image")
        self.query_caption.setWordWrap(True)
        self.query_caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open image…")
        self.open_button.setToolTip("find the images of the folders nearest to an image from elsewhere")
        self.open_button.clicked.connect(self._open_image_clicked)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 200)
        self.k_spin.setValue(session.neighbour_count)
        self.k_spin.setPrefix("k = ")
        self.k_spin.setToolTip("how many neighbours to show")
        self.k_spin.valueChanged.connect(session.set_neighbour_count)
        self.export_button = QToolButton()
        self.export_button.setText("Export neighbours ▾")
        # the style's own arrow overlaps the text of an instant-popup tool button: the text carries it
        self.export_button.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        self.export_query_action = menu.addAction("This image's neighbours…", self.export_query_to_chosen_file)
        self.export_all_action = menu.addAction("Every image's neighbours…", self.export_every_image_to_chosen_file)
        self.export_button.setMenu(menu)
        self.attention_caption = QLabel()
        self.attention_caption.setWordWrap(True)
        self.attention_picture = ScaledPicture()
        self.attention_picture.setFixedHeight(ATTENTION_HEIGHT)
        # a Fixed height policy: with ScaledPicture's Ignored one the box layout sizes the strip by
        # its (zero) size hint, not its minimum, and the grid below covers it
        self.attention_picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.attention_picture.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.attention_picture.setToolTip("where the class token looks in the last block, one map per head "
                                          "(yellow: most attention); the patches as the ViT sees them")
        self.grid = QListWidget()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(NEIGHBOUR_SIDE, NEIGHBOUR_SIDE))
        self.grid.setGridSize(QSize(NEIGHBOUR_SIDE + 40, NEIGHBOUR_SIDE + 44))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setWordWrap(True)
        self.grid.setUniformItemSizes(True)
        self.grid.itemActivated.connect(self._neighbour_activated)

        controls = QVBoxLayout()
        controls.addWidget(self.query_caption)
        buttons = QHBoxLayout()
        for widget in (self.open_button, self.k_spin, self.export_button):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        controls.addLayout(buttons)
        controls.addStretch(1)
        header = QHBoxLayout()
        header.addWidget(self.query_picture)
        header.addLayout(controls, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.attention_caption)
        layout.addWidget(self.attention_picture)
        layout.addWidget(self.grid, 1)
        session.events.connect(PRIMARY, self._primary_changed)
        session.events.connect(NEIGHBOURS, self._show_neighbours)
        self._show_attention(None)
        self._update_enabled()

    # -- what the panel calls ------------------------------------------------------------
    @property
    def model(self) -> EvalModel | None:
        """The model whose embeddings are searched (None: nothing embedded yet)."""
        return self.session.primary.model if self.session.primary is not None else None

    def show_neighbours_of(self, index: int) -> None:
        """Query with the image at row `index` of the embedding."""
        self.session.query_image(index)

    def open_image(self, path: str | None = None) -> None:
        """Query with an outside image (a file dialog when no path is given), embedded off the UI thread."""
        if self.model is None:
            return
        if not path:
            path = open_file(self, "Open an image", IMAGE_FILTER)
        if not path:
            return
        self.query_caption.setText(f"embedding {path}…")
        self._outside_image.request(self._embed_outside, self.model, path)

    def export_query(self, path: str) -> str:
        """The neighbours on screen as CSV; an outside query is written as the last path."""
        return self.session.exports.neighbours(path)()

    def export_every_image(self, path: str) -> None:
        """Every image's `k` neighbours as CSV, computed and written off the UI thread."""
        self._export_all.request(self.session.exports.every_neighbour(path, self.k_spin.value()))

    def exporting(self) -> bool:
        return self._export_all.busy()

    def shutdown(self) -> None:
        self._outside_image.shutdown()
        self._attention.shutdown()
        self._export_all.shutdown()

    # -- jobs ----------------------------------------------------------------------------
    @staticmethod
    def _embed_outside(model: EvalModel, path: str):
        feature, thumbnail = embed_image_file(model, path)
        return path, feature, thumbnail

    @Slot(object)
    def _outside_image_embedded(self, result) -> None:
        self.session.query_outside(*result)

    def _request_attention(self, path: str) -> None:
        """The query's attention maps, computed off the UI thread, when the model is a ViT."""
        if self.model is not None and has_attention(self.model) and path:
            self.attention_caption.setText("computing the attention maps…")
            self._attention.request(image_attention, self.model, path)

    @Slot(object)
    def _attention_computed(self, result) -> None:
        self._show_attention(result)

    @Slot(str)
    def _attention_failed(self, message: str) -> None:
        self._show_attention(None)
        self.attention_caption.setText(f"no attention maps: {message}")
        self.attention_caption.setVisible(True)

    def _show_attention(self, result) -> None:
        """The strip of the query as the ViT sees it and one blended map per head, or nothing."""
        if result is None:
            self._set_strip_visible(False)
            return
        pixels, maps = result
        originals = pixels[None]
        self.attention_picture.set_picture(mosaic([originals, *attention_columns(originals, maps[None])]))
        self.attention_caption.setText(f"class-token attention of the last block, {len(maps)} heads "
                                       f"({maps.shape[-1]} x {maps.shape[-1]} patches)")
        self._set_strip_visible(True)

    def _set_strip_visible(self, visible: bool) -> None:
        for widget in (self.attention_caption, self.attention_picture):
            widget.setVisible(visible)

    @Slot(object)
    def _all_neighbours_written(self, path: str) -> None:
        self.notice.emit(f"wrote the neighbours of every image to {path}")

    # -- drawing -------------------------------------------------------------------------
    def _primary_changed(self) -> None:
        """Other images to search (or none): no query, and no job of the old model's."""
        self._outside_image.drop()
        self._attention.drop()
        self._show_attention(None)
        self._drawn_query = None
        self.query_picture.clear()
        self.query_caption.setText("click a point on the map, or open an image" if self.session.primary is not None
                                   else "no images embedded yet")
        self.grid.clear()
        self._update_enabled()

    def _show_neighbours(self) -> None:
        found = self.session.neighbours
        if found.query_feature is not self._drawn_query:   # a new query, not another k
            self._drawn_query = found.query_feature
            self._set_query_picture(found.query_thumbnail)
            self._request_attention(found.query_path)
        self.grid.clear()
        embedding = found.embedding
        if len(embedding.paths):
            where = "" if found.query_index is not None else " (an image from outside the folders)"
            own = class_name_of(embedding, found.query_index) if found.query_index is not None else ""
            self.query_caption.setText(f"{found.query_path}{where}" + (f" (class {own})" if own else "") +
                                       f"\nits {len(found.indices)} nearest images by cosine similarity")
            for index, similarity in zip(found.indices.tolist(), found.similarities.tolist()):
                self._add_neighbour(index, similarity)
        self._update_enabled()

    def _add_neighbour(self, index: int, similarity: float) -> None:
        embedding = self.session.neighbours.embedding
        path = embedding.paths[index]
        label = class_name_of(embedding, index)
        item = QListWidgetItem(to_pixmap(embedding.thumbnails[index]).scaled(
            NEIGHBOUR_SIDE, NEIGHBOUR_SIDE, Qt.AspectRatioMode.KeepAspectRatio),
            f"{similarity:.3f}" + (f" · {label}" if label else "") + f"\n{os.path.basename(path)}")
        item.setToolTip(f"{path}\n" + (f"class {label}\n" if label else "") +
                        f"cosine similarity {similarity:.4f}\n(double-click: its own neighbours)")
        item.setData(Qt.ItemDataRole.UserRole, index)
        self.grid.addItem(item)

    def _set_query_picture(self, thumbnail: np.ndarray) -> None:
        self.query_picture.setPixmap(to_pixmap(np.asarray(thumbnail)).scaled(
            QUERY_SIDE - 4, QUERY_SIDE - 4, Qt.AspectRatioMode.KeepAspectRatio))

    def _update_enabled(self) -> None:
        primary, found = self.session.primary, self.session.neighbours
        has_images = primary is not None and len(primary.combined.paths) > 0
        self.open_button.setEnabled(has_images)
        self.export_query_action.setEnabled(found is not None and len(found.indices) > 0)
        self.export_all_action.setEnabled(has_images)
        self.export_button.setEnabled(has_images)

    @Slot(QListWidgetItem)
    def _neighbour_activated(self, item: QListWidgetItem) -> None:
        self.show_neighbours_of(int(item.data(Qt.ItemDataRole.UserRole)))

    # -- buttons -------------------------------------------------------------------------
    @Slot()
    def _open_image_clicked(self) -> None:
        self.open_image()

    @Slot()
    def export_query_to_chosen_file(self) -> None:
        query = self.session.neighbours
        name = os.path.splitext(os.path.basename(query.query_path if query else ""))[0] or "query"
        export_to_file(self, "Export neighbours", f"neighbours-{name}.csv", "CSV (*.csv)", self.export_query,
                       self.notice, self.error)

    @Slot()
    def export_every_image_to_chosen_file(self) -> None:
        path = save_file(self, "Export every image's neighbours", "neighbours.csv", "CSV (*.csv)")
        if path:
            self.export_every_image(path)
