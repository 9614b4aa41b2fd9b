"""Accuracy of frozen features on the user's labelled folders: kNN top-1 and top-5, a linear
probe, per-class accuracy and confusion matrices.

Two protocols: stratified, seeded k-fold cross-validation within one folder (every image is
predicted exactly once, by a classifier that never saw it, and the predictions are pooled), or
a train folder against a test folder whose classes are matched by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .knn import knn_scores
from .linear_probe import linear_probe_logits

TOP5 = 5


class EvaluationCancelled(UserError):
    """The user cancelled an accuracy evaluation."""


@dataclass
class AccuracyReport:
    """How well one model's features classify one labelled folder (or a train/test pair).

    Under cross-validation train_count and test_count are both the number of labelled images:
    each one is a test image once and a training image in the other folds.
    """

    model_name: str
    protocol: str                  # "5-fold cross-validation within <folder>" / "<train> -> <test>"
    class_names: list[str]
    k: int                         # neighbours the kNN votes used (k clamped to the training rows)
    knn_top1: float
    knn_top5: float
    probe_top1: float | None       # None when the probe was not run
    per_class_knn: np.ndarray      # (C,) accuracy per class (nan for a class with no test image)
    per_class_probe: np.ndarray | None
    confusion_knn: np.ndarray      # (C, C) int64 counts, rows = true class, cols = predicted
    confusion_probe: np.ndarray | None
    test_count: int
    train_count: int


def folder_accuracy_report(train, test=None, *, model_name: str = "", train_name: str = "", test_name: str = "",
                           k: int = 20, linear_probe: bool = True, seed: int = 0,
                           cancelled: Callable[[], bool] | None = None) -> AccuracyReport:
    """`accuracy_report` of labelled folders: `train` (and `test`, None for cross-validation
    within `train`) are anything with `features`, `labels` and `class_names`, a FolderEmbedding
    or the command line's raw pixels. The one entry point of the Evaluate tab and of `eval`."""
    protocol = {} if test is None else {"test_features": test.features, "test_labels": test.labels,
                                        "test_class_names": test.class_names, "test_folder_name": test_name}
    return accuracy_report(train.features, train.labels, train.class_names, model_name=model_name,
                           folder_name=train_name, k=k, linear_probe=linear_probe, seed=seed,
                           cancelled=cancelled, **protocol)


