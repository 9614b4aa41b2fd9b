"""The evaluation session without Qt: a real checkpoint from a short training run, real image
folders written by the test, the session driven as the Evaluate tab and the command line drive it."""

import csv
import os
import shutil

import numpy as np
import pytest

from ssl_engine.data import generate_shapes
from ssl_engine.errors import UserError
from ssl_engine.eval.accuracy import accuracy_report
from ssl_engine.eval.embedded import RANDOM_INIT, EmbeddedFolders, ModelChoice, embed_models, open_models
from ssl_engine.eval.folder_embedding import EmbeddingCancelled, embed_folder, embed_image_file
from ssl_engine.eval.model_source import open_model
from ssl_engine.eval.neighbours import near_duplicates, nearest_neighbours
from ssl_engine.eval.results import (Protocol, check_labels, cluster, find_duplicates, neighbours_of, project,
                                     protocols)
from ssl_engine.eval.session import (ACCURACY, CLUSTERS, EMBEDDINGS, FOLDERS, NEIGHBOURS, PRIMARY, PROJECTION, TAGS,
                                     TOPICS, EvaluationSession)
from tests.helpers import save_image_set


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A labelled train folder with three copies of one image, a labelled test folder and a flat one."""
    root = tmp_path_factory.mktemp("session_folders")
    paths = save_image_set(generate_shapes(40, 32, seed=1), root / "train")
    for n in range(3):
        shutil.copyfile(paths[1], paths[1].parent / f"copy{n}.png")
    save_image_set(generate_shapes(20, 32, seed=2), root / "test")
    save_image_set(generate_shapes(6, 32, seed=3), root / "flat", labelled=False)
    return root


@pytest.fixture(scope="module")
def model(trained_run):
    return open_model(trained_run)


def recorded(session: EvaluationSession) -> list[str]:
    """The topics the session announces, in order, as they come."""
    heard = []
    for topic in TOPICS:
        session.events.connect(topic, lambda topic=topic: heard.append(topic))
    return heard


def embedded_session(tmp_path, model, folders, *names, floor=True):
    session = EvaluationSession(cache_dir=str(tmp_path / "cache"), device="cpu")
    session.set_folders([str(folders / name) for name in names])
    models = open_models([ModelChoice("trained", str(model.source))] + ([RANDOM_INIT] if floor else []),
                         {str(model.source): model})
    session.embed(models)
    return session


def test_folders_and_choices_say_what_to_embed(tmp_path, folders):
    session = EvaluationSession(cache_dir=str(tmp_path))
    heard = recorded(session)
    assert session.wanted() is None
    trained = ModelChoice("trained", "runs/x")
    session.choose(trained, trained)   # the same model twice: nothing to compare with
    assert session.compare_choice is None
    session.set_folders([str(folders / "train"), str(folders / "train") + os.sep, str(folders / "test")])
    assert session.folders == [str(folders / "train"), str(folders / "test")]
    session.set_folders(list(session.folders))   # unchanged: no announcement
    assert heard == [FOLDERS]
    session.choose(trained, RANDOM_INIT)
    assert session.wanted() == (trained, RANDOM_INIT, (str(folders / "train"), str(folders / "test")))


def test_embedding_the_folders_with_a_checkpoint_and_its_floor(tmp_path, model, folders):
    session = EvaluationSession(cache_dir=str(tmp_path / "cache"), device="cpu")
    heard = recorded(session)
    session.set_folders([str(folders / "train"), str(folders / "test")])
    # the floor takes the architecture and normalisation of the checkpoint beside it, wherever it is listed
    models = open_models([RANDOM_INIT, ModelChoice("trained", str(model.source))], {str(model.source): model})
    assert models[1] is model and models[0].name == f"{model.config.backbone.name} at random init"
    assert (models[0].image_size, models[0].mean, models[0].std) == (model.image_size, model.mean, model.std)
    finished = []
    primary, compared = session.embed([model, models[0]], finished=lambda m, f, e: finished.append((m, f)))
    assert finished == [(0, 0), (0, 1), (1, 0), (1, 1)]   # model by model
    assert heard == [FOLDERS, PRIMARY, EMBEDDINGS]
    assert session.primary is primary and session.compared is compared
    expected = embed_folder(model, str(folders / "train"), cache_dir="", device="cpu")
    np.testing.assert_allclose(primary.folders[0].features, expected.features, rtol=1e-4, atol=1e-5)
    assert primary.folder_names == ["train", "test"]
    assert primary.combined.paths == expected.paths + primary.folders[1].paths
    np.testing.assert_array_equal(primary.folder_of, [0] * len(expected.paths) + [1] * 20)
    # the trained model is kept for its checkpoint while the file is unchanged
    choice = ModelChoice("trained", str(model.source))
    assert session.models.for_choices([choice, RANDOM_INIT]) == {str(model.source): model}


def test_a_cancelled_embedding_stops_before_the_next_folder(tmp_path, model, folders):
    calls = []
    with pytest.raises(EmbeddingCancelled):
        embed_models([model], [str(folders / "train"), str(folders / "test")], cache_dir=str(tmp_path), device="cpu",
                     starting=lambda m, f: calls.append(f), cancelled=lambda: len(calls) > 0)
    assert calls == [0]


def test_results_stay_only_with_the_embeddings_they_came_from(tmp_path, model, folders):
    session = embedded_session(tmp_path, model, folders, "train", floor=False)
    combined = session.primary.combined
    heard = recorded(session)
    pca = project(combined, "PCA")
    assert session.accept(pca) and session.projection is pca
    clusters = cluster(combined, 3)
    assert session.accept(clusters) and sorted(np.unique(session.clusters.values).tolist()) == [0, 1, 2]
    assert heard == [PROJECTION, CLUSTERS]
    # other embeddings (the same folder again): every result goes, and a late one is refused
    again = EmbeddedFolders(model, [embed_folder(model, str(folders / "train"), cache_dir=str(tmp_path / "cache"))])
    session.set_embeddings(again, None)
    assert session.projection is None and session.clusters is None and session.accuracy is None
    assert not session.accept(project(combined, "PCA")) and session.projection is None
    assert heard == [PROJECTION, CLUSTERS, PRIMARY, EMBEDDINGS]
    # the same models set again: only the accuracy is cleared
    session.set_embeddings(again, None)
    assert heard[-1] == EMBEDDINGS and heard.count(PRIMARY) == 1


def test_neighbours_of_an_image_of_the_folders_and_of_an_outside_image(tmp_path, model, folders):
    session = embedded_session(tmp_path, model, folders, "train", floor=False)
    combined = session.primary.combined
    heard = recorded(session)
    session.query_image(4)
    found = session.neighbours
    expected, similarities = nearest_neighbours(combined.features, combined.features[4][None], k=12,
                                                exclude=np.array([4]))
    assert found.query_index == 4 and found.query_path == combined.paths[4]
    np.testing.assert_array_equal(found.indices, expected[0])
    np.testing.assert_allclose(found.similarities, similarities[0], rtol=1e-6)
    session.set_neighbour_count(3)   # the same query, fewer neighbours
    assert session.neighbours.query_index == 4
    np.testing.assert_array_equal(session.neighbours.indices, expected[0][:3])
    session.query_image(len(combined.paths))   # no such row: nothing changes
    assert heard == [NEIGHBOURS, NEIGHBOURS]
    # an outside copy of image 4 finds image 4 first, at similarity 1
    outside = tmp_path / "outside.png"
    shutil.copyfile(combined.paths[4], outside)
    session.query_outside(str(outside), *embed_image_file(model, str(outside)))
    found = session.neighbours
    assert found.query_index is None and found.query_path == str(outside) and len(found.indices) == 3
    assert found.indices[0] == 4 and found.similarities[0] == pytest.approx(1.0, abs=1e-5)
    # k is clamped to the other images
    assert len(neighbours_of(combined, combined.features[0], 10_000, query_index=0).indices) == len(combined.paths) - 1


def test_duplicates_label_check_and_accuracy(tmp_path, model, folders):
    session = embedded_session(tmp_path, model, folders, "train", "test")
    combined = session.primary.combined
    copies = {path for path in combined.paths if os.path.basename(path).startswith("copy")}
    found = find_duplicates(combined, 0.999)
    assert session.accept(found) and not found.suggested and found.threshold == pytest.approx(0.999)
    reference = near_duplicates(combined.features, 0.999, centre=True)
    np.testing.assert_array_equal(found.pairs.first, reference.first)
    assert any(copies < {combined.paths[row] for row in group} for group in found.groups)   # with their original
    suggested = find_duplicates(combined, None)
    assert suggested.suggested and suggested.threshold >= 0.8
    check = check_labels(combined, 5)
    assert session.accept(check) and check.k == 5
    assert all(combined.labels[suspect.row] == suspect.label for suspect in check.suspects)

    assert session.protocols() == [Protocol(0), Protocol(1), Protocol(0, 1), Protocol(1, 0)]
    heard = recorded(session)
    result = session.measure_accuracy(Protocol(0, 1), k=5)
    assert heard == [ACCURACY] and session.accuracy is result
    for report, embedded in zip(result.reports, (session.primary, session.compared)):
        train, test = embedded.folders
        expected = accuracy_report(train.features, train.labels, train.class_names, model_name=embedded.model.name,
                                   folder_name="train", test_features=test.features, test_labels=test.labels,
                                   test_class_names=test.class_names, test_folder_name="test", k=5, seed=0)
        assert report.protocol == "train -> test" and report.model_name == embedded.model.name
        assert report.knn_top1 == pytest.approx(expected.knn_top1)
        np.testing.assert_array_equal(report.confusion_knn, expected.confusion_knn)
    # a result measured with a model the session no longer has is refused
    session.set_embeddings(session.primary, None)
    assert session.accuracy is None and not session.accept(result)


def test_an_unlabelled_folder_allows_no_protocol(tmp_path, model, folders):
    session = embedded_session(tmp_path, model, folders, "flat", floor=False)
    assert not session.primary.combined.has_labels
    assert session.protocols() == [] and protocols(None) == []


def test_tags_are_the_sessions_and_outlive_it(tmp_path, model, folders):
    session = embedded_session(tmp_path, model, folders, "train", "test", floor=False)
    heard = recorded(session)
    session.load_tags()
    groups, names = session.tag_groups()
    assert names == [] and (groups == -1).all() and len(groups) == len(session.primary.combined.paths)
    assert session.tag("  check  ", np.array([0, 3, 50])) == 3
    assert session.tag("blurry", np.array([3])) == 1
    assert session.untag("check", np.array([0])) == 1
    assert heard == [TAGS, TAGS, TAGS, TAGS]
    groups, names = session.tag_groups()
    assert names == ["blurry", "check"] and groups[3] == 0 and groups[50] == 1 and groups[0] == -1
    with pytest.raises(UserError, match="needs a name"):
        session.tag("   ", np.array([1]))
    reopened = embedded_session(tmp_path, model, folders, "train", "test", floor=False)
    reopened.load_tags()
    paths = session.primary.combined.paths
    assert [reopened.primary.combined.paths[row] for row in reopened.tags.rows("check")] == [paths[3], paths[50]]


def test_exports_write_what_the_session_holds(tmp_path, model, folders):
    empty = EvaluationSession(cache_dir=str(tmp_path))
    for export in (lambda: empty.exports.embeddings(str(tmp_path / "x.npz")),
                   lambda: empty.exports.neighbours(str(tmp_path / "x.csv")),
                   lambda: empty.exports.accuracy(str(tmp_path / "x.csv"))):
        with pytest.raises(UserError):
            export()
    session = embedded_session(tmp_path, model, folders, "train", floor=False)
    combined = session.primary.combined
    job = session.exports.embeddings(str(tmp_path / "features.npz"))
    session.set_embeddings(None, None)   # the job writes what there was when it was made
    assert job() == str(tmp_path / "features.npz")
    with np.load(tmp_path / "features.npz") as saved:
        np.testing.assert_array_equal(saved["features"], combined.features)
        assert saved["paths"].tolist() == combined.paths

    session = embedded_session(tmp_path, model, folders, "train", floor=False)
    combined = session.primary.combined
    session.query_image(2)
    session.exports.neighbours(str(tmp_path / "neighbours.csv"))()
    with open(tmp_path / "neighbours.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["neighbour"] for row in rows] == [combined.paths[i] for i in session.neighbours.indices]
    assert {row["query"] for row in rows} == {combined.paths[2]}
    session.exports.every_neighbour(str(tmp_path / "all.csv"), 2)()
    with open(tmp_path / "all.csv", newline="") as file:
        assert len(list(csv.DictReader(file))) == 2 * len(combined.paths)
    selected = np.array([0, 5])
    session.exports.selection_list(str(tmp_path / "selection.csv"), selected)()
    with open(tmp_path / "selection.csv", newline="") as file:
        assert [row["path"] for row in csv.DictReader(file)] == [combined.paths[i] for i in selected]
    assert session.exports.selection_copy(selected, str(tmp_path / "picked"))() == \
        f"2 images into {tmp_path / 'picked'}"
    assert len(list((tmp_path / "picked").rglob("*.*"))) == 2
    session.accept(find_duplicates(combined, 0.999))
    session.exports.duplicates(str(tmp_path / "duplicates.csv"))()
    with open(tmp_path / "duplicates.csv", newline="") as file:
        assert len(list(csv.DictReader(file))) == len(session.duplicates.pairs)
    session.measure_accuracy(Protocol(0), k=5, linear_probe=False)
    session.exports.accuracy(str(tmp_path / "accuracy.csv"))()
    with open(tmp_path / "accuracy.csv", newline="") as file:
        overall = [row for row in csv.DictReader(file) if row["class"] == "all" and row["metric"] == "top1"]
    assert float(overall[0]["value"]) == pytest.approx(session.accuracy.reports[0].knn_top1, abs=1e-6)
