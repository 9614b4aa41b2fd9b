"""Accuracy reports: kNN top-1/top-5 and the linear probe, cross-validated or train -> test."""

import numpy as np
import pytest
import torch

from ssl_engine.errors import UserError
from ssl_engine.eval import accuracy as accuracy_module
from ssl_engine.eval.accuracy import EvaluationCancelled, accuracy_report
from ssl_engine.eval.knn import knn_predict, knn_scores
from ssl_engine.eval.linear_probe import linear_probe_logits, linear_probe_top1


def _clusters(rng, centres, per_class, spread=1.0):
    """Gaussian clusters around `centres` (C, D): features (C * per_class, D) and labels."""
    labels = np.repeat(np.arange(len(centres)), per_class)
    features = centres[labels] + spread * rng.standard_normal((len(labels), centres.shape[1]))
    return features.astype(np.float32), labels


def _names(count):
    return [f"class {index}" for index in range(count)]


def test_knn_scores_are_the_votes_knn_predict_argmaxes():
    rng = np.random.default_rng(0)
    train = torch.from_numpy(rng.standard_normal((40, 6)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 7, 40))
    test = torch.from_numpy(rng.standard_normal((15, 6)).astype(np.float32))
    scores = knn_scores(train, labels, test, k=3, num_classes=9)
    assert scores.shape == (15, 9)
    assert torch.equal(scores.argmax(dim=1), knn_predict(train, labels, test, k=3, num_classes=9))
    # 3 neighbours vote: at most 3 classes score, and the best neighbour's class weighs exp(0) = 1
    assert ((scores > 0).sum(dim=1) <= 3).all()
    assert (scores[:, 7:] == 0).all()    # a class without a vote: nothing added, exactly 0
    assert (scores.max(dim=1).values >= 1.0 - 1e-6).all()


def test_linear_probe_logits_give_linear_probe_top1():
    rng = np.random.default_rng(1)
    centres = 3 * rng.standard_normal((4, 10))
    train_x, train_y = _clusters(rng, centres, 40, spread=2.0)
    test_x, test_y = _clusters(rng, centres, 25, spread=2.0)
    train_x, train_y, test_x, test_y = map(torch.from_numpy, (train_x, train_y, test_x, test_y))
    logits = linear_probe_logits(train_x, train_y, test_x, num_classes=6, seed=3, epochs=20)
    assert logits.shape == (100, 6)
    assert 0.5 < (logits.argmax(dim=1) == test_y).float().mean().item() < 1.0
    # exact equality only between the same fit: linear_probe_top1 fits the 4 classes present
    # (6 classes is another optimisation, whose rounding may move a borderline image elsewhere)
    four_class_logits = linear_probe_logits(train_x, train_y, test_x, seed=3, epochs=20)
    assert four_class_logits.shape == (100, 4)
    top1 = (four_class_logits.argmax(dim=1) == test_y).float().mean().item()
    assert top1 == linear_probe_top1(train_x, train_y, test_x, test_y, seed=3, epochs=20)
    assert 0.5 < top1 < 1.0


def test_well_separated_clusters_are_classified_perfectly():
    rng = np.random.default_rng(2)
    features, labels = _clusters(rng, 20 * rng.standard_normal((8, 16)), 25)
    report = accuracy_report(features, labels, _names(8), model_name="model", folder_name="pets")
    assert report.protocol == "5-fold cross-validation within pets"
    assert report.knn_top1 == 1.0 and report.knn_top5 == 1.0 and report.probe_top1 == 1.0
    assert np.array_equal(report.confusion_knn, np.diag(np.full(8, 25)))
    assert np.array_equal(report.confusion_probe, np.diag(np.full(8, 25)))
    assert np.all(report.per_class_knn == 1.0) and np.all(report.per_class_probe == 1.0)
    assert report.k == 20 and report.test_count == report.train_count == 200
    assert report.model_name == "model" and report.class_names == _names(8)


def test_random_labels_are_near_chance():
    rng = np.random.default_rng(3)
    features = rng.standard_normal((600, 16)).astype(np.float32)
    labels = rng.integers(0, 8, 600)
    report = accuracy_report(features, labels, _names(8), seed=1)
    assert 0.06 < report.knn_top1 < 0.2          # chance is 1/8
    assert 0.45 < report.knn_top5 < 0.8          # chance is 5/8
    assert 0.06 < report.probe_top1 < 0.2


