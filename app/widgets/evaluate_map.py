"""The Evaluate tab's Map: the chosen model's embedding of every opened folder projected to 2-D
(PCA, t-SNE, UMAP), coloured by label, k-means cluster, folder or tag, as dots or thumbnails.

It observes the evaluation session: new embeddings start a projection, a projection or new
clusters redraw the map, the neighbours of a query are ringed, the tags recolour it. The
projection and the clusters are computed off the UI thread (`LatestCall`) and handed to the
session, which keeps them only while their embeddings are still the session's.
"""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QSignalBlocker, Signal, Slot
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSizePolicy, QSpinBox, QVBoxLayout, QWidget

from ssl_engine.eval.projection import projection_methods
from ssl_engine.eval.results import cluster, project
from ssl_engine.eval.session import CLUSTERS, NEIGHBOURS, PRIMARY, PROJECTION, TAGS, EvaluationSession

from ..evaluation_worker import LatestCall
from .embedding_map import EmbeddingMap
from .map_tags import MapTags

COLOUR_LABEL, COLOUR_CLUSTER, COLOUR_FOLDER, COLOUR_TAG = "label", "k-means cluster", "folder", "tag"


class MapTab(QWidget):
    """The map and its controls; `notice` and `error` carry one line for the status line."""

    notice = Signal(str)
    error = Signal(str)

    def __init__(self, session: EvaluationSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self._projector = LatestCall(self)
        self._projector.done.connect(self._projected)
        self._projector.failed.connect(self._job_failed)
        self._clusterer = LatestCall(self)
        self._clusterer.done.connect(self._clustered)
        self._clusterer.failed.connect(self._job_failed)

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
        self.map_tags = MapTags(session, self.map, self)
        self.map_tags.notice.connect(self.notice)
        self.map_tags.error.connect(self.error)
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
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.map, 1)

        # after MapTags' own: a change of the tags filters the map before it is recoloured
        session.events.connect(PRIMARY, self._primary_changed)
        session.events.connect(PROJECTION, self._show_projection)
        session.events.connect(CLUSTERS, self._apply_colouring)
        session.events.connect(TAGS, self._tags_changed)
        session.events.connect(NEIGHBOURS, self._ring_neighbours)
        self._update_colour_controls()

    def busy(self) -> bool:
        return self._projector.busy() or self._clusterer.busy()

    def shutdown(self) -> None:
        self._projector.shutdown()
        self._clusterer.shutdown()

    # -- the session's changes ---------------------------------------------------------
    def _primary_changed(self) -> None:
        self._projector.drop()
        self._clusterer.drop()
        if self.session.primary is None:
            self.map.set_points(np.zeros((0, 2), np.float32), np.zeros((0, 64, 64, 3), np.uint8), [])
            self.map_status.setText("")
            return
        self.map.highlight(np.empty(0, np.int64))   # the old points stay until the new projection comes
        self._update_colour_controls()
        self._project()

    def _show_projection(self) -> None:
        projection = self.session.projection
        combined = projection.embedding
        self.map.set_points(projection.xy, combined.thumbnails, combined.paths)
        self.map.set_thumbnails_shown(self.thumbnails_check.isChecked())
        self.map_tags.apply_filter()
        self._apply_colouring()

    def _tags_changed(self) -> None:
        if self.colour_combo.currentText() == COLOUR_TAG:
            self._apply_colouring()

    def _ring_neighbours(self) -> None:
        found = self.session.neighbours
        if self.session.primary is None or found is None:
            return
        self.map.highlight(found.indices)
        if len(found.indices) and found.query_index is not None:
            name = os.path.basename(found.query_path)
            self.map_status.setText(f"{len(found.indices)} neighbours of {name} ringed")
            self.map_status.setToolTip(f"{found.query_path}: its {len(found.indices)} nearest images are "
                                       "ringed; the Neighbours tab shows them")

    # -- the map's own work ------------------------------------------------------------
    @Slot()
    def _project(self) -> None:
        primary = self.session.primary
        if primary is None:
            return
        method = self.projection_combo.currentText()
        self.map_status.setText(f"computing {method} of {len(primary.combined.paths):,} images…")
        self._projector.request(project, primary.combined, method)

    @Slot(object)
    def _projected(self, projection) -> None:
        self.session.accept(projection)

    @Slot()
    def _apply_colouring(self) -> None:
        self._update_colour_controls()
        primary = self.session.primary
        if primary is None or self.session.projection is None:
            return
        colour_by, method = self.colour_combo.currentText(), self.projection_combo.currentText()
        count = f"{method} of {len(primary.combined.paths):,} images"
        if colour_by == COLOUR_LABEL:
            combined = primary.combined
            self.map.set_colouring(combined.labels, combined.class_names, "label")
        elif colour_by == COLOUR_FOLDER:
            self.map.set_colouring(primary.folder_of, primary.folder_names, "folder")
        elif colour_by == COLOUR_TAG:
            groups, names = self.session.tag_groups()
            self.map.set_colouring(groups, names, "tag", ungrouped="untagged")
        else:
            k, clusters = self.clusters_spin.value(), self.session.clusters
            if clusters is None or clusters.k != k:
                self.map_status.setText(f"{count} · finding {k} k-means clusters…")
                self._clusterer.request(cluster, primary.combined, k)
                return
            self.map.set_colouring(clusters.values, [f"cluster {i + 1}" for i in range(k)], f"k-means, k = {k}")
        self.map_status.setText(f"{count} · click a point for its neighbours")

    @Slot(object)
    def _clustered(self, clusters) -> None:
        self.session.accept(clusters)

    @Slot(str)
    def _job_failed(self, message: str) -> None:
        self.map_status.setText(f"failed: {message}")
        self.error.emit(message)

    def _update_colour_controls(self) -> None:
        self.clusters_spin.setVisible(self.colour_combo.currentText() == COLOUR_CLUSTER)
        primary = self.session.primary
        if primary is not None and self.colour_combo.currentText() == COLOUR_LABEL and not primary.combined.has_labels:
            # unlabelled images are all grey by label: clusters say more (or folders, when several)
            with QSignalBlocker(self.colour_combo):
                self.colour_combo.setCurrentText(COLOUR_FOLDER if len(primary.folders) > 1 else COLOUR_CLUSTER)
            self.clusters_spin.setVisible(self.colour_combo.currentText() == COLOUR_CLUSTER)

    @Slot(int)
    def _point_clicked(self, index: int) -> None:
        self.session.query_image(index)
