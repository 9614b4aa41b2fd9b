"""Exports read back: embeddings (.npz, CSV), neighbour lists, near-duplicates and accuracy tables,
from a real folder of digit images embedded by a randomly initialised backbone."""

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from ssl_engine.data.digits import load_digits
from ssl_engine.errors import UserError
from ssl_engine.eval.accuracy import accuracy_report
from ssl_engine.eval.export import save_accuracy_csv, save_duplicates_csv, save_embeddings, save_neighbours_csv
from ssl_engine.eval.folder_embedding import embed_folder
from ssl_engine.eval.model_source import random_init_model
from ssl_engine.eval.neighbours import near_duplicates, nearest_neighbours

PER_CLASS = 12
# class folders and file names a naive CSV writer would break: commas, quotes, non-ASCII
CLASS_FOLDERS = {0: 'zero, "nil"', 1: "ünï 猫", **{digit: f"digit {digit}" for digit in range(2, 10)}}


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def embedded_digits(tmp_path_factory):
    """A labelled folder of PER_CLASS digits per class, two of them copied under other names,
    embedded by small_cnn at random init."""
    root = tmp_path_factory.mktemp("digits") / "my, \"digits\" ü"
    digits = load_digits(image_size=32)
    for digit, folder_name in CLASS_FOLDERS.items():
        folder = root / folder_name
        folder.mkdir(parents=True)
        rows = np.flatnonzero(digits.labels.numpy() == digit)[:PER_CLASS]
        for number, row in enumerate(rows):
            Image.fromarray(digits.images[row].permute(1, 2, 0).numpy()).save(folder / f'{number}, "é".png')
    shutil.copy(root / "digit 5" / '0, "é".png', root / "digit 5" / "copy of 0.png")
    shutil.copy(root / "digit 7" / '3, "é".png', root / "digit 7" / "copy of 3.png")
    model = random_init_model(seed=0)
    embedding = embed_folder(model, str(root), cache_dir="", device="cpu")
    return model, embedding


def test_embeddings_round_trip_as_npz_and_csv(embedded_digits, tmp_path):
    _, embedding = embedded_digits
    assert len(embedding.paths) == 10 * PER_CLASS + 2 and embedding.has_labels

    written = save_embeddings(embedding, str(tmp_path / "embedding.npz"))
    with np.load(written) as archive:   # no pickle needed
        assert np.array_equal(archive["features"], embedding.features)
        assert archive["paths"].tolist() == embedding.paths
        assert np.array_equal(archive["labels"], embedding.labels)
        assert archive["class_names"].tolist() == embedding.class_names
        assert str(archive["model_key"]) == embedding.model_key

    header, rows = _read_csv(save_embeddings(embedding, str(tmp_path / "embedding.CSV")))
    dim = embedding.features.shape[1]
    assert header == ["path", "label", "class", *(f"f{column}" for column in range(dim))]
    assert [row[0] for row in rows] == embedding.paths
    assert [int(row[1]) for row in rows] == embedding.labels.tolist()
    assert [row[2] for row in rows] == [embedding.class_names[label] for label in embedding.labels]
    assert {row[2] for row in rows} == set(CLASS_FOLDERS.values())
    assert np.array_equal(np.array([row[3:] for row in rows], dtype=np.float32), embedding.features)


def test_unlabelled_embedding_csv_and_bad_extension(tmp_path):
    features = np.arange(6, dtype=np.float32).reshape(3, 2) / 7
    embedding = SimpleNamespace(features=features, paths=["a.png", "b,\n.png", "ç.png"],
                                labels=np.full(3, -1), class_names=[], model_key="k")
    _, rows = _read_csv(save_embeddings(embedding, tmp_path / "flat.csv"))
    assert [row[:3] for row in rows] == [["a.png", "-1", ""], ["b,\n.png", "-1", ""], ["ç.png", "-1", ""]]
    assert np.array_equal(np.array([row[3:] for row in rows], dtype=np.float32), features)
    with pytest.raises(UserError, match=r"\.npz or \.csv"):
        save_embeddings(embedding, str(tmp_path / "embedding.txt"))


