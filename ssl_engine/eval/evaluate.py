"""Evaluate frozen features on a labelled split: kNN and linear-probe top-1.

One entry point for the Trainer's summary, the command line's `eval` and the baselines
(a randomly initialised backbone, raw pixels).
"""

from __future__ import annotations

import torch

from ..data.image_set import DataSplits
from .embed import embed
from .knn import knn_top1
from .linear_probe import linear_probe_top1


def labelled(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keep = labels >= 0
    return images[keep], labels[keep]


def evaluate_features(train_features, train_labels, test_features, test_labels, *, k: int = 20,
                      linear_probe: bool = True, device="cpu", seed: int = 0) -> dict:
    result = {"knn_top1": knn_top1(train_features, train_labels, test_features, test_labels, k=k)}
    if linear_probe:
        result["linear_probe_top1"] = linear_probe_top1(train_features, train_labels, test_features,
                                                        test_labels, seed=seed, device=device)
    return result


def evaluate_backbone(backbone, splits: DataSplits, mean, std, *, k: int = 20, linear_probe: bool = True,
                      device="cpu", seed: int = 0) -> dict:
    """kNN (and linear-probe) top-1 of `backbone`'s features: labelled train images as the
    memory / training set, the test split as queries. Empty dict when there are no labels."""
    if splits.test is None or not splits.train.has_labels:
        return {}
    train_images, train_labels = labelled(splits.train.images, splits.train.labels)
    train_features = embed(backbone, train_images, mean=mean, std=std, device=device)
    test_features = embed(backbone, splits.test.images, mean=mean, std=std, device=device)
    return evaluate_features(train_features, train_labels, test_features, splits.test.labels, k=k,
                             linear_probe=linear_probe, device=device, seed=seed)


def evaluate_pixels(splits: DataSplits, *, k: int = 20, linear_probe: bool = True, seed: int = 0) -> dict:
    """The same evaluation on raw pixels (flattened, in [0, 1]): the floor any method must beat."""
    if splits.test is None or not splits.train.has_labels:
        return {}
    train_images, train_labels = labelled(splits.train.images, splits.train.labels)

    def flat(images):
        return images.reshape(len(images), -1).float() / 255.0

    return evaluate_features(flat(train_images), train_labels, flat(splits.test.images), splits.test.labels,
                             k=k, linear_probe=linear_probe, seed=seed)
