"""Weighted k-nearest-neighbour classification of frozen features (Wu et al. 2018; DINO's eval_knn).

For a test feature q and its k most cosine-similar training features x_i with labels y_i,

    score(c) = sum_i exp(cos(q, x_i) / T) * [y_i == c],        prediction = argmax_c score(c)

Training rows with a label < 0 are unlabelled and take no part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError
from .labelled import labelled_rows

_SIMILARITY_BUDGET = 1 << 24   # similarity entries per test chunk (64 MiB of float32)


@torch.no_grad()
def knn_scores(train_features: torch.Tensor, train_labels: torch.Tensor,
               test_features: torch.Tensor, k: int = 20, temperature: float = 0.07,
               num_classes: int | None = None) -> torch.Tensor:
    """The (Q, C) vote matrix score(c) of each test row (float32, on the test features' device).

    Each row is scaled by a positive factor of its own (see below), so scores compare classes
    within a row, not rows with each other; a class no neighbour belongs to scores exactly 0.
    k is clamped to the number of labelled training rows; test rows are processed in chunks
    so that the similarity matrix never exceeds ~16M entries.
    """
    device = test_features.device
    train_features, train_labels, num_classes = labelled_rows(train_features, train_labels, device, num_classes,
                                                              "kNN evaluation")
    k = max(1, min(k, train_labels.numel()))
    train_normalised = F.normalize(train_features, dim=1).t()
    test_normalised = F.normalize(test_features.to(torch.float32), dim=1)
    chunk = max(1, _SIMILARITY_BUDGET // train_labels.numel())
    scores = torch.zeros(test_normalised.shape[0], num_classes, device=device)
    for start in range(0, test_normalised.shape[0], chunk):
        similarity = test_normalised[start:start + chunk] @ train_normalised
        top_similarity, top_index = similarity.topk(k, dim=1)
        # exp(s / T) up to a per-row factor exp(-max / T), which leaves the ranking of classes
        # unchanged and keeps small temperatures from overflowing.
        weights = ((top_similarity - top_similarity[:, :1]) / temperature).exp()
        scores[start:start + chunk].scatter_add_(1, train_labels[top_index], weights)
    return scores


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor,
                test_features: torch.Tensor, k: int = 20, temperature: float = 0.07,
                num_classes: int | None = None) -> torch.Tensor:
    """Predicted class of each test row (LongTensor, on the test features' device): the
    argmax of `knn_scores`."""
    return knn_scores(train_features, train_labels, test_features, k=k, temperature=temperature,
                      num_classes=num_classes).argmax(dim=1)


def knn_top1(train_features: torch.Tensor, train_labels: torch.Tensor,
             test_features: torch.Tensor, test_labels: torch.Tensor, k: int = 20,
             temperature: float = 0.07) -> float:
    """Top-1 accuracy in [0, 1] of `knn_predict` on the labelled test rows (labels >= 0)."""
    test_labels = test_labels.to(test_features.device)
    labelled_test = test_labels >= 0
    if not bool(labelled_test.any()):
        raise UserError("kNN evaluation needs labelled test images, but none have a label")
    num_classes = max(int(train_labels.max()), int(test_labels.max())) + 1
    predictions = knn_predict(train_features, train_labels, test_features[labelled_test], k=k,
                              temperature=temperature, num_classes=num_classes)
    return (predictions == test_labels[labelled_test]).float().mean().item()
