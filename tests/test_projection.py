"""2-D projections of embeddings for the maps: seeded t-SNE, and UMAP only where it is installed."""

import importlib.util

import numpy as np
import pytest

from ssl_engine.errors import UserError
from ssl_engine.eval.projection import (kmeans_clusters, project_2d, projection_methods, tsne_2d, umap_2d,
                                      umap_2d_available)

UMAP_INSTALLED = importlib.util.find_spec("umap") is not None


def clustered_features(count=90, dim=16, seed=0):
    """Three well separated clusters in `dim` dimensions, and each row's cluster."""
    rng = np.random.default_rng(seed)
    clusters = np.arange(count) % 3
    centres = rng.normal(size=(3, dim)) * 10
    return (centres[clusters] + rng.normal(size=(count, dim))).astype(np.float32), clusters


def test_tsne_is_seeded_and_keeps_clusters_apart():
    features, clusters = clustered_features()
    first, again = tsne_2d(features, seed=0), tsne_2d(features, seed=0)
    assert first.shape == (90, 2) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    # Each point's nearest neighbour on the map is in its own cluster.
    distances = np.linalg.norm(first[:, None] - first[None], axis=2) + np.eye(90) * 1e9
    assert (clusters[distances.argmin(axis=1)] == clusters).all()


@pytest.mark.parametrize("count", [0, 1, 2, 5])
def test_tsne_of_a_handful_of_points(count):
    features, _ = clustered_features(count=count)
    points = tsne_2d(features)
    assert points.shape == (count, 2) and np.isfinite(points).all()


@pytest.mark.skipif(UMAP_INSTALLED, reason="umap-learn is installed here")
def test_umap_absent_is_reported_not_raised_on_import():
    assert umap_2d_available() is False
    with pytest.raises(UserError, match="pip install umap-learn"):
        umap_2d(clustered_features()[0])


@pytest.mark.skipif(not UMAP_INSTALLED, reason="umap-learn is not installed")
def test_umap_is_seeded():
    features, _ = clustered_features()
    assert umap_2d_available() is True
    first = umap_2d(features, seed=0)
    assert first.shape == (90, 2) and first.dtype == np.float32
    np.testing.assert_array_equal(first, umap_2d(features, seed=0))


def test_kmeans_clusters_recover_separated_groups_and_are_seeded():
    features, clusters = clustered_features(count=120)
    found = kmeans_clusters(features, 3, seed=0)
    assert found.shape == (120,) and found.dtype == np.int64
    # the same partition up to the clusters' numbering
    pairs = set(zip(clusters.tolist(), found.tolist()))
    assert len(pairs) == 3 and len({f for _, f in pairs}) == 3
    np.testing.assert_array_equal(found, kmeans_clusters(features, 3, seed=0))
    assert kmeans_clusters(features[:2], 5).tolist() in ([0, 1], [1, 0])   # k clamped to the rows
    assert kmeans_clusters(features[:0], 3).shape == (0,)


def test_every_offered_projection_gives_finite_points():
    features, _ = clustered_features(count=40)
    for method in projection_methods():
        points = project_2d(features, method)
        assert points.shape == (40, 2) and np.isfinite(points).all(), method