def test_cross_validation_predicts_each_labelled_row_once(monkeypatch):
    rng = np.random.default_rng(4)
    features, labels = _clusters(rng, 2 * rng.standard_normal((3, 5)), 17)
    labels = labels.copy()
    labels[::10] = -1                           # unlabelled rows take no part
    labelled = labels >= 0
    seen = []
    real_knn_scores = accuracy_module.knn_scores

    def spying_knn_scores(train_x, train_y, test_x, **kwargs):
        seen.append(test_x.numpy().copy())
        return real_knn_scores(train_x, train_y, test_x, **kwargs)

    monkeypatch.setattr(accuracy_module, "knn_scores", spying_knn_scores)
    report = accuracy_report(features, labels, _names(3), folds=4, linear_probe=False)
    assert len(seen) == 4
    predicted_rows = np.concatenate(seen)
    assert len(predicted_rows) == labelled.sum()
    assert np.array_equal(np.unique(predicted_rows, axis=0), np.unique(features[labelled], axis=0))
    assert report.confusion_knn.sum() == labelled.sum() == report.test_count
    assert np.array_equal(report.confusion_knn.sum(axis=1), np.bincount(labels[labelled], minlength=3))
    assert report.probe_top1 is None and report.per_class_probe is None and report.confusion_probe is None


