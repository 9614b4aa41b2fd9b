"""Linear probe: how linearly separable the classes are in frozen features.

A multinomial logistic regression on standardised features (mean and std of the training
features), fitted full-batch with L-BFGS, as in the linear evaluation of SimCLR's transfer
experiments (Chen et al. 2020, appendix B.5) and of CLIP (Radford et al. 2021):

    min_{W, b}  mean_i CE(W x_i + b, y_i) + (lambda / 2) ||W||^2

The L2 strength lambda is chosen from a small grid by accuracy on a seeded held-out fifth of
the training set (strongest first, each fit warm-started from the previous one), then the
probe is refitted on the whole training set. Rows with a label < 0 are unlabelled and ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError
from .labelled import labelled_rows

WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
_MIN_ROWS_FOR_SWEEP = 50        # below this, no held-out split: the middle strength is used
_HELD_OUT_FRACTION = 0.2


def _fit(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float,
         iterations: int, start: tuple[torch.Tensor, torch.Tensor] | None = None
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the L2-regularised logistic regression, by full-batch L-BFGS."""
    if start is None:
        weight = torch.zeros(features.shape[1], num_classes, device=features.device)
        bias = torch.zeros(num_classes, device=features.device)
    else:
        weight, bias = (t.detach().clone() for t in start)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, history_size=10,
                                  tolerance_change=1e-6, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight + bias, labels) \
            + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _accuracy(model: tuple[torch.Tensor, torch.Tensor], features: torch.Tensor,
              labels: torch.Tensor) -> float:
    weight, bias = model
    return ((features @ weight + bias).argmax(dim=1) == labels).float().mean().item()


def linear_probe_logits(train_features: torch.Tensor, train_labels: torch.Tensor,
                        test_features: torch.Tensor, *, num_classes: int | None = None,
                        epochs: int = 100, seed: int = 0, device: torch.device | str = "cpu"
                        ) -> torch.Tensor:
    """(Q, C) logits of a linear classifier trained on frozen features, for every test row.

    `num_classes` defaults to the largest training label + 1; `epochs` is the number of L-BFGS
    iterations per fit (each one a full pass over the training features); `seed` fixes the
    held-out split used to pick the L2 strength.
    """
    train_x, train_y, num_classes = labelled_rows(train_features, train_labels, device, num_classes,
                                                  "the linear probe")
    test_x = test_features.to(device, torch.float32)

    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0, unbiased=False).clamp_min(1e-6)
    train_x = (train_x - mean) / std
    test_x = (test_x - mean) / std

    best_decay = WEIGHT_DECAYS[len(WEIGHT_DECAYS) // 2]
    if train_y.numel() >= _MIN_ROWS_FOR_SWEEP:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(train_y.numel(), generator=generator).to(device)
        held_out_count = int(train_y.numel() * _HELD_OUT_FRACTION)
        held_out, fit_part = order[:held_out_count], order[held_out_count:]
        best_accuracy, model = -1.0, None
        for decay in WEIGHT_DECAYS:
            model = _fit(train_x[fit_part], train_y[fit_part], num_classes, decay, epochs, model)
            accuracy = _accuracy(model, train_x[held_out], train_y[held_out])
            if accuracy > best_accuracy:
                best_accuracy, best_decay = accuracy, decay
    weight, bias = _fit(train_x, train_y, num_classes, best_decay, epochs)
    return test_x @ weight + bias


def linear_probe_top1(train_features: torch.Tensor, train_labels: torch.Tensor,
                      test_features: torch.Tensor, test_labels: torch.Tensor, *,
                      epochs: int = 100, seed: int = 0, device: torch.device | str = "cpu") -> float:
    """Test top-1 accuracy in [0, 1] of `linear_probe_logits` on the labelled test rows."""
    test_labelled = test_labels >= 0
    test_y = test_labels[test_labelled].to(device, torch.long)
    if not bool((train_labels >= 0).any()) or test_y.numel() == 0:
        raise UserError("the linear probe needs labelled training and test images")
    num_classes = max(int(train_labels.max()), int(test_y.max())) + 1
    labelled_test_features = test_features[test_labelled.to(test_features.device)]
    logits = linear_probe_logits(train_features, train_labels, labelled_test_features,
                                 num_classes=num_classes, epochs=epochs, seed=seed, device=device)
    return (logits.argmax(dim=1) == test_y).float().mean().item()
