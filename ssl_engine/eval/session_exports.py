"""The exports of an evaluation session, as jobs.

Each method takes where to write, captures what the session holds now and returns a callable
that writes it and returns what it wrote (a path, or for a copy "N images into FOLDER"). The
job runs wherever its caller likes: the app runs the long ones (embeddings, every image's
neighbours, copies) off the UI thread, and they write what was there when they were asked for,
whatever the user opens meanwhile; the command line runs them in place. A file that cannot be
written raises OSError (UserError for a file name the format refuses).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from .export import (copy_selection, save_accuracy_csv, save_duplicates_csv, save_embeddings,
                     save_label_suspects_csv, save_neighbours_csv, save_selection_csv)
from .neighbours import neighbours_of_every_image

if TYPE_CHECKING:
    from .session import EvaluationSession

Job = Callable[[], str]


class SessionExports:
    """The exports of `session` (`session.exports`)."""

    def __init__(self, session: EvaluationSession):
        self.session = session

    def _combined(self):
        if self.session.primary is None:
            raise UserError("nothing is embedded yet: add a folder and choose a model")
        return self.session.primary.combined

    def embeddings(self, path: str) -> Job:
        """The chosen model's embeddings of every opened folder (.npz or .csv)."""
        return partial(save_embeddings, self._combined(), path)

    def selection_list(self, path: str, rows: np.ndarray) -> Job:
        """These rows' files as a CSV list (path, label, class)."""
        return partial(save_selection_csv, path, self._combined(), np.asarray(rows, np.int64).copy())

    def selection_copy(self, rows: np.ndarray, folder: str) -> Job:
        """These rows' files copied into `folder` (by class where labelled)."""
        return partial(_copied_into, self._combined(), np.asarray(rows, np.int64).copy(), folder)

    def neighbours(self, path: str) -> Job:
        """The neighbours of the session's query as CSV; an outside query is written as the last path."""
        found = self.session.neighbours
        if found is None:
            raise UserError("no neighbours to export: click a point on the map or open an image")
        paths, query = list(found.embedding.paths), found.query_index
        if query is None:
            paths.append(found.query_path)
            query = len(paths) - 1
        return partial(save_neighbours_csv, path, paths, np.array([query]), found.indices[None],
                       found.similarities[None])

    def every_neighbour(self, path: str, k: int) -> Job:
        """Every image's `k` neighbours as CSV (computed when the job runs)."""
        return partial(_every_neighbour, self._combined(), k, path)

    def duplicates(self, path: str) -> Job:
        found = self.session.duplicates
        if found is None:
            raise UserError("no near-duplicates searched yet")
        return partial(save_duplicates_csv, path, found.embedding.paths, found.pairs)

    def label_check(self, path: str) -> Job:
        found = self.session.label_check
        if found is None:
            raise UserError("the labels have not been checked yet")
        return partial(save_label_suspects_csv, path, found.embedding, found.suspects)

    def accuracy(self, path: str) -> Job:
        found = self.session.accuracy
        if found is None:
            raise UserError("no accuracy measured yet")
        return partial(save_accuracy_csv, path, found.reports)


def _copied_into(embedding, rows, folder: str) -> str:
    """What the export notice says of a copy: the files and where they went."""
    written = copy_selection(embedding, rows, folder)
    return f"{len(written):,} images into {folder}"


def _every_neighbour(embedding, k: int, path: str) -> str:
    queries, indices, similarities = neighbours_of_every_image(embedding.features, k)
    return save_neighbours_csv(path, embedding.paths, queries, indices, similarities)
