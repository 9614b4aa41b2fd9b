"""Exports of an evaluation for use outside the app: embeddings (.npz or CSV), neighbour lists,
near-duplicate pairs, accuracy tables, possible label mistakes and a selection of images (CSV),
and a selection copied into a folder.

Every CSV is UTF-8 with a header row, written by the csv module, so paths holding commas,
quotes, newlines or any non-ASCII character read back exactly. Each function returns the
path it wrote; a file that cannot be written raises OSError.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import UserError
from .accuracy import AccuracyReport
from .folder_embedding import class_name_of
from .neighbours import DuplicatePairs

_ROWS_PER_CHUNK = 1024   # embedding rows formatted at a time, so a memmapped folder is never loaded whole
_FLOAT32_DIGITS = "%.9g"  # 9 significant digits read back as the same float32


def _open_csv(path: str):
    return open(path, "w", newline="", encoding="utf-8")


def save_embeddings(embedding, path: str) -> str:
    """Write a FolderEmbedding's features with their file paths, as the extension of `path` says.

    .npz: arrays features (N, D) float32, paths (N,) str, labels (N,) int64 (-1 = unlabelled),
    class_names (C,) str and model_key (a 0-d str); numpy reads them back without pickle.
    .csv: columns path, label, class (empty when unlabelled), f0 .. f{D-1}.
    Only the fields features, paths, labels, class_names and model_key are read.
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npz":
        with open(path, "wb") as file:
            np.savez(file, features=np.asarray(embedding.features, dtype=np.float32),
                     paths=np.array(embedding.paths, dtype=str),
                     labels=np.asarray(embedding.labels, dtype=np.int64),
                     class_names=np.array(embedding.class_names, dtype=str),
                     model_key=np.array(embedding.model_key, dtype=str))
    elif extension == ".csv":
        features = embedding.features
        # one %-format per row, then split: much faster than formatting each value on its own
        row_format = ",".join([_FLOAT32_DIGITS] * features.shape[1])
        with _open_csv(path) as file:
            writer = csv.writer(file)
            writer.writerow(["path", "label", "class", *(f"f{column}" for column in range(features.shape[1]))])
            for start in range(0, len(embedding.paths), _ROWS_PER_CHUNK):
                chunk = np.asarray(features[start:start + _ROWS_PER_CHUNK], dtype=np.float32).tolist()
                for offset, values in enumerate(chunk):
                    row = start + offset
                    writer.writerow([embedding.paths[row], int(embedding.labels[row]), class_name_of(embedding, row),
                                     *(row_format % tuple(values)).split(",")])
    else:
        raise UserError(f"cannot save embeddings as '{extension or path}': use a .npz or .csv file name")
    return path


def save_selection_csv(path: str, embedding, rows) -> str:
    """The selected images of a FolderEmbedding, in `rows` order: columns path, label, class."""
    path = os.fspath(path)
    with _open_csv(path) as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label", "class"])
        for row in np.asarray(rows, dtype=np.int64).tolist():
            writer.writerow([embedding.paths[row], int(embedding.labels[row]), class_name_of(embedding, row)])
    return path


def copy_selection(embedding, rows, folder: str) -> list[str]:
    """Copy the selected images into `folder` (created if missing), each under its class's
    subfolder when the folder is labelled; a name already taken gets a number, so no file is
    overwritten. Returns the new files' paths. An unreadable source raises OSError."""
    target = Path(folder).expanduser()
    written = []
    for row in np.asarray(rows, dtype=np.int64).tolist():
        source = Path(embedding.paths[row])
        where = target / class_name_of(embedding, row)  # the folder itself when unlabelled
        where.mkdir(parents=True, exist_ok=True)
        destination, number = where / source.name, 1
        while destination.exists():
            destination = where / f"{source.stem}-{number}{source.suffix}"
            number += 1
        shutil.copy2(source, destination)
        written.append(str(destination))
    return written


