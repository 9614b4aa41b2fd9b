"""Nearest neighbours and near-duplicates of embedded images, by cosine similarity.

Both work on blocks of the similarity matrix small enough to hold (about 64 MiB each), so a
folder of 100,000 images never needs its whole (N, N) matrix in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_BLOCK_BUDGET = 1 << 24   # similarity entries per block (64 MiB of float32)
# Cosine of a vector with an exact copy of itself can round to just below 1: a threshold of 1.0
# must still find exact copies.
_ROUNDING_TOLERANCE = 1e-6


def _unit_rows(features: np.ndarray) -> torch.Tensor:
    """(N, D) float32 rows scaled to unit length (an all-zero row stays zero), as a new tensor:
    the input (possibly a read-only memmap) is copied once and never written."""
    rows = torch.from_numpy(np.array(features, dtype=np.float32, ndmin=2))
    rows /= rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return rows


def nearest_neighbours(features: np.ndarray, queries: np.ndarray, k: int = 10,
                       exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of `features` (N, D) most cosine-similar to each row of `queries` (Q, D).

    Returns (indices int64 (Q, k), similarities float32 (Q, k)), most similar first. A single
    query may be given as a (D,) vector. `exclude` holds one index per query to leave out (the
    query itself when it is one of the features), or -1 for none. k is clamped to N, or to N - 1
    when some query excludes a row, so that every query has k real neighbours.
    """
    database = _unit_rows(features)
    query_rows = _unit_rows(queries)
    if query_rows.shape[1] != database.shape[1]:
        raise ValueError(f"queries have {query_rows.shape[1]} dimensions but the features have "
                         f"{database.shape[1]}")
    count = database.shape[0]
    if exclude is not None:
        exclude = torch.as_tensor(np.asarray(exclude, dtype=np.int64).reshape(-1))
        if exclude.shape[0] != query_rows.shape[0]:
            raise ValueError(f"exclude has {exclude.shape[0]} entries for {query_rows.shape[0]} queries")
        if bool(((exclude < -1) | (exclude >= count)).any()):
            raise ValueError(f"exclude holds an index outside [-1, {count})")
    excludes_some = exclude is not None and bool((exclude >= 0).any())
    k = max(0, min(k, count - 1 if excludes_some else count))

    indices = np.empty((query_rows.shape[0], k), dtype=np.int64)
    similarities = np.empty((query_rows.shape[0], k), dtype=np.float32)
    chunk = max(1, _BLOCK_BUDGET // max(count, 1))
    for start in range(0, query_rows.shape[0], chunk):
        block = query_rows[start:start + chunk] @ database.T
        if excludes_some:
            rows = torch.arange(block.shape[0])
            left_out = exclude[start:start + chunk]
            has_exclusion = left_out >= 0
            block[rows[has_exclusion], left_out[has_exclusion]] = -torch.inf
        top_similarity, top_index = block.topk(k, dim=1)
        indices[start:start + chunk] = top_index.numpy()
        similarities[start:start + chunk] = top_similarity.clamp(max=1.0).numpy()   # rounding can pass 1
    return indices, similarities


def neighbours_of_every_image(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query indices, neighbour indices (N, k), similarities (N, k)) of every row, each left
    out of its own list: what the export of every image's neighbours writes."""
    everyone = np.arange(len(features), dtype=np.int64)
    indices, similarities = nearest_neighbours(features, features, k=k, exclude=everyone)
    return everyone, indices, similarities


@dataclass
class DuplicatePairs:
    """Pairs of rows (first[i] < second[i]) whose cosine similarity is at least a threshold,
    most similar first. `truncated` is True when more pairs passed the threshold than were kept."""

    first: np.ndarray        # int64 (P,)
    second: np.ndarray       # int64 (P,)
    similarity: np.ndarray   # float32 (P,)
    truncated: bool

    def __len__(self) -> int:
        return len(self.first)

    def groups(self) -> list[list[int]]:
        """Connected groups of near-duplicates (each pair links its two rows), largest first
        (ties: smallest first row first), each group's rows in ascending order."""
        parent: dict[int, int] = {}

        def root(row: int) -> int:
            parent.setdefault(row, row)
            while parent[row] != row:
                parent[row] = parent[parent[row]]   # path halving keeps the trees flat
                row = parent[row]
            return row

        for first, second in zip(self.first.tolist(), self.second.tolist()):
            first_root, second_root = root(first), root(second)
            if first_root != second_root:
                parent[max(first_root, second_root)] = min(first_root, second_root)
        members: dict[int, list[int]] = {}
        for row in sorted(parent):
            members.setdefault(root(row), []).append(row)
        return sorted(members.values(), key=lambda group: (-len(group), group[0]))


def near_duplicates(features: np.ndarray, threshold: float = 0.95, max_pairs: int = 10000,
                    centre: bool = False) -> DuplicatePairs:
    """Every pair of rows i < j of `features` (N, D) whose cosine similarity is >= `threshold`,
    most similar first (ties by i, then j), at most `max_pairs` of them (the most similar).

    `centre=True` subtracts the mean row first. A ReLU network's pooled features all lie in the
    positive orthant, so their raw cosines are high for any two images (0.97 is the median over
    all pairs of digits for a small CNN trained on shapes): there a threshold separates nothing.
    After centring, unrelated images score around 0 while copies still score 1.

    Blocks of rows are compared with all later rows only (the upper triangle), each block
    within the similarity budget, and only the best `max_pairs` candidates are held between
    blocks, so memory stays bounded however many pairs pass the threshold.
    """
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1, got {max_pairs}")
    if centre and len(features):
        features = centred(features)
    rows = _unit_rows(features)
    count = rows.shape[0]
    threshold = float(threshold) - _ROUNDING_TOLERANCE
    kept_similarity = torch.empty(0)
    kept_first = torch.empty(0, dtype=torch.long)
    kept_second = torch.empty(0, dtype=torch.long)
    found = 0
    start = 0
    while start < count - 1:
        block_rows = max(1, _BLOCK_BUDGET // (count - start))
        stop = min(count - 1, start + block_rows)
        # rows start..stop-1 against rows start..N-1; column c is row start + c
        block = rows[start:stop] @ rows[start:].T
        diagonal_square = block[:, :stop - start]
        diagonal_square.masked_fill_(torch.ones_like(diagonal_square, dtype=torch.bool).tril(), -torch.inf)
        passing = block >= threshold
        candidates = int(passing.sum())
        found += candidates
        # Once max_pairs are kept, a candidate must reach the weakest of them to matter.
        if len(kept_similarity) == max_pairs and float(kept_similarity[-1]) > threshold:
            passing &= block >= kept_similarity[-1]
            candidates = int(passing.sum())
        if candidates > max_pairs:
            similarity, flat_index = block.flatten().topk(max_pairs)
        else:
            flat_index = passing.flatten().nonzero().squeeze(1)
            similarity = block.flatten()[flat_index]
        width = count - start
        kept_similarity = torch.cat([kept_similarity, similarity])
        kept_first = torch.cat([kept_first, flat_index // width + start])
        kept_second = torch.cat([kept_second, flat_index % width + start])
        order = _most_similar_first(kept_similarity, kept_first, kept_second)[:max_pairs]
        kept_similarity, kept_first, kept_second = kept_similarity[order], kept_first[order], kept_second[order]
        start = stop
    return DuplicatePairs(first=kept_first.numpy(), second=kept_second.numpy(),
                         similarity=kept_similarity.clamp(max=1.0).numpy().astype(np.float32),
                         truncated=found > len(kept_similarity))


def centred(features: np.ndarray) -> np.ndarray:
    """float32 (N, D) features less their mean row: what the duplicates search and the label
    check compare (see `near_duplicates`)."""
    features = np.asarray(features, dtype=np.float32)
    return features - features.mean(axis=0, keepdims=True)


def _most_similar_first(similarity: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The order that sorts pairs by similarity (descending), then first, then second row."""
    return torch.from_numpy(np.lexsort((second.numpy(), first.numpy(), -similarity.numpy())))


# the suggested near-duplicate threshold: this quantile of every image's similarity to its
# nearest other image, so that about one image in a thousand has a partner above it
THRESHOLD_QUANTILE = 0.999


def suggested_duplicate_threshold(features: np.ndarray, quantile: float = THRESHOLD_QUANTILE) -> float:
    """A near-duplicate threshold from the folder's own similarities: the `quantile` of each
    row's (centred, as `near_duplicates(centre=True)` compares) cosine similarity to its nearest
    other row. A fixed 0.95 finds dozens of merely similar pictures with one model and one
    group of hundreds with another; each model's features spread differently."""
    if len(features) < 2:
        return 1.0
    rows = centred(features)
    _, similarities = nearest_neighbours(rows, rows, k=1, exclude=np.arange(len(rows)))
    return float(min(np.quantile(similarities[:, 0], quantile), 1.0))