def test_neighbours_csv(embedded_digits, tmp_path):
    _, embedding = embedded_digits
    queries = np.array([0, 5, 40])
    indices, similarities = nearest_neighbours(embedding.features, embedding.features[queries], k=4,
                                               exclude=queries)
    header, rows = _read_csv(save_neighbours_csv(str(tmp_path / "neighbours.csv"), embedding.paths, queries,
                                                 indices, similarities))
    assert header == ["query", "rank", "neighbour", "similarity"]
    assert len(rows) == 12
    for number, row in enumerate(rows):
        query, rank = divmod(number, 4)
        assert row[0] == embedding.paths[queries[query]]
        assert int(row[1]) == rank + 1
        assert row[2] == embedding.paths[indices[query, rank]] != row[0]
        assert float(row[3]) == pytest.approx(similarities[query, rank], abs=1e-6)


def test_duplicates_csv_lists_the_copied_files(embedded_digits, tmp_path):
    _, embedding = embedded_digits
    pairs = near_duplicates(embedding.features, threshold=0.9999)
    header, rows = _read_csv(save_duplicates_csv(str(tmp_path / "duplicates.csv"), embedding.paths, pairs))
    assert header == ["group", "first", "second", "similarity"]
    found = sorted((Path(row[1]).parts[-2:], Path(row[2]).parts[-2:]) for row in rows)
    assert found == [(("digit 5", '0, "é".png'), ("digit 5", "copy of 0.png")),
                     (("digit 7", '3, "é".png'), ("digit 7", "copy of 3.png"))]
    assert sorted(row[0] for row in rows) == ["1", "2"]
    assert all(float(row[3]) == pytest.approx(1.0, abs=1e-5) for row in rows)


def test_accuracy_on_a_real_folder_and_its_csv(embedded_digits, tmp_path):
    model, embedding = embedded_digits
    with_probe = accuracy_report(embedding.features, embedding.labels, embedding.class_names,
                                 model_name=model.name, folder_name="digits", k=5)
    assert 0.5 < with_probe.knn_top1 <= with_probe.knn_top5   # chance is 0.1
    without_probe = accuracy_report(embedding.features, embedding.labels, embedding.class_names,
                                    model_name="another, \"model\"", folder_name="digits", k=5, linear_probe=False)
    header, rows = _read_csv(save_accuracy_csv(str(tmp_path / "accuracy.csv"), [with_probe, without_probe]))
    assert header == ["model", "protocol", "classifier", "class", "metric", "value", "images"]
    table = {(row[0], row[2], row[3], row[4]): (row[5], int(row[6])) for row in rows}
    assert len(table) == len(rows) == (3 + 2 * 10) + (2 + 10)
    assert all(row[1] == "5-fold cross-validation within digits" for row in rows)
    name = model.name
    assert float(table[name, "knn", "all", "top1"][0]) == pytest.approx(with_probe.knn_top1, abs=1e-6)
    assert float(table[name, "knn", "all", "top5"][0]) == pytest.approx(with_probe.knn_top5, abs=1e-6)
    assert float(table[name, "probe", "all", "top1"][0]) == pytest.approx(with_probe.probe_top1, abs=1e-6)
    assert table[name, "knn", "all", "top1"][1] == 10 * PER_CLASS + 2
    for index, class_name in enumerate(embedding.class_names):
        value, images = table[name, "probe", class_name, "top1"]
        assert float(value) == pytest.approx(with_probe.per_class_probe[index], abs=1e-6)
        assert images == with_probe.confusion_probe[index].sum()
    assert ("another, \"model\"", "probe", "all", "top1") not in table
    assert table["another, \"model\"", "knn", "digit 5", "top1"][1] == PER_CLASS + 1


def test_accuracy_csv_leaves_classes_without_test_images_empty(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((20, 4)).astype(np.float32)
    labels = np.repeat([0, 1], 10)
    report = accuracy_report(features, labels, ["a", "b"], test_features=features[:3],
                             test_labels=np.zeros(3, np.int64), test_class_names=["a"], linear_probe=False)
    _, rows = _read_csv(save_accuracy_csv(tmp_path / "accuracy.csv", [report]))
    per_class = {row[3]: (row[5], row[6]) for row in rows if row[3] != "all"}
    assert per_class["b"] == ("", "0") and per_class["a"][1] == "3"