def save_label_suspects_csv(path: str, embedding, suspects) -> str:
    """Possible label mistakes (`label_check.possible_label_mistakes`), most suspicious first:
    columns path, class, suggested class, share (of its neighbours carrying the suggestion),
    similarity (their mean)."""
    path = os.fspath(path)
    names = embedding.class_names
    with _open_csv(path) as file:
        writer = csv.writer(file)
        writer.writerow(["path", "class", "suggested", "share", "similarity"])
        for suspect in suspects:
            writer.writerow([embedding.paths[suspect.row], names[suspect.label], names[suspect.suggested],
                             f"{suspect.share:.3f}", f"{suspect.similarity:.6f}"])
    return path


def save_neighbours_csv(path: str, paths: list[str], query_indices, indices, similarities) -> str:
    """Neighbour lists, one row per (query, neighbour): columns query, rank (1 = most similar),
    neighbour, similarity. `query_indices` (Q,) index `paths`; `indices` and `similarities` are
    (Q, k) as `nearest_neighbours` returns them."""
    path = os.fspath(path)
    with _open_csv(path) as file:
        writer = csv.writer(file)
        writer.writerow(["query", "rank", "neighbour", "similarity"])
        for query, row_indices, row_similarities in zip(np.asarray(query_indices).tolist(),
                                                        np.asarray(indices).tolist(),
                                                        np.asarray(similarities).tolist()):
            for rank, (neighbour, similarity) in enumerate(zip(row_indices, row_similarities), start=1):
                writer.writerow([paths[query], rank, paths[neighbour], f"{similarity:.6f}"])
    return path


def save_duplicates_csv(path: str, paths: list[str], pairs: DuplicatePairs) -> str:
    """Near-duplicate pairs: columns group (1 = the largest group of `pairs.groups()`), first,
    second, similarity; grouped by group, most similar pair first within each."""
    path = os.fspath(path)
    group_of = {row: number for number, group in enumerate(pairs.groups(), start=1) for row in group}
    rows = sorted(zip(pairs.first.tolist(), pairs.second.tolist(), pairs.similarity.tolist()),
                  key=lambda pair: group_of[pair[0]])   # a stable sort keeps the similarity order
    with _open_csv(path) as file:
        writer = csv.writer(file)
        writer.writerow(["group", "first", "second", "similarity"])
        for first, second, similarity in rows:
            writer.writerow([group_of[first], paths[first], paths[second], f"{similarity:.6f}"])
    return path


def save_accuracy_csv(path: str, reports: list[AccuracyReport]) -> str:
    """One long table of every report: columns model, protocol, classifier ("knn" or "probe"),
    class ("all" for the overall rows, else a class name), metric ("top1" or "top5"), value
    (in [0, 1]; empty for a class with no test image) and images (the test images it counts).

    Per report: overall kNN top-1 and top-5 and probe top-1, then each class's kNN top-1 and
    probe top-1 (the probe rows only when the probe was run)."""
    path = os.fspath(path)
    with _open_csv(path) as file:
        writer = csv.writer(file)
        writer.writerow(["model", "protocol", "classifier", "class", "metric", "value", "images"])
        for report in reports:
            for classifier, class_name, metric, value, images in _accuracy_rows(report):
                writer.writerow([report.model_name, report.protocol, classifier, class_name, metric,
                                 "" if math.isnan(value) else f"{value:.6f}", images])
    return path


def _accuracy_rows(report: AccuracyReport):
    """(classifier, class, metric, value, images) of each row of one report."""
    yield "knn", "all", "top1", report.knn_top1, report.test_count
    yield "knn", "all", "top5", report.knn_top5, report.test_count
    if report.probe_top1 is not None:
        yield "probe", "all", "top1", report.probe_top1, report.test_count
    images_per_class = report.confusion_knn.sum(axis=1).tolist()
    for classifier, per_class in (("knn", report.per_class_knn), ("probe", report.per_class_probe)):
        if per_class is not None:
            for class_name, accuracy, images in zip(report.class_names, per_class.tolist(), images_per_class):
                yield classifier, class_name, "top1", accuracy, images
