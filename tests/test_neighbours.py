"""Nearest neighbours and near-duplicates by cosine similarity."""

import itertools
import math

import numpy as np
import pytest

from ssl_engine.eval import neighbours as neighbours_module
from ssl_engine.eval.neighbours import DuplicatePairs, near_duplicates, nearest_neighbours, suggested_duplicate_threshold


def _at_angles(degrees, lengths=None):
    radians = np.radians(np.asarray(degrees, dtype=np.float64))
    points = np.stack([np.cos(radians), np.sin(radians)], axis=1)
    if lengths is not None:
        points = points * np.asarray(lengths, dtype=np.float64)[:, None]
    return points.astype(np.float32)


def _cosine_matrix(features):
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    return unit @ unit.T


def _brute_force_pairs(features, threshold):
    similarity = _cosine_matrix(features.astype(np.float64))
    return {(i, j) for i, j in itertools.combinations(range(len(features)), 2) if similarity[i, j] >= threshold}


def test_nearest_neighbours_hand_checked():
    # lengths differ: only the direction counts
    features = _at_angles([0, 10, 90, 180, 45], lengths=[1, 5, 2, 0.5, 3])
    indices, similarities = nearest_neighbours(features, _at_angles([3]) * 7, k=5)
    assert indices.dtype == np.int64 and similarities.dtype == np.float32
    assert indices.tolist() == [[0, 1, 4, 2, 3]]
    expected = [math.cos(math.radians(d)) for d in (3, 7, 42, 87, 177)]
    assert similarities[0] == pytest.approx(expected, abs=1e-6)


def test_exclude_leaves_the_query_out_and_k_is_clamped():
    # 105, not 100: at 100 the point at 50 would be 50 degrees from both 0 and 100, a tie that
    # BLAS rounding breaks either way; here every query's neighbours are at distinct angles
    features = _at_angles([0, 20, 50, 105])
    indices, similarities = nearest_neighbours(features, features, k=10, exclude=np.arange(4))
    assert indices.shape == (4, 3)   # k clamped to N - 1
    assert indices.tolist() == [[1, 2, 3], [0, 2, 3], [1, 0, 3], [2, 1, 0]]
    assert (similarities < 0.999).all()

    # -1 excludes nothing for that query, but k stays N - 1 so that every row is full
    indices, _ = nearest_neighbours(features, features, k=10, exclude=np.array([-1, 1, -1, -1]))
    assert indices.shape == (4, 3)
    assert indices[0].tolist() == [0, 1, 2]
    assert 1 not in indices[1].tolist()

    # without exclusion k > N gives every row, best first
    indices, similarities = nearest_neighbours(features, features[:1], k=10)
    assert indices.tolist() == [[0, 1, 2, 3]]
    assert similarities[0][0] == pytest.approx(1.0)
    assert np.all(np.diff(similarities[0]) <= 0)

    with pytest.raises(ValueError):
        nearest_neighbours(features, features, exclude=np.array([0, 1]))
    with pytest.raises(ValueError):
        nearest_neighbours(features, features, exclude=np.array([0, 1, 2, 4]))


def test_single_query_vector_and_dimension_mismatch():
    features = _at_angles([0, 90, 30])
    indices, _ = nearest_neighbours(features, _at_angles([25])[0], k=2)
    assert indices.tolist() == [[2, 0]]
    with pytest.raises(ValueError, match="dimensions"):
        nearest_neighbours(features, np.ones((1, 3), np.float32))


def test_chunked_queries_match_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((60, 8)).astype(np.float32)
    queries = features[:25]
    exclude = np.arange(25)
    whole = nearest_neighbours(features, queries, k=7, exclude=exclude)
    monkeypatch.setattr(neighbours_module, "_BLOCK_BUDGET", 60 * 4)   # 4 queries per block
    chunked = nearest_neighbours(features, queries, k=7, exclude=exclude)
    assert np.array_equal(whole[0], chunked[0]) and np.allclose(whole[1], chunked[1], atol=1e-6)

    similarity = _cosine_matrix(features.astype(np.float64))[:25]
    similarity[np.arange(25), exclude] = -np.inf
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :7]
    assert np.array_equal(chunked[0], expected)
    assert np.allclose(chunked[1], np.take_along_axis(similarity, expected, axis=1), atol=1e-5)


def _with_duplicates(rng):
    features = rng.standard_normal((400, 32)).astype(np.float32)
    features[10] = features[3]                    # an exact copy
    features[20] = 2.5 * features[3]              # the same direction, brighter
    features[30] = features[7] + 0.05 * rng.standard_normal(32).astype(np.float32)   # a slightly changed copy
    return features


