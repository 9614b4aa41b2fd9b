"""Possible label mistakes in a labelled folder: images whose nearest neighbours, in a trained
model's feature space, mostly carry another label.

For each labelled image, its k nearest other labelled images (cosine, after centring the
features as the duplicates search does) vote with their labels. An image is listed when the
most voted other label outvotes its own (more than half of the k neighbours by default); the
list is ranked by that share, then by the mean similarity of the neighbours that disagree, so
that a near-copy filed under another class comes first. Cleanlab's and FiftyOne's mistakenness
scores rest on the same neighbourhood idea; this one needs no classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .neighbours import centred, nearest_neighbours

NEIGHBOURS = 10
MIN_SHARE = 0.5  # listed when the other label holds more than this share of the neighbours


@dataclass(frozen=True)
class LabelSuspect:
    row: int                  # index of the image in the features
    label: int                # its own label
    suggested: int            # the label most of its neighbours carry
    share: float              # share of the k neighbours carrying `suggested`
    similarity: float         # mean similarity of those neighbours
    neighbours: np.ndarray    # int64 (k,) rows of its neighbours, most similar first


def possible_label_mistakes(features: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS,
                            min_share: float = MIN_SHARE) -> list[LabelSuspect]:
    """The labelled rows whose neighbours mostly carry another label, most suspicious first
    (ties broken by row, so the order is the same on every machine). Rows labelled -1 neither
    vote nor are listed."""
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if features.shape[0] != labels.shape[0]:
        raise ValueError(f"{features.shape[0]} feature rows for {labels.shape[0]} labels")
    labelled = np.flatnonzero(labels >= 0)
    if len(labelled) < 2 or len(np.unique(labels[labelled])) < 2:
        return []
    rows = centred(features[labelled])
    neighbour_index, similarity = nearest_neighbours(rows, rows, k=k, exclude=np.arange(len(rows)))
    neighbour_labels = labels[labelled][neighbour_index]
    suspects = []
    for i, row in enumerate(labelled.tolist()):
        own = int(labels[row])
        votes = np.bincount(neighbour_labels[i], minlength=int(labels.max()) + 1)
        votes[own] = -1
        suggested = int(votes.argmax())  # the lowest label among equally voted ones
        agreeing = neighbour_labels[i] == suggested
        share = float(agreeing.mean())
        if share > min_share:
            suspects.append(LabelSuspect(row=row, label=own, suggested=suggested, share=share,
                                         similarity=float(similarity[i][agreeing].mean()),
                                         neighbours=labelled[neighbour_index[i]]))
    suspects.sort(key=lambda s: (-s.share, -round(s.similarity, 6), s.row))
    return suspects
