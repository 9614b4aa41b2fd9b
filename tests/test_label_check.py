"""Possible label mistakes: images whose neighbours mostly carry another label."""

import numpy as np
import pytest

from ssl_engine.eval.label_check import possible_label_mistakes


def two_clusters(seed=0, per_class=30):
    generator = np.random.default_rng(seed)
    centres = np.array([[6.0, 0, 0, 0], [0, 6.0, 0, 0]], dtype=np.float32)
    features = np.concatenate([centre + generator.normal(size=(per_class, 4)) for centre in centres]).astype(np.float32)
    labels = np.repeat([0, 1], per_class)
    return features, labels


def test_an_image_filed_under_the_other_cluster_is_listed_first_with_its_neighbours_label():
    features, labels = two_clusters()
    labels = labels.copy()
    labels[3] = 1  # a cluster-0 image filed as class 1
    suspects = possible_label_mistakes(features, labels, k=10)
    assert [s.row for s in suspects] == [3]
    suspect = suspects[0]
    assert suspect.label == 1 and suspect.suggested == 0 and suspect.share == pytest.approx(1.0)
    assert len(suspect.neighbours) == 10 and 3 not in suspect.neighbours.tolist()
    assert all(labels[n] == 0 for n in suspect.neighbours)


def test_clean_labels_and_unlabelled_rows_give_no_suspect():
    features, labels = two_clusters(seed=1)
    assert possible_label_mistakes(features, labels) == []
    unlabelled = labels.copy()
    unlabelled[5] = -1
    assert possible_label_mistakes(features, unlabelled) == []
    assert possible_label_mistakes(features, np.zeros(len(labels), np.int64)) == []  # one class
    with pytest.raises(ValueError):
        possible_label_mistakes(features, labels[:-1])