def test_folds_are_stratified_balanced_and_seeded():
    labels = np.repeat(np.arange(4), [10, 7, 3, 1])
    fold_of = accuracy_module._stratified_folds(labels, 5, seed=0)
    sizes = np.bincount(fold_of, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for label in range(4):
        per_fold = np.bincount(fold_of[labels == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1      # each class spread evenly
    assert np.array_equal(accuracy_module._stratified_folds(labels, 5, seed=0), fold_of)
    assert not np.array_equal(accuracy_module._stratified_folds(labels, 5, seed=1), fold_of)


def test_classes_smaller_than_the_folds():
    rng = np.random.default_rng(5)
    features, labels = _clusters(rng, 30 * rng.standard_normal((3, 8)), 10)
    keep = np.concatenate([np.arange(10), np.arange(10, 12), [20]])   # classes of 10, 2 and 1 images
    report = accuracy_report(features[keep], labels[keep], _names(3), k=3, folds=5)
    assert report.confusion_knn.sum() == 13
    # the 2-image class is recognised from its other image; the single image never can be
    assert report.per_class_knn[:2].tolist() == [1.0, 1.0]
    assert report.per_class_knn[2] == 0.0
    # more folds than images: one image per fold
    report = accuracy_report(features[:4], np.array([0, 0, 1, 1]), _names(2), folds=10, linear_probe=False)
    assert report.protocol.startswith("4-fold") and report.confusion_knn.sum() == 4 and report.k == 3


def test_test_folder_classes_are_matched_by_name():
    rng = np.random.default_rng(6)
    centres = {name: 20 * rng.standard_normal(12) for name in ("cat", "dog", "fox")}
    train_names = ["cat", "dog", "fox"]
    train_x, train_y = _clusters(rng, np.stack([centres[n] for n in train_names]), 20)
    test_names = ["fox", "cat", "dog"]             # another order: labels mean other classes
    test_x, test_y = _clusters(rng, np.stack([centres[n] for n in test_names]), [5, 7, 9])
    test_y = test_y.copy()
    unlabelled_x = test_x[:4]
    report = accuracy_report(train_x, train_y, train_names, folder_name="train", model_name="m",
                             test_features=np.concatenate([test_x, unlabelled_x]),
                             test_labels=np.concatenate([test_y, np.full(4, -1)]),
                             test_class_names=test_names, test_folder_name="test")
    assert report.protocol == "train -> test"
    assert report.knn_top1 == 1.0 and report.probe_top1 == 1.0
    assert report.class_names == train_names
    assert np.array_equal(report.confusion_knn, np.diag([7, 9, 5]))   # cat, dog, fox in the train order
    assert report.test_count == 21 and report.train_count == 60

    # a test folder with only some of the classes: the others have no accuracy
    only_dogs = test_y == test_names.index("dog")
    report = accuracy_report(train_x, train_y, train_names, test_features=test_x[only_dogs],
                             test_labels=test_y[only_dogs], test_class_names=test_names, linear_probe=False)
    assert report.per_class_knn[1] == 1.0 and np.isnan(report.per_class_knn[[0, 2]]).all()
    assert report.confusion_knn.sum() == 9


def test_per_class_accuracy_and_top5_agree_with_the_confusion_matrix():
    rng = np.random.default_rng(7)
    features, labels = _clusters(rng, rng.standard_normal((10, 6)), 30, spread=1.0)   # overlapping
    report = accuracy_report(features, labels, _names(10), seed=2)
    for confusion, per_class, top1 in ((report.confusion_knn, report.per_class_knn, report.knn_top1),
                                       (report.confusion_probe, report.per_class_probe, report.probe_top1)):
        assert confusion.dtype == np.int64 and confusion.sum() == 300
        assert np.allclose(per_class, np.diag(confusion) / confusion.sum(axis=1))
        assert top1 == pytest.approx(np.trace(confusion) / 300)
    assert 0.2 < report.knn_top1 < 0.95
    assert report.knn_top1 < report.knn_top5 < 1.0

    # 5 classes or fewer: every class is in the top 5
    few = labels < 4
    assert accuracy_report(features[few], labels[few], _names(4), linear_probe=False).knn_top5 == 1.0


def test_top5_needs_a_vote_and_a_rank_within_five():
    scores = torch.tensor([[6.0, 5, 4, 3, 2, 1, 0],
                           [6.0, 5, 4, 3, 2, 1, 0],
                           [1.0, 0, 0, 0, 0, 0, 0],
                           [1.0, 1, 1, 1, 1, 1, 1]])
    hits = accuracy_module._top5_hits(scores, np.array([4, 5, 3, 6]))
    assert hits.tolist() == [True, False, False, True]


def test_errors_are_user_errors():
    features = np.random.default_rng(8).standard_normal((10, 4)).astype(np.float32)
    two_classes = np.array([0] * 5 + [1] * 5)
    with pytest.raises(UserError, match="needs at least two classes"):
        accuracy_report(features, np.zeros(10, np.int64), ["a", "b"])
    with pytest.raises(UserError, match="needs at least two classes"):
        accuracy_report(features, np.full(10, -1), [])
    with pytest.raises(UserError, match="'zebra'"):
        accuracy_report(features, two_classes, ["a", "b"], test_features=features[:3],
                        test_labels=np.array([0, 1, 1]), test_class_names=["a", "zebra"],
                        test_folder_name="test")
    with pytest.raises(UserError, match="no labelled images"):
        accuracy_report(features, two_classes, ["a", "b"], test_features=features,
                        test_labels=np.full(10, -1), test_class_names=[])
    with pytest.raises(UserError, match="same model"):
        accuracy_report(features, two_classes, ["a", "b"], test_features=np.ones((2, 5), np.float32),
                        test_labels=np.array([0, 1]), test_class_names=["a", "b"])
    with pytest.raises(UserError, match="at least 2 folds"):
        accuracy_report(features, two_classes, ["a", "b"], folds=1)


def test_cancelled_is_polled_between_folds():
    rng = np.random.default_rng(9)
    features, labels = _clusters(rng, rng.standard_normal((2, 4)), 10)
    polls = []

    def cancel_at_poll(number):
        def cancelled():
            polls.append(1)
            return len(polls) >= number
        return cancelled

    report = accuracy_report(features, labels, _names(2), folds=3, linear_probe=False,
                             cancelled=cancel_at_poll(1000))
    assert len(polls) == 3 and report.confusion_knn.sum() == 20
    polls.clear()
    with pytest.raises(EvaluationCancelled):   # cancelled in the second fold, before its probe
        accuracy_report(features, labels, _names(2), folds=3, cancelled=cancel_at_poll(4))
    assert len(polls) == 4
    assert issubclass(EvaluationCancelled, UserError)


def test_seeded_and_torch_inputs_give_the_same_report():
    rng = np.random.default_rng(10)
    features, labels = _clusters(rng, 3 * rng.standard_normal((4, 8)), 20, spread=1.5)
    first = accuracy_report(features, labels, _names(4), seed=5)
    again = accuracy_report(torch.from_numpy(features), torch.from_numpy(labels), _names(4), seed=5)
    assert (first.knn_top1, first.probe_top1) == (again.knn_top1, again.probe_top1)
    assert np.array_equal(first.confusion_knn, again.confusion_knn)
    assert np.array_equal(first.confusion_probe, again.confusion_probe)
