"""2D projections of embeddings for the embedding maps: PCA, seeded t-SNE, and UMAP where installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from ..errors import UserError


def pca_2d(features: torch.Tensor) -> np.ndarray:
    """The first two principal components of `features` (M, D) as a float32 (M, 2) array.

    Each axis' sign is fixed (its largest loading is positive) so that successive snapshots of
    a slowly changing embedding do not flip the picture.
    """
    x = features.detach().float().cpu()
    x = x - x.mean(dim=0, keepdim=True)
    if len(x) < 2:
        return np.zeros((len(x), 2), dtype=np.float32)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:2]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    axes = axes * torch.where(signs == 0, torch.ones_like(signs), signs)
    projection = x @ axes.T
    if projection.shape[1] < 2:
        projection = torch.nn.functional.pad(projection, (0, 2 - projection.shape[1]))
    return projection.numpy().astype(np.float32)


def tsne_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """Seeded 2-D t-SNE of `features` (M, D) with PCA initialisation: the same picture twice; float32 (M, 2).

    The perplexity (30, as in the paper) is lowered for small M, which t-SNE needs above 3x it.
    """
    # Imported here: the trainer imports this module for pca_2d and should not pay for t-SNE.
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float32)
    if len(features) < 2:
        return np.zeros((len(features), 2), dtype=np.float32)
    perplexity = min(30.0, (len(features) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # One OpenMP thread, set for the calling thread only: beside a training job, sklearn's
    # Barnes-Hut threads spin-wait on each other (measured on 2 cores: 60 points 19 s, with one 0.1 s).
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(features).astype(np.float32)


def umap_2d_available() -> bool:
    """Whether the optional `umap-learn` package is installed (checked without importing it: that is slow)."""
    return importlib.util.find_spec("umap") is not None


def umap_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """Seeded 2-D UMAP of `features` (M, D); float32 (M, 2). UserError when umap-learn is not installed.

    A fixed `random_state` makes UMAP reproducible (and single-threaded). The neighbourhood
    (15 by default) is lowered for small M, which UMAP needs below M.
    """
    if not umap_2d_available():
        raise UserError("UMAP is not installed: pip install umap-learn (PCA and t-SNE work without it)")
    import umap

    features = np.asarray(features, dtype=np.float32)
    if len(features) < 3:
        return pca_2d(torch.from_numpy(features))
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(features) - 1), random_state=seed)
    return reducer.fit_transform(features).astype(np.float32)


PCA, TSNE, UMAP = "PCA", "t-SNE", "UMAP"


def projection_methods() -> list[str]:
    """The projections this installation offers, fastest first."""
    return [PCA, TSNE, UMAP] if umap_2d_available() else [PCA, TSNE]


def project_2d(features: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """float32 (N, 2) positions of a map by `method` (one of `projection_methods()`), seeded so
    that the same features give the same picture."""
    if method == TSNE:
        return tsne_2d(features, seed=seed)
    if method == UMAP:
        return umap_2d(features, seed=seed)
    return pca_2d(torch.as_tensor(np.array(features, np.float32)))  # a copy: memmaps are read-only


def kmeans_clusters(features: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """int64 (N,) cluster of each row, for colouring a map: seeded k-means++ (scikit-learn, best of
    3 starts: a map's colours should not hinge on one unlucky start, unlike DeepCluster's faithful
    single-start k-means) on the L2-normalised features, the cosine geometry the neighbours use."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, np.float32)
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = max(1, min(k, len(x)))
    # One OpenMP thread: beside a training run, sklearn's threads spin-wait on each other (QT-NOTES).
    with threadpool_limits(limits=1, user_api="openmp"):
        return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x).astype(np.int64)