def test_near_duplicates_finds_copies_and_only_them():
    features = _with_duplicates(np.random.default_rng(1))
    pairs = near_duplicates(features, threshold=0.95)
    assert sorted(zip(pairs.first.tolist(), pairs.second.tolist())) == [(3, 10), (3, 20), (7, 30), (10, 20)]
    assert not pairs.truncated
    assert pairs.similarity.dtype == np.float32 and pairs.first.dtype == np.int64
    assert np.all(np.diff(pairs.similarity) <= 0)              # most similar first
    assert pairs.similarity[:3] == pytest.approx(1.0, abs=1e-6)
    assert 0.95 <= pairs.similarity[3] < 0.9999
    assert pairs.groups() == [[3, 10, 20], [7, 30]]
    # threshold 1.0 still finds exact copies through float rounding
    assert len(near_duplicates(features, threshold=1.0)) == 3


def test_near_duplicates_match_brute_force_and_are_monotonic(monkeypatch):
    features = np.random.default_rng(2).standard_normal((90, 4)).astype(np.float32)
    monkeypatch.setattr(neighbours_module, "_BLOCK_BUDGET", 300)   # many small blocks
    previous = None
    for threshold in (0.6, 0.8, 0.9, 0.97):
        pairs = near_duplicates(features, threshold=threshold)
        found = set(zip(pairs.first.tolist(), pairs.second.tolist()))
        assert found == _brute_force_pairs(features, threshold)
        assert all(first < second for first, second in found)
        if previous is not None:
            assert found <= previous
            assert len(found) < len(previous)
        previous = found


def test_max_pairs_keeps_the_most_similar(monkeypatch):
    features = np.random.default_rng(3).standard_normal((70, 3)).astype(np.float32)
    every_pair = near_duplicates(features, threshold=0.5, max_pairs=100000)
    assert len(every_pair) > 300 and not every_pair.truncated
    monkeypatch.setattr(neighbours_module, "_BLOCK_BUDGET", 200)   # candidates pruned block by block
    best = near_duplicates(features, threshold=0.5, max_pairs=40)
    assert best.truncated and len(best) == 40
    assert np.array_equal(best.first, every_pair.first[:40])
    assert np.array_equal(best.second, every_pair.second[:40])
    assert np.allclose(best.similarity, every_pair.similarity[:40])
    exactly = near_duplicates(features, threshold=0.5, max_pairs=len(every_pair))
    assert not exactly.truncated and len(exactly) == len(every_pair)
    with pytest.raises(ValueError):
        near_duplicates(features, max_pairs=0)


def test_no_pairs_and_tiny_inputs():
    assert len(near_duplicates(np.eye(5, dtype=np.float32), threshold=0.5)) == 0
    assert near_duplicates(np.ones((1, 4), np.float32)).groups() == []
    assert len(near_duplicates(np.zeros((0, 4), np.float32))) == 0


def test_groups_are_connected_components_largest_first():
    pairs = DuplicatePairs(first=np.array([5, 0, 1, 2, 7]), second=np.array([6, 1, 2, 9, 8]),
                           similarity=np.ones(5, np.float32), truncated=False)
    assert pairs.groups() == [[0, 1, 2, 9], [5, 6], [7, 8]]
    joined = DuplicatePairs(first=np.array([5, 0, 1, 2, 7, 6]), second=np.array([6, 1, 2, 9, 8, 8]),
                            similarity=np.ones(6, np.float32), truncated=False)
    assert joined.groups() == [[0, 1, 2, 9], [5, 6, 7, 8]]


def test_centring_lets_a_threshold_separate_copies_in_one_orthant():
    """ReLU features: raw cosines of unrelated rows are all high; centred, only the copies pass."""
    rng = np.random.default_rng(4)
    features = (np.abs(rng.standard_normal((200, 64))) + 2.0).astype(np.float32)
    features[50] = features[5]
    raw = near_duplicates(features, threshold=0.95)
    assert len(raw) > 1000                                   # nearly every pair passes
    centred = near_duplicates(features, threshold=0.95, centre=True)
    assert list(zip(centred.first.tolist(), centred.second.tolist())) == [(5, 50)]
    assert centred.similarity[0] == pytest.approx(1.0, abs=1e-6)


def test_the_suggested_duplicate_threshold_is_the_quantile_of_nearest_neighbour_similarity():
    generator = np.random.default_rng(0)
    features = generator.normal(size=(600, 16)).astype(np.float32)
    centred = features - features.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    expected = np.quantile(similarity.max(axis=1), 0.99)
    assert suggested_duplicate_threshold(features, quantile=0.99) == pytest.approx(expected, abs=1e-5)
    # copies of one image: the top of the distribution, so the suggestion keeps them and little else
    with_copies = np.concatenate([features, features[:1], features[:1]])
    threshold = suggested_duplicate_threshold(with_copies)
    pairs = near_duplicates(with_copies, threshold, centre=True)
    assert {frozenset(p) for p in zip(pairs.first.tolist(), pairs.second.tolist())} == \
        {frozenset((0, 600)), frozenset((0, 601)), frozenset((600, 601))}
    assert suggested_duplicate_threshold(features[:1]) == pytest.approx(1.0)
