"""What an evaluation computes from the embeddings, each result with what it was computed from.

A map's projection, its k-means clusters, one image's neighbours, the near-duplicates, the
label check and the accuracy of the embedded models: each is a small dataclass made by a pure
function of an embedding and parameters. The costly ones (all but the neighbours of one image)
run wherever the caller likes, a worker thread in the app, the main thread in the command
line; `EvaluationSession.accept` keeps a result only while the embeddings it was computed from
are still the session's, so a late result never lands on other images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .accuracy import AccuracyReport, folder_accuracy_report
from .embedded import EmbeddedFolders
from .folder_embedding import FolderEmbedding
from .label_check import LabelSuspect, possible_label_mistakes
from .neighbours import DuplicatePairs, near_duplicates, nearest_neighbours, suggested_duplicate_threshold
from .projection import kmeans_clusters, project_2d

MIN_DUPLICATE_THRESHOLD = 0.80   # a folder's own threshold is never suggested below this


@dataclass(frozen=True, eq=False)
class Projection:
    """The map: `method`'s 2-D positions (float32 (N, 2)) of the rows of `embedding`."""

    embedding: FolderEmbedding
    method: str
    xy: np.ndarray


def project(embedding: FolderEmbedding, method: str) -> Projection:
    return Projection(embedding, method, project_2d(embedding.features, method))


@dataclass(frozen=True, eq=False)
class Clusters:
    """k-means cluster (int64 (N,)) of each row of `embedding`."""

    embedding: FolderEmbedding
    k: int
    values: np.ndarray


def cluster(embedding: FolderEmbedding, k: int) -> Clusters:
    return Clusters(embedding, k, kmeans_clusters(embedding.features, k))


@dataclass(frozen=True, eq=False)
class Neighbours:
    """The nearest images of one query: a row of `embedding` (`query_index`), or an image from
    outside the folders (`query_index` None) with its feature and thumbnail."""

    embedding: FolderEmbedding
    query_index: int | None
    query_path: str
    query_feature: np.ndarray      # float32 (D,)
    query_thumbnail: np.ndarray    # uint8 (64, 64, 3)
    indices: np.ndarray            # int64 (k,) rows of `embedding`, most similar first
    similarities: np.ndarray       # float32 (k,)


def neighbours_of(embedding: FolderEmbedding, query_feature: np.ndarray, k: int, *, query_index: int | None = None,
                  query_path: str = "", query_thumbnail: np.ndarray | None = None) -> Neighbours:
    """The `k` rows most cosine-similar to `query_feature`, the query's own row left out. One
    (N, D) x (D,) product: fast enough for the UI thread at 100k images."""
    feature = np.asarray(query_feature, np.float32)
    indices, similarities = np.empty(0, np.int64), np.empty(0, np.float32)
    k = min(k, len(embedding.paths) - (query_index is not None))
    if k > 0:
        exclude = np.array([-1 if query_index is None else query_index], np.int64)
        found, scores = nearest_neighbours(embedding.features, feature[None], k=k, exclude=exclude)
        indices, similarities = found[0], scores[0]
    thumbnail = embedding.thumbnails[query_index] if query_thumbnail is None else query_thumbnail
    return Neighbours(embedding, query_index, query_path, feature, thumbnail, indices, similarities)


@dataclass(frozen=True, eq=False)
class Duplicates:
    """Near-duplicate pairs of `embedding` at `threshold` (the folder's own when `suggested`)
    and their connected groups, largest first."""

    embedding: FolderEmbedding
    threshold: float
    suggested: bool
    pairs: DuplicatePairs
    groups: list[list[int]]


def find_duplicates(embedding: FolderEmbedding, threshold: float | None) -> Duplicates:
    """The pairs at `threshold`, or at the folder's suggested threshold when it is None."""
    features = embedding.features
    suggested = threshold is None
    if suggested:
        threshold = max(suggested_duplicate_threshold(features), MIN_DUPLICATE_THRESHOLD)
    pairs = near_duplicates(features, threshold, centre=True)
    return Duplicates(embedding, threshold, suggested, pairs, pairs.groups())


@dataclass(frozen=True, eq=False)
class LabelCheck:
    """The possible label mistakes of a labelled `embedding`, with `k` neighbours voting."""

    embedding: FolderEmbedding
    k: int
    suspects: list[LabelSuspect]


def check_labels(embedding: FolderEmbedding, k: int) -> LabelCheck:
    return LabelCheck(embedding, k, list(possible_label_mistakes(embedding.features, embedding.labels, k)))


@dataclass(frozen=True)
class Protocol:
    """How accuracy is measured: cross-validation within one folder, or train on one and test on another."""

    train: int                 # index of the opened folder
    test: int | None = None

    def describe(self, names: list[str]) -> str:
        if self.test is None:
            return f"cross-validation within {names[self.train]}"
        return f"train {names[self.train]} → test {names[self.test]}"


def protocols(embedded: EmbeddedFolders | None) -> list[Protocol]:
    """Every protocol the labelled folders allow: each one cross-validated, then each ordered pair."""
    if embedded is None:
        return []
    labelled = [i for i, folder in enumerate(embedded.folders) if folder.has_labels]
    return [Protocol(i) for i in labelled] + [Protocol(i, j) for i in labelled for j in labelled if i != j]


@dataclass(frozen=True, eq=False)
class Accuracy:
    """One report per model of `models`, measured by `protocol`."""

    models: tuple[EmbeddedFolders, ...]
    protocol: Protocol
    reports: list[AccuracyReport]


def measure_accuracy(models: list[EmbeddedFolders], protocol: Protocol, k: int, linear_probe: bool = True,
                     seed: int = 0, cancelled: Callable[[], bool] | None = None) -> Accuracy:
    """One report per model, on the protocol's folders, with the same seed for each."""
    reports = []
    for embedded in models:
        names = embedded.folder_names
        test = None if protocol.test is None else embedded.folders[protocol.test]
        reports.append(folder_accuracy_report(
            embedded.folders[protocol.train], test, model_name=embedded.model.name, train_name=names[protocol.train],
            test_name="" if test is None else names[protocol.test], k=k, linear_probe=linear_probe, seed=seed,
            cancelled=cancelled))
    return Accuracy(tuple(models), protocol, reports)
