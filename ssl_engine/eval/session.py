"""An evaluation session without Qt: what the Evaluate tab and the command line evaluate.

The session holds
- the models: the checkpoints opened so far (`models`, reused while unchanged), the chosen
  model and the one compared with it (`model_choice`, `compare_choice`);
- the folders, in order;
- the folders' embeddings by the chosen model (`primary`) and by the compared one
  (`compared`), read through the embedding cache;
- what is computed from the chosen model's embeddings, whatever the map's selection: the
  map's `projection` and `clusters`, the images' `tags`, the `neighbours` of one query image,
  the near-`duplicates`, the `label_check`; and the `accuracy` of both models;
- the `exports` of all of these.

Views observe it as napari's views observe their models: `session.events.connect(topic,
callback)`, and after a change of that topic the session calls each callback, with no
argument, in the order they were connected; callbacks read the state from the session. The
session is used from one thread (the app's UI thread): long work runs elsewhere with the pure
functions of `embedded` and `results`, and the UI thread hands the outcome to
`set_embeddings` or `accept`, which drops a result computed from embeddings that are no
longer the session's.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .embedded import EmbeddedFolders, LoadedModels, ModelChoice, embed_models
from .model_source import EvalModel
from .results import (Accuracy, Clusters, Duplicates, LabelCheck, Neighbours, Projection, Protocol,
                      measure_accuracy, neighbours_of, protocols)
from .session_exports import SessionExports
from .tags import ImageTags, checked_tag

FOLDERS = "folders"          # the folder list changed
PRIMARY = "primary"          # the chosen model's embeddings changed (or went): every result with them
EMBEDDINGS = "embeddings"    # the embedded models were set (primary or compared): the accuracy went
PROJECTION, CLUSTERS, TAGS, NEIGHBOURS = "projection", "clusters", "tags", "neighbours"
DUPLICATES, LABEL_CHECK, ACCURACY = "duplicates", "label_check", "accuracy"
TOPICS = (FOLDERS, PRIMARY, EMBEDDINGS, PROJECTION, CLUSTERS, TAGS, NEIGHBOURS, DUPLICATES, LABEL_CHECK, ACCURACY)

# the session's attribute (and topic) that holds each kind of result
_RESULT_TOPIC = {Projection: PROJECTION, Clusters: CLUSTERS, Neighbours: NEIGHBOURS, Duplicates: DUPLICATES,
                 LabelCheck: LABEL_CHECK, Accuracy: ACCURACY}
DEFAULT_NEIGHBOURS = 12


class Events:
    """Callbacks by topic, called in the order they were connected."""

    def __init__(self, topics: tuple[str, ...]):
        self._callbacks: dict[str, list[Callable[[], None]]] = {topic: [] for topic in topics}

    def connect(self, topic: str, callback: Callable[[], None]) -> None:
        self._callbacks[topic].append(callback)

    def disconnect(self, topic: str, callback: Callable[[], None]) -> None:
        self._callbacks[topic].remove(callback)

    def emit(self, topic: str) -> None:
        for callback in list(self._callbacks[topic]):
            callback()


class EvaluationSession:
    """See the module docstring. `cache_dir` None is the default embedding cache, "" none."""

    def __init__(self, cache_dir: str | None = None, device: str = "auto"):
        self.cache_dir, self.device = cache_dir, device
        self.events = Events(TOPICS)
        self.models = LoadedModels()
        self.model_choice: ModelChoice | None = None
        self.compare_choice: ModelChoice | None = None
        self.folders: list[str] = []
        self.primary: EmbeddedFolders | None = None
        self.compared: EmbeddedFolders | None = None
        self.projection: Projection | None = None
        self.clusters: Clusters | None = None
        self.tags: ImageTags | None = None
        self.neighbours: Neighbours | None = None
        self.neighbour_count = DEFAULT_NEIGHBOURS
        self.duplicates: Duplicates | None = None
        self.label_check: LabelCheck | None = None
        self.accuracy: Accuracy | None = None
        self.exports = SessionExports(self)

    # -- models and folders ------------------------------------------------------------
    def choose(self, model: ModelChoice | None, compared: ModelChoice | None = None) -> None:
        """The model to evaluate and the one to compare it with (the same one twice: none)."""
        self.model_choice = model
        self.compare_choice = compared if compared != model else None

    def set_folders(self, folders: list[str]) -> None:
        """The folders to evaluate, in order (each once, as absolute paths)."""
        folders = list(dict.fromkeys(os.path.abspath(os.path.expanduser(f)) for f in folders))
        if folders != self.folders:
            self.folders = folders
            self.events.emit(FOLDERS)

    def wanted(self) -> tuple | None:
        """What should be embedded now: (model, compared model, folders), or None when nothing can be."""
        if self.model_choice is None or not self.folders:
            return None
        return self.model_choice, self.compare_choice, tuple(self.folders)

    # -- embeddings --------------------------------------------------------------------
    def set_embeddings(self, primary: EmbeddedFolders | None, compared: EmbeddedFolders | None) -> None:
        """The chosen model's embeddings of the folders and the compared model's (None: not
        there, or not yet). New chosen embeddings clear every result; each call clears the
        accuracy (and tells the EMBEDDINGS observers, even when the models are the same)."""
        primary_changed = primary is not self.primary
        for embedded, before in ((primary, self.primary), (compared, self.compared)):
            if embedded is not None and embedded is not before:   # a model opened: reused while unchanged
                self.models.remember(embedded.model)
        if primary_changed:
            self.primary = primary
            self.projection = self.clusters = self.tags = self.neighbours = None
            self.duplicates = self.label_check = None
        self.compared = compared
        self.accuracy = None
        if primary_changed:
            self.events.emit(PRIMARY)
        self.events.emit(EMBEDDINGS)

    def embedded_models(self) -> list[EmbeddedFolders]:
        """The chosen model's embeddings, then the compared one's, as far as they exist."""
        return [embedded for embedded in (self.primary, self.compared) if embedded is not None]

    def embed(self, models: list[EvalModel], *, batch_size: int = 128, progress=None,
              finished=None) -> list[EmbeddedFolders]:
        """Embed the folders with `models` (the chosen one first, maybe the compared one) here and
        now, as the command line does; `progress` and `finished` as `embedded.embed_models` takes
        them. The app's embedding thread runs `embed_models` itself and hands its outcome to
        `set_embeddings`."""
        embedded = embed_models(models, self.folders, cache_dir=self.cache_dir, device=self.device,
                                batch_size=batch_size, progress=progress, finished=finished)
        self.set_embeddings(embedded[0], embedded[1] if len(embedded) > 1 else None)
        return embedded

    # -- results -----------------------------------------------------------------------
    def accept(self, result) -> bool:
        """Keep a result of `results` (and tell its observers), unless the embeddings it was
        computed from are no longer the session's; whether it was kept."""
        topic = _RESULT_TOPIC[type(result)]
        if isinstance(result, Accuracy):
            current = self.embedded_models()
            fresh = len(result.models) == len(current) and all(a is b for a, b in zip(result.models, current))
        else:
            fresh = self.primary is not None and result.embedding is self.primary.combined
        if fresh:
            setattr(self, topic, result)
            self.events.emit(topic)
        return fresh

    def protocols(self) -> list[Protocol]:
        """The accuracy protocols the labelled folders allow (none until embedded)."""
        return protocols(self.primary)

    def measure_accuracy(self, protocol: Protocol, k: int, linear_probe: bool = True, seed: int = 0) -> Accuracy:
        """The accuracy of the embedded models, measured here and now (as the command line does)."""
        result = measure_accuracy(self.embedded_models(), protocol, k, linear_probe, seed)
        self.accept(result)
        return result

    # -- the neighbours of one query ---------------------------------------------------
    def query_image(self, index: int) -> None:
        """Find the neighbours of row `index` of the chosen model's embeddings."""
        if self.primary is None or not 0 <= index < len(self.primary.combined.paths):
            return
        combined = self.primary.combined
        self.accept(neighbours_of(combined, combined.features[index], self.neighbour_count,
                                  query_index=int(index), query_path=combined.paths[index]))

    def query_outside(self, path: str, feature: np.ndarray, thumbnail: np.ndarray) -> None:
        """Find the neighbours of an image from outside the folders, embedded by the chosen model."""
        if self.primary is not None:
            self.accept(neighbours_of(self.primary.combined, feature, self.neighbour_count, query_path=path,
                                      query_thumbnail=thumbnail))

    def set_neighbour_count(self, k: int) -> None:
        """How many neighbours a query finds; the current query's are found again."""
        self.neighbour_count = int(k)
        query = self.neighbours
        if query is not None:
            self.accept(neighbours_of(query.embedding, query.query_feature, self.neighbour_count,
                                      query_index=query.query_index, query_path=query.query_path,
                                      query_thumbnail=query.query_thumbnail))

    # -- tags --------------------------------------------------------------------------
    def load_tags(self) -> None:
        """Read the tags of the embedded images (kept beside the embedding cache); UserError
        when a tags file cannot be read (the session then has no tags)."""
        self.tags = None
        try:
            if self.primary is not None:
                combined = self.primary.combined
                self.tags = ImageTags.load([folder.root for folder in self.primary.folders], combined.paths,
                                           self.primary.folder_of, self.cache_dir)
        finally:
            self.events.emit(TAGS)

    def tag(self, name: str, rows: np.ndarray) -> int:
        """Tag these rows `name` (saved at once); how many were newly tagged. UserError for a bad
        name or an unwritable cache."""
        count = self.tags.add(checked_tag(name), rows)
        self.events.emit(TAGS)
        return count

    def untag(self, name: str, rows: np.ndarray) -> int:
        """Remove the tag `name` from these rows; how many carried it."""
        count = self.tags.remove(checked_tag(name), rows)
        self.events.emit(TAGS)
        return count

    def tag_groups(self) -> tuple[np.ndarray, list[str]]:
        """Each row's tag for a colouring by tag (its first, alphabetically; -1 untagged) and the tag names."""
        if self.tags is None:
            return np.full(0 if self.primary is None else len(self.primary.combined.paths), -1, np.int64), []
        return self.tags.groups()