def accuracy_report(features, labels, class_names: list[str], *, model_name: str = "",
                    folder_name: str = "", test_features=None, test_labels=None,
                    test_class_names: list[str] | None = None, test_folder_name: str = "",
                    k: int = 20, folds: int = 5, linear_probe: bool = True, seed: int = 0,
                    cancelled: Callable[[], bool] | None = None) -> AccuracyReport:
    """kNN (weighted votes of the k most similar training images, temperature 0.07) and, when
    `linear_probe`, a linear probe (L-BFGS logistic regression, seeded) on frozen features.

    features (N, D) and labels (N,) (numpy or torch; label -1 = unlabelled, ignored) with
    labels indexing `class_names`. Without test features: stratified k-fold cross-validation
    within the folder, folds shuffled with `seed`; `folds` is clamped to the number of
    labelled images. Each class's images are dealt round-robin over the folds, so a class with
    fewer images than folds still has each image predicted once, from the other images; a class
    with a single image can never be predicted correctly, and counts as a miss. With test
    features: the test folder's classes are mapped onto `class_names` by name; a test class the
    train folder lacks is a UserError.

    Top-5 counts a test image when its true class is among the 5 classes with the highest vote
    scores and got at least one vote. With 5 classes or fewer every class is among the top 5, so
    top-5 is 1.0 by definition and tells nothing.

    `cancelled()` is polled before each fold's kNN and before its linear probe: when it returns
    True, EvaluationCancelled is raised.
    """
    num_classes = len(class_names)
    train_x, train_y = _labelled_rows(features, labels, num_classes, "labels")
    classes_present = len(np.unique(train_y))
    if classes_present < 2:
        raise UserError(f"accuracy needs at least two classes of labelled images, but "
                        f"{folder_name or 'the folder'} has {classes_present}: put each class's images "
                        "in a subfolder of its own")
    check_cancelled = cancelled or (lambda: False)
    if test_features is None:
        predictions = _cross_validate(train_x, train_y, num_classes, k=k, folds=folds, linear_probe=linear_probe,
                                      seed=seed, check_cancelled=check_cancelled)
        protocol = f"{predictions.folds}-fold cross-validation within {folder_name or 'the folder'}"
    else:
        test_x, test_y = _test_rows(test_features, test_labels, test_class_names, class_names,
                                    test_folder_name, folder_name)
        if test_x.shape[1] != train_x.shape[1]:
            raise UserError(f"the test features have {test_x.shape[1]} dimensions but the training "
                            f"features have {train_x.shape[1]}: embed both folders with the same model")
        predictions = _classify(train_x, train_y, test_x, test_y, num_classes, k=k, linear_probe=linear_probe,
                                seed=seed, check_cancelled=check_cancelled)
        protocol = f"{folder_name or 'train folder'} -> {test_folder_name or 'test folder'}"

    confusion_knn = _confusion(predictions.true, predictions.knn, num_classes)
    confusion_probe = None if predictions.probe is None else _confusion(predictions.true, predictions.probe,
                                                                        num_classes)
    return AccuracyReport(
        model_name=model_name, protocol=protocol, class_names=list(class_names),
        k=max(1, min(k, predictions.smallest_training_set)),
        knn_top1=float(np.mean(predictions.knn == predictions.true)),
        knn_top5=float(np.mean(predictions.knn_top5_hit)),
        probe_top1=None if predictions.probe is None else float(np.mean(predictions.probe == predictions.true)),
        per_class_knn=_per_class_accuracy(confusion_knn),
        per_class_probe=None if confusion_probe is None else _per_class_accuracy(confusion_probe),
        confusion_knn=confusion_knn, confusion_probe=confusion_probe,
        test_count=len(predictions.true), train_count=len(train_y))


@dataclass
class _Predictions:
    """What the classifiers said about each test row (pooled over the folds of a cross-validation)."""

    true: np.ndarray               # int64 (M,) true classes
    knn: np.ndarray                # int64 (M,) kNN predictions
    knn_top5_hit: np.ndarray       # bool (M,)
    probe: np.ndarray | None       # int64 (M,) linear-probe predictions
    smallest_training_set: int     # the fewest training rows any prediction was made from
    folds: int = 1


def _cross_validate(features: torch.Tensor, labels: np.ndarray, num_classes: int, *, k: int, folds: int,
                    linear_probe: bool, seed: int, check_cancelled: Callable[[], bool]) -> _Predictions:
    """Each row predicted once by classifiers trained on the other folds."""
    folds = min(folds, len(labels))
    if folds < 2:
        raise UserError(f"cross-validation needs at least 2 folds, got {folds}")
    fold_of = _stratified_folds(labels, folds, seed)
    pooled = _Predictions(true=labels, knn=np.empty_like(labels), knn_top5_hit=np.empty(len(labels), dtype=bool),
                          probe=np.empty_like(labels) if linear_probe else None,
                          smallest_training_set=len(labels) - int(np.bincount(fold_of).max()), folds=folds)
    for fold in range(folds):
        held_out = fold_of == fold
        held_out_rows = torch.from_numpy(held_out)
        fold_predictions = _classify(features[~held_out_rows], labels[~held_out], features[held_out_rows],
                                     labels[held_out], num_classes, k=k, linear_probe=linear_probe, seed=seed,
                                     check_cancelled=check_cancelled)
        pooled.knn[held_out] = fold_predictions.knn
        pooled.knn_top5_hit[held_out] = fold_predictions.knn_top5_hit
        if linear_probe:
            pooled.probe[held_out] = fold_predictions.probe
    return pooled


