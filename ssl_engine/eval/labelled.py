"""The labelled rows of a training set, as the classifiers over frozen features take them.

Rows whose label is < 0 are unlabelled and take no part; the classes count from the labels
when the caller does not say how many there are.
"""

from __future__ import annotations

import torch

from ..errors import UserError


def labelled_rows(features: torch.Tensor, labels: torch.Tensor, device: torch.device | str, num_classes: int | None,
                  needed_by: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(features float32, labels long, number of classes) of the labelled rows, on `device`;
    UserError naming `needed_by` ("kNN evaluation", "the linear probe") when none is labelled."""
    labelled = labels >= 0
    kept_features = features[labelled.to(features.device)].to(device, torch.float32)
    kept_labels = labels[labelled].to(device, torch.long)
    if kept_labels.numel() == 0:
        raise UserError(f"{needed_by} needs labelled training images, but none have a label")
    return kept_features, kept_labels, int(kept_labels.max()) + 1 if num_classes is None else num_classes
