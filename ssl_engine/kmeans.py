"""k-means as faiss runs it for DeepCluster: Lloyd's iterations from k distinct random rows, with an
empty cluster refilled by splitting a non-empty one (Caron et al., ECCV 2018, section 3.3).

    labels, filled = kmeans(x, k, iterations, generator)         # DeepCluster's pseudo-labels
    centroids, filled = kmeans_centroids(x, k, iterations, generator)
    nearest_centroid(x, centroids)                                # BEiT's k-means tokenizer

Every random draw comes from the `generator` given, so a seed gives the same clusters in every run
and every process.
"""

from __future__ import annotations

import torch
from torch import Tensor

SPLIT_EPS = 1 / 1024  # faiss's relative push apart of a split centroid and its copy


def nearest_centroid(x: Tensor, centroids: Tensor) -> Tensor:
    """Index of each row's nearest centroid (squared Euclidean), in chunks that bound memory."""
    half_norms = centroids.pow(2).sum(dim=1) / 2
    chunk = max(1, 2 ** 26 // len(centroids))
    return torch.cat([(part @ centroids.T - half_norms).argmax(dim=1) for part in x.split(chunk)])


def fill_empty_clusters(centroids: Tensor, counts: Tensor, generator: torch.Generator) -> int:
    """In place: each empty cluster takes a copy of a non-empty cluster's centroid, picked at random
    with probability proportional to its size minus one (as faiss does), and the copy and the
    original are pushed apart by +-SPLIT_EPS, so that the next assignment splits the donor's points.
    Returns the number of clusters filled."""
    empty = torch.nonzero(counts == 0).flatten().tolist()
    sizes = counts.double().cpu()
    sign = torch.ones(centroids.shape[1], device=centroids.device)
    sign[1::2] = -1
    for cluster in empty:
        weights = (sizes - 1).clamp_min(0)
        if weights.sum() == 0:
            break
        donor = int(torch.multinomial(weights, 1, generator=generator))
        centroids[cluster] = centroids[donor] * (1 + SPLIT_EPS * sign)
        centroids[donor] *= 1 - SPLIT_EPS * sign
        sizes[cluster] = sizes[donor] / 2
        sizes[donor] -= sizes[cluster]
    return len(empty)


def kmeans_centroids(x: Tensor, k: int, iterations: int, generator: torch.Generator) -> tuple[Tensor, int]:
    """Lloyd's k-means of the rows of x from k distinct random rows (faiss's initialisation, as the
    reference). Returns the (k, D) centroids and how many empty clusters were filled on the way."""
    centroids = x[torch.randperm(len(x), generator=generator)[:k].to(x.device)].clone()
    filled = 0
    for _ in range(iterations):
        labels = nearest_centroid(x, centroids)
        counts = torch.bincount(labels, minlength=k)
        centroids = torch.zeros_like(centroids).index_add_(0, labels, x) / counts.clamp_min(1).unsqueeze(1)
        filled += fill_empty_clusters(centroids, counts, generator)
    return centroids, filled


def kmeans(x: Tensor, k: int, iterations: int, generator: torch.Generator) -> tuple[Tensor, int]:
    """`kmeans_centroids`, then each row's cluster: returns the labels and how many empty
    clusters were filled on the way."""
    centroids, filled = kmeans_centroids(x, k, iterations, generator)
    return nearest_centroid(x, centroids), filled
