"""A seeded, stratified train/test split for labelled sets that come without an official one."""

from __future__ import annotations

import numpy as np
import torch

from .image_set import ImageSet


def stratified_split(image_set: ImageSet, test_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Split each class into train and test by `test_fraction`, the same way for the same seed.

    Each class sends round(n * test_fraction) of its n images to the test set, but always
    keeps at least one in training (so a class of one image goes to training only).
    Unlabelled images (label -1) all go to training. Both parts keep the original order.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be >= 0 and < 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    labels = image_set.labels.numpy()
    is_test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        n_test = min(int(round(len(members) * test_fraction)), len(members) - 1)
        is_test[rng.permutation(members)[:n_test]] = True
    train_index = torch.from_numpy(np.flatnonzero(~is_test))
    test_index = torch.from_numpy(np.flatnonzero(is_test))
    return image_set.subset(train_index), image_set.subset(test_index)