def _labelled_rows(features, labels, num_classes: int, name: str) -> tuple[torch.Tensor, np.ndarray]:
    """(float32 features, int64 labels) of the rows with a label >= 0."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64).reshape(-1)
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} {name}")
    if len(labels) and labels.max() >= num_classes:
        raise ValueError(f"{name} hold class {labels.max()} but there are only {num_classes} class names")
    keep = labels >= 0
    # boolean indexing copies, so a read-only memmap comes out as an array torch can wrap
    return torch.from_numpy(np.asarray(features[keep], dtype=np.float32)), labels[keep]


def _test_rows(test_features, test_labels, test_class_names, class_names, test_folder_name, folder_name
               ) -> tuple[torch.Tensor, np.ndarray]:
    """Labelled test rows with their labels mapped onto the train folder's class indices."""
    if test_labels is None or test_class_names is None:
        raise ValueError("test_features need test_labels and test_class_names")
    test_x, test_y = _labelled_rows(test_features, test_labels, len(test_class_names), "test labels")
    if len(test_y) == 0:
        raise UserError(f"{test_folder_name or 'the test folder'} has no labelled images: "
                        "put each class's images in a subfolder named after the class")
    train_index = {name: index for index, name in enumerate(class_names)}
    used_names = [test_class_names[label] for label in np.unique(test_y)]
    missing = [name for name in used_names if name not in train_index]
    if missing:
        shown = ", ".join(f"'{name}'" for name in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise UserError(f"{test_folder_name or 'the test folder'} has classes that "
                        f"{folder_name or 'the train folder'} lacks: {shown}")
    mapping = np.array([train_index.get(name, -1) for name in test_class_names], dtype=np.int64)
    return test_x, mapping[test_y]


def _stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold of each row: each class's rows, shuffled, are dealt round-robin over the folds,
    continuing where the previous class stopped, so folds differ in size by at most one row."""
    generator = np.random.default_rng(seed)
    order = np.concatenate([generator.permutation(np.flatnonzero(labels == label))
                            for label in np.unique(labels)])
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[order] = np.arange(len(labels)) % folds
    return fold_of


def _classify(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray,
              num_classes: int, *, k: int, linear_probe: bool, seed: int,
              check_cancelled: Callable[[], bool]) -> _Predictions:
    """kNN (and linear-probe) predictions of the test rows from the training rows."""
    if check_cancelled():
        raise EvaluationCancelled("evaluation cancelled")
    train_labels = torch.from_numpy(train_y)
    scores = knn_scores(train_x, train_labels, test_x, k=k, num_classes=num_classes)
    probe_predicted = None
    if linear_probe:
        if check_cancelled():
            raise EvaluationCancelled("evaluation cancelled")
        logits = linear_probe_logits(train_x, train_labels, test_x, num_classes=num_classes, seed=seed)
        probe_predicted = logits.argmax(dim=1).numpy()
    return _Predictions(true=test_y, knn=scores.argmax(dim=1).numpy(), knn_top5_hit=_top5_hits(scores, test_y),
                        probe=probe_predicted, smallest_training_set=len(train_y))


def _top5_hits(scores: torch.Tensor, true: np.ndarray) -> np.ndarray:
    """Whether each row's true class is among its TOP5 highest scores and got a vote at all
    (classes without a vote tie at 0, and a tie must not decide a hit); every class is a hit
    when there are no more than TOP5 classes."""
    if scores.shape[1] <= TOP5:
        return np.ones(len(true), dtype=bool)
    true_score = scores.gather(1, torch.from_numpy(true).view(-1, 1))
    classes_above = (scores > true_score).sum(dim=1)
    return ((true_score.squeeze(1) > 0) & (classes_above < TOP5)).numpy()


def _confusion(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: rows are true classes, columns predicted ones."""
    return np.bincount(true * num_classes + predicted, minlength=num_classes * num_classes) \
        .reshape(num_classes, num_classes).astype(np.int64)


def _per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Diagonal over row totals; nan for a class with no test image."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)
