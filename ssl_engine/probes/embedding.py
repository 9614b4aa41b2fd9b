"""Probes of the fixed evaluation images' features at each epoch's end: the live kNN (and
its random-init floor, before the first step) and the 2D embedding map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..augment.display import to_display
from ..eval.knn import knn_top1
from ..eval.projection import pca_2d
from .base import ProbeContext, probe


@dataclass
class EmbeddingMap:
    embeddings: np.ndarray     # float32 (M, D) backbone features of the fixed evaluation subset
    labels: np.ndarray         # int64 (M,), -1 where unknown
    images: np.ndarray         # uint8 (M, H, W, 3) the subset's images, for thumbnails
    class_names: list[str]
    projection_2d: np.ndarray  # float32 (M, 2) PCA of the embeddings


@probe("knn_top1", per="epoch", every=1, display="curve", at_start=True,
       help="kNN top-1 of the fixed evaluation images against a fixed memory of labelled training images; "
            "before the first step, the random-init floor")
def live_knn(context: ProbeContext) -> float | None:
    memory = context.knn_memory
    if memory is None:  # no labels, or no test split to read them against
        return None
    return knn_top1(context.embed(memory.images), memory.labels, context.features, context.eval_set.labels,
                    k=context.knn_k)


@probe("map", per="epoch", every=1, display="map",
       help="the fixed evaluation images' features and their PCA map, with thumbnails")
def embedding_map(context: ProbeContext) -> EmbeddingMap:
    features, subset = context.features, context.eval_set
    return EmbeddingMap(embeddings=features.numpy().copy(), labels=subset.labels.numpy().copy(),
                        images=to_display(subset.images), class_names=list(subset.class_names),
                        projection_2d=pca_2d(features))
