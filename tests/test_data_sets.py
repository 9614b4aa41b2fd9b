"""The bundled data sets (digits, generated shapes), the split, and the source errors."""

import time

import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from ssl_engine.data import SOURCES, ImageSet, generate_shapes, load_data, stratified_split
from ssl_engine.errors import ConfigError, DataError


def raw_pixel_knn_accuracy(train: ImageSet, test: ImageSet, metric: str) -> float:
    knn = KNeighborsClassifier(n_neighbors=20, metric=metric)
    knn.fit(train.images.flatten(1).float().numpy(), train.labels.numpy())
    return knn.score(test.images.flatten(1).float().numpy(), test.labels.numpy())


def test_shapes_same_seed_same_bytes_other_seed_differs():
    first = generate_shapes(300, 32, seed=3)
    again = generate_shapes(300, 32, seed=3)
    other = generate_shapes(300, 32, seed=4)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.images, other.images)


def test_shapes_classes_balanced_and_values_in_range():
    shapes = generate_shapes(1003, 24, seed=0)
    assert len(shapes.class_names) >= 10 and len(set(shapes.class_names)) == len(shapes.class_names)
    counts = torch.bincount(shapes.labels, minlength=len(shapes.class_names))
    assert counts.max() - counts.min() <= 1
    assert shapes.images.dtype == torch.uint8 and shapes.images.shape == (1003, 3, 24, 24)
    assert shapes.images.is_contiguous() and shapes.has_labels
    assert shapes.images.min() < 20 and shapes.images.max() > 235
    # every image has some variation (a shape on a background), none is flat
    per_image_range = shapes.images.flatten(1).max(1).values - shapes.images.flatten(1).min(1).values
    assert per_image_range.min() > 60


def test_raw_pixel_knn_is_weak_on_shapes_but_strong_on_digits():
    shapes = load_data("shapes", 32, shapes_count=4000, seed=0)
    digits = load_data("digits", 32, seed=0)
    for metric in ("cosine", "euclidean"):
        assert raw_pixel_knn_accuracy(shapes.train, shapes.test, metric) < 0.40
        assert raw_pixel_knn_accuracy(digits.train, digits.test, metric) > 0.90


def test_digits_shape_labels_and_split():
    splits = load_data("digits", 16, test_fraction=0.25, seed=1)
    assert splits.name == "digits" and splits.skipped == []
    assert len(splits.train) + len(splits.test) == 1797
    assert splits.train.class_names == [str(d) for d in range(10)]
    images = splits.train.images
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 16, 16)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])
    assert images.max() > 240 and images.min() == 0
    assert set(splits.test.labels.tolist()) == set(range(10))
    assert abs(len(splits.test) / 1797 - 0.25) < 0.01


def test_stratified_split_proportions_and_seeding():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 1 + [3] * 2 + [-1] * 5)
    image_set = ImageSet(images=torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1)
                         .expand(-1, 3, 2, 2).contiguous(),
                         labels=labels, class_names=["a", "b", "c", "d"],
                         paths=[f"img{i}.png" for i in range(len(labels))])
    train, test = stratified_split(image_set, 0.2, seed=5)
    assert torch.bincount(test.labels, minlength=4).tolist() == [10, 6, 0, 0]
    assert torch.bincount(train.labels[train.labels >= 0], minlength=4).tolist() == [40, 24, 1, 2]
    assert (train.labels == -1).sum() == 5 and (test.labels == -1).sum() == 0
    assert train.paths[0] == f"img{int(train.images[0, 0, 0, 0])}.png"  # paths follow images
    again, _ = stratified_split(image_set, 0.2, seed=5)
    other, _ = stratified_split(image_set, 0.2, seed=6)
    assert train.paths == again.paths and train.paths != other.paths
    # a large fraction still keeps one training image per class
    train, test = stratified_split(image_set, 0.99, seed=0)
    assert set(train.labels[train.labels >= 0].tolist()) == {0, 1, 2, 3}


def test_image_set_subset_and_has_labels():
    image_set = ImageSet(images=torch.zeros(4, 3, 2, 2, dtype=torch.uint8),
                         labels=torch.tensor([-1, -1, 0, 1]), class_names=["x", "y"],
                         paths=["a", "b", "c", "d"])
    part = image_set.subset([3, 0])
    assert len(part) == 2 and part.paths == ["d", "a"] and part.class_names == ["x", "y"]
    assert part.has_labels and not image_set.subset(torch.tensor([0, 1])).has_labels


def test_shapes_split_keeps_classes_and_other_sizes_work():
    splits = load_data("shapes", 48, shapes_count=200, test_fraction=0.2, seed=2)
    assert splits.train.images.shape[1:] == (3, 48, 48)
    assert len(splits.train) == 160 and len(splits.test) == 40
    assert torch.bincount(splits.test.labels).tolist() == [4] * 10


def test_unknown_source_names_the_valid_ones():
    with pytest.raises(DataError) as error:
        load_data("mnist")
    for name in SOURCES:
        assert name in str(error.value)
    assert "folder:" in str(error.value)


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError):
        load_data("digits", image_size=0)
    with pytest.raises(ConfigError):
        load_data("digits", test_fraction=1.0)


@pytest.mark.parametrize("source", ["cifar10", "cifar100", "stl10"])
def test_torchvision_set_missing_without_download_is_a_data_error(source, tmp_path):
    with pytest.raises(DataError) as error:
        load_data(source, root=str(tmp_path), download=False)
    message = str(error.value)
    assert str(tmp_path) in message and "digits" in message and "shapes" in message
    assert "\n" not in message


def test_torchvision_download_without_network_fails_fast(tmp_path, monkeypatch):
    from torchvision import datasets

    # a port nobody listens on stands in for a machine without a network
    monkeypatch.setattr(datasets.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    started = time.perf_counter()
    with pytest.raises(DataError) as error:
        load_data("cifar10", root=str(tmp_path / "data"), download=True)
    assert time.perf_counter() - started < 15
    message = str(error.value)
    assert "cifar10" in message and str(tmp_path / "data") in message and "shapes" in message

