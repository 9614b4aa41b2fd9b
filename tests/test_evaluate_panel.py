"""The Evaluate tab driven as a user drives it: a real checkpoint from a short training run, real
image folders written from the shapes set, real widgets (pytest-qt, offscreen)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from app.main_window import EVALUATED_FOLDERS_KEY, MainWindow  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from app.widgets.evaluate_panel import EvaluatePanel  # noqa: E402
from app.widgets.map_tags import SHOW_UNTAGGED  # noqa: E402
from ssl_engine.data.shapes import SHAPE_NAMES, generate_shapes  # noqa: E402
from ssl_engine.eval import embedded as embedded_module  # noqa: E402
from ssl_engine.eval.accuracy import accuracy_report  # noqa: E402
from ssl_engine.eval.embedded import RANDOM_INIT  # noqa: E402
from ssl_engine.eval.neighbours import nearest_neighbours  # noqa: E402

from tests.helpers import tiny_config  # noqa: E402

CLASSES = 4          # shape classes written to the folders
PER_CLASS = 12
TIMEOUT_MS = 20000


def write_shapes_folder(root, count: int, seed: int, classes: int = CLASSES, broken: bool = True):
    """Shapes of the first `classes` classes as PNG files in one subfolder per class, and one broken file."""
    images = generate_shapes(count * 10 // classes, image_size=32, seed=seed)
    written = 0
    for index, (image, label) in enumerate(zip(images.images, images.labels.tolist())):
        if label >= classes:
            continue
        folder = root / SHAPE_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:04d}.png")
        written += 1
    if broken:
        (root / SHAPE_NAMES[0] / "broken.png").write_bytes(b"not an image at all")
    return written


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders") / "shapes_eval"
    count = write_shapes_folder(root, CLASSES * PER_CLASS, seed=7)
    return root, count


@pytest.fixture(scope="session")
def test_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders") / "shapes_test"
    count = write_shapes_folder(root, CLASSES * PER_CLASS // 2, seed=8, broken=False)
    return root, count


def open_panel(qtbot, tmp_path, runs_dir, folders=()) -> EvaluatePanel:
    panel = EvaluatePanel(runs_dir=str(runs_dir), cache_dir=str(tmp_path / "cache"), device="cpu")
    qtbot.addWidget(panel)
    panel.resize(1280, 800)
    panel.show()
    if folders:
        panel.set_folders([str(folder) for folder in folders])
    return panel


def wait_embedded(qtbot, panel, compared=False):
    session = panel.session
    qtbot.waitUntil(lambda: not panel.embedding() and session.primary is not None
                    and (not compared or session.compared is not None), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: session.projection is not None, timeout=TIMEOUT_MS)


def embed_in_batches_of(monkeypatch, size: int) -> None:
    """Folders embedded `size` images at a time, so that there is a middle to cancel in."""
    embed_folder = embedded_module.embed_folder
    monkeypatch.setattr(embedded_module, "embed_folder",
                        lambda *args, **options: embed_folder(*args, **{**options, "batch_size": size}))


def map_point_count(panel) -> int:
    """Points drawn as dots on the map, in their groups' colours (not the selection's and highlight's marks)."""
    return sum(len(item.data) for item in panel.map.plot_item.listDataItems() if isinstance(item, pg.ScatterPlotItem)
               and item not in (panel.map._selection_rings, panel.map._selection_dots,
                                panel.map._highlight_rings))


def choose(combo, text: str) -> None:
    """Pick an entry as a user does (which also emits `activated`)."""
    index = combo.findText(text)
    assert index >= 0, text
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def messages(widget) -> list[QMessageBox]:
    return [box for box in widget.findChildren(QMessageBox, "evaluate_message") if box.isVisible()]


def test_the_newest_run_is_the_default_model_and_the_floor_is_compared(qtbot, tmp_path, trained_run):
    trained_run = shutil.copytree(trained_run, tmp_path / "runs" / trained_run.name)
    panel = open_panel(qtbot, tmp_path, trained_run.parent)
    label = panel.sources.model_combo.currentText()
    assert label.startswith("simclr · shapes · kNN ") and "%" in label
    assert panel.session.model_choice.checkpoint == str(trained_run)
    assert panel.session.compare_choice == RANDOM_INIT
    texts = [panel.sources.model_combo.itemText(i) for i in range(panel.sources.model_combo.count())]
    assert texts[-2:] == ["Random init (floor)", "Open checkpoint…"]
    # a run that finishes later is listed and becomes the chosen model
    copy = trained_run.parent / "zz-later-run"
    shutil.copytree(trained_run, copy)
    os.utime(copy / "checkpoints" / "last.pt")
    panel.run_finished(str(copy))
    assert panel.session.model_choice.checkpoint == str(copy)
    assert panel.session.compare_choice == RANDOM_INIT
    # the user's own choice of comparison stays through later listings
    choose(panel.sources.compare_combo, "none")
    panel.run_finished(str(trained_run))
    assert panel.session.model_choice.checkpoint == str(trained_run) and panel.session.compare_choice is None


def test_embedding_a_folder_draws_every_image_and_reports_the_broken_file(qtbot, tmp_path, trained_run,
                                                                         shapes_folder):
    folder, count = shapes_folder
    panel = open_panel(qtbot, tmp_path, trained_run.parent, [folder])
    wait_embedded(qtbot, panel, compared=True)
    combined = panel.session.primary.combined
    assert len(combined.paths) == count
    assert map_point_count(panel) == count
    assert panel.session.primary.model.source.startswith(str(trained_run))
    assert panel.session.compared.model.name.endswith("at random init")
    skipped = panel.sources.skipped_label
    assert skipped.isVisible() and skipped.text().count("1 file skipped") == 1
    assert "broken.png" in skipped.toolTip()
    [chip] = panel.sources.chips_shown()
    assert chip.label.text() == f"shapes_eval · {count} images · labelled"
    assert f"{count} images of shapes_eval embedded" in panel.sources.status.text()
    assert panel.session.duplicates is None and not panel.duplicates.computing()   # not searched until shown
    # colour by k-means: computed off the UI thread, one cluster per point
    panel.map_tab.colour_combo.setCurrentText("k-means cluster")
    panel.map_tab.clusters_spin.setValue(3)
    qtbot.waitUntil(lambda: panel.session.clusters is not None and panel.session.clusters.k == 3,
                    timeout=TIMEOUT_MS)
    assert sorted(np.unique(panel.session.clusters.values).tolist()) == [0, 1, 2]
    assert panel.map.group_name(0).startswith("cluster ")
    # a t-SNE layout replaces the PCA one
    pca = panel.session.projection.xy
    panel.map_tab.projection_combo.setCurrentText("t-SNE")
    qtbot.waitUntil(lambda: panel.session.projection.xy is not pca, timeout=TIMEOUT_MS)
    tsne = panel.session.projection.xy
    assert tsne.shape == (count, 2) and not np.allclose(tsne, pca)


def test_clicking_a_point_shows_its_nearest_neighbours_and_rings_them(qtbot, tmp_path, trained_run, shapes_folder):
    folder, _ = shapes_folder
    panel = open_panel(qtbot, tmp_path, trained_run.parent, [folder])
    wait_embedded(qtbot, panel)
    qtbot.wait(50)
    # a real mouse click on the map, where point 5 is drawn
    plot = panel.map.plot_widget
    scene_point = panel.map.view_box.mapViewToScene(pg.Point(*panel.session.projection.xy[5]))
    widget_point = plot.mapFromScene(scene_point)
    clicked = []
    panel.map.point_clicked.connect(clicked.append)
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(widget_point.x(), widget_point.y()))
    assert clicked, "the click reached no point"
    query = clicked[0]
    view, session = panel.neighbours, panel.session
    assert session.neighbours.query_index == query
    assert view.grid.count() == 12
    features = panel.session.primary.combined.features
    expected, similarities = nearest_neighbours(features, features[query][None], k=12, exclude=np.array([query]))
    assert session.neighbours.indices.tolist() == expected[0].tolist()
    assert query not in session.neighbours.indices
    assert session.neighbours.similarities[0] == pytest.approx(similarities[0].max())
    first = view.grid.item(0)
    combined = panel.session.primary.combined
    label = combined.class_names[combined.labels[expected[0][0]]]
    assert first.text().startswith(f"{similarities[0][0]:.3f} · {label}\n")  # each neighbour with its label
    assert f"(class {combined.class_names[combined.labels[query]]})" in view.query_caption.text()
    assert first.text().endswith(os.path.basename(panel.session.primary.combined.paths[expected[0][0]]))
    assert panel.map._highlighted.tolist() == session.neighbours.indices.tolist()
    # fewer neighbours with a smaller k
    view.k_spin.setValue(5)
    assert view.grid.count() == 5 and session.neighbours.indices.tolist() == expected[0][:5].tolist()
    # an outside image (a copy of the query's file) finds the query itself first, at similarity 1
    outside = tmp_path / "outside.png"
    shutil.copyfile(panel.session.primary.combined.paths[query], outside)
    view.open_image(str(outside))
    qtbot.waitUntil(lambda: session.neighbours.query_path == str(outside) and len(session.neighbours.indices) == 5,
                    timeout=TIMEOUT_MS)
    assert session.neighbours.query_index is None
    assert session.neighbours.indices[0] == query
    assert session.neighbours.similarities[0] == pytest.approx(1.0, abs=1e-5)


def test_copies_of_one_image_are_found_as_near_duplicates(qtbot, tmp_path, trained_run):
    folder = tmp_path / "with_copies"
    write_shapes_folder(folder, 16, seed=3, classes=2, broken=False)
    original = sorted((folder / SHAPE_NAMES[1]).iterdir())[0]
    for n in range(3):
        shutil.copyfile(original, folder / SHAPE_NAMES[1] / f"copy{n}.png")
    panel = open_panel(qtbot, tmp_path, trained_run.parent, [folder])
    wait_embedded(qtbot, panel)
    panel.tabs.setCurrentWidget(panel.duplicates)
    view, session = panel.duplicates, panel.session
    view.set_threshold(0.999)
    qtbot.waitUntil(lambda: session.duplicates is not None and not view.computing(), timeout=TIMEOUT_MS)
    paths = panel.session.primary.combined.paths
    copies = {str(original)} | {str(folder / SHAPE_NAMES[1] / f"copy{n}.png") for n in range(3)}
    assert {paths[row] for row in session.duplicates.groups[0]} == copies
    assert len(session.duplicates.pairs) >= 6  # the four files pairwise
    assert view.list.item(0).text().startswith("group 1 · 4 images · similarity 1.000")
    found = session.duplicates
    assert view.summary.text().startswith(f"{len(found.pairs)} pairs in {len(found.groups)} group")
    assert "at similarity ≥ 0.999" in view.summary.text()
    # a lower threshold finds at least as many pairs
    before = len(session.duplicates.pairs)
    view.set_threshold(0.9)
    qtbot.waitUntil(lambda: not view.computing() and "0.900" in view.summary.text(), timeout=TIMEOUT_MS)
    assert len(session.duplicates.pairs) >= before


def test_the_folder_gets_its_own_threshold_and_a_copy_filed_under_two_classes_is_a_label_conflict(
        qtbot, tmp_path, trained_run):
    folder = tmp_path / "conflict"
    write_shapes_folder(folder, 40, seed=4, classes=2, broken=False)
    original = sorted((folder / SHAPE_NAMES[0]).iterdir())[0]
    shutil.copyfile(original, folder / SHAPE_NAMES[1] / "filed_twice.png")
    panel = open_panel(qtbot, tmp_path, trained_run.parent, [folder])
    wait_embedded(qtbot, panel)
    panel.tabs.setCurrentWidget(panel.duplicates)
    view, session = panel.duplicates, panel.session
    qtbot.waitUntil(lambda: session.duplicates is not None and not view.computing(), timeout=TIMEOUT_MS)
    assert not view.user_threshold and view.suggested is not None
    assert view.threshold() == pytest.approx(max(view.suggested, 0.8), abs=1e-3)
    assert "this folder's own threshold" in view.summary.text()
    paths = panel.session.primary.combined.paths
    conflicted = [row for row in range(view.list.count()) if "label conflict" in view.list.item(row).text()]
    assert conflicted, [view.list.item(row).text() for row in range(view.list.count())]
    group = view.list.item(conflicted[0]).data(Qt.ItemDataRole.UserRole)
    assert {paths[row] for row in group} >= {str(original), str(folder / SHAPE_NAMES[1] / "filed_twice.png")}
    assert f"label conflict: {SHAPE_NAMES[0]}, {SHAPE_NAMES[1]}" in view.list.item(conflicted[0]).text()
    assert "mix class folders" in view.summary.text()
    # the label check lists the copy filed under the other class, with its neighbours' label
    panel.tabs.setCurrentWidget(panel.label_check)
    check = panel.label_check
    qtbot.waitUntil(lambda: session.label_check is not None and not check.computing(), timeout=TIMEOUT_MS)
    # (which images a briefly trained network doubts is its own affair: the list must show them all)
    assert check.list.count() == len(session.label_check.suspects)
    for row, suspect in enumerate(session.label_check.suspects):
        assert check.list.item(row).text().startswith(f"{os.path.basename(paths[suspect.row])} · filed as ")
    suspects = session.label_check.suspects
    assert check.summary.text().startswith(f"{len(suspects):,} of " if suspects else "every one of")
    check.export(str(tmp_path / "label_check.csv"))
    with open(tmp_path / "label_check.csv") as file:
        assert [row["path"] for row in csv.DictReader(file)] == [paths[s.row] for s in session.label_check.suspects]


def test_accuracy_table_gives_both_models_as_accuracy_report_does(qtbot, tmp_path, trained_run, shapes_folder,
                                                                   test_folder):
    (train, train_count), (test, test_count) = shapes_folder, test_folder
    panel = open_panel(qtbot, tmp_path, trained_run.parent, [train, test])
    wait_embedded(qtbot, panel, compared=True)
    # two folders: one map over both, colourable by folder
    assert map_point_count(panel) == train_count + test_count
    assert panel.session.primary.folder_names == ["shapes_eval", "shapes_test"]
    panel.map_tab.colour_combo.setCurrentText("folder")
    assert panel.map.group_name(0) == "shapes_eval" and panel.map.group_name(train_count) == "shapes_test"
    view = panel.accuracy
    assert panel.tabs.isTabEnabled(panel.tabs.indexOf(view))
    protocols = [view.protocol.itemText(i) for i in range(view.protocol.count())]
    assert protocols == ["cross-validation within shapes_eval", "cross-validation within shapes_test",
                         "train shapes_eval → test shapes_test", "train shapes_test → test shapes_eval"]
    view.protocol.setCurrentIndex(2)
    view.k_spin.setValue(5)
    assert not view.progress.isVisibleTo(view) and not view.cancel_button.isVisibleTo(view)
    qtbot.mouseClick(view.run_button, Qt.MouseButton.LeftButton)
    assert view.progress.isVisibleTo(view) and view.cancel_button.isVisibleTo(view)
    qtbot.waitUntil(lambda: bool(view.reports) and not view.running(), timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not view.progress.isVisibleTo(view), timeout=TIMEOUT_MS)
    assert view.summary.rowCount() == 2
    assert view.summary.isColumnHidden(2)  # top-5 of 4 classes is always 100%: not shown
    for row, embedded in enumerate((panel.session.primary, panel.session.compared)):
        train_embedding, test_embedding = embedded.folders
        expected = accuracy_report(train_embedding.features, train_embedding.labels, train_embedding.class_names,
                                   model_name=embedded.model.name, folder_name="shapes_eval",
                                   test_features=test_embedding.features, test_labels=test_embedding.labels,
                                   test_class_names=test_embedding.class_names, test_folder_name="shapes_test",
                                   k=5, seed=0)
        cells = [view.summary.item(row, column).text() for column in range(5)]
        assert cells == [embedded.model.name, f"{expected.knn_top1:.1%}", f"{expected.knn_top5:.1%}",
                         f"{expected.probe_top1:.1%}", f"{test_count:,}"]
        assert np.array_equal(view.reports[row].confusion_knn, expected.confusion_knn)
    assert view.per_class.rowCount() == CLASSES
    assert view.per_class.columnCount() == 2 + 4   # class, count, kNN and probe of each model
    assert view.confusion.selector.count() == 4
    view.confusion.selector.setCurrentIndex(2)   # the floor's kNN
    shown = view.confusion.image.image
    counts = view.reports[1].confusion_knn
    assert shown.shape == (CLASSES, CLASSES)
    assert np.allclose(shown, counts / counts.sum(axis=1, keepdims=True))


def test_cancelling_the_accuracy_run_keeps_the_panel_usable(qtbot, tmp_path, trained_run, shapes_folder):
    folder, _ = shapes_folder
    panel = open_panel(qtbot, tmp_path, trained_run.parent, [folder])
    wait_embedded(qtbot, panel, compared=True)
    view = panel.accuracy
    view.run()
    qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    assert "cancelled" in view.status.text()
    qtbot.waitUntil(lambda: not view.running() and view.run_button.isEnabled(), timeout=TIMEOUT_MS)
    assert not view.progress.isVisibleTo(view) and view.reports == []
    view.run()  # and it measures again
    qtbot.waitUntil(lambda: bool(view.reports), timeout=TIMEOUT_MS)


def test_cancel_mid_embed_leaves_the_panel_usable_and_resumes(qtbot, tmp_path, trained_run, monkeypatch):
    folder = tmp_path / "bigger"
    count = write_shapes_folder(folder, 200, seed=11, broken=False)
    embed_in_batches_of(monkeypatch, 4)
    panel = open_panel(qtbot, tmp_path, trained_run.parent)
    choose(panel.sources.compare_combo, "none")
    panel.set_folders([str(folder)])
    qtbot.waitUntil(lambda: panel.embedding() and "img/s" in panel.sources.progress.format(), timeout=TIMEOUT_MS)
    done, total = re.fullmatch(r"([\d,]+) / ([\d,]+) · [\d,]+ img/s", panel.sources.progress.format()).groups()
    assert int(total) == count and 0 < int(done) < count and panel.sources.cancel_button.isVisible()
    qtbot.mouseClick(panel.sources.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.embedding(), timeout=TIMEOUT_MS)
    assert panel.sources.status.text().startswith("embedding cancelled after")
    assert panel.session.primary is None and not panel.sources.progress.isVisible() and not messages(panel)
    assert panel.sources.embed_button.isEnabled()
    qtbot.mouseClick(panel.sources.embed_button, Qt.MouseButton.LeftButton)
    wait_embedded(qtbot, panel)
    assert len(panel.session.primary.combined.paths) == count
    assert 0 < panel.session.primary.combined.reused < count   # the rows embedded before the cancel were kept


def test_a_broken_checkpoint_is_one_message_and_nothing_changes(qtbot, tmp_path, trained_run):
    panel = open_panel(qtbot, tmp_path, trained_run.parent)
    before = [panel.sources.model_combo.itemText(i) for i in range(panel.sources.model_combo.count())]
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is no checkpoint")
    panel.open_checkpoint(str(broken))
    qtbot.waitUntil(lambda: len(messages(panel)) == 1, timeout=TIMEOUT_MS)
    [box] = messages(panel)
    assert "broken.pt" in box.text()
    assert "\n" not in box.text() and "Traceback" not in box.text()
    assert [panel.sources.model_combo.itemText(i) for i in range(panel.sources.model_combo.count())] == before
    box.close()
    # a good checkpoint file opened the same way is listed and chosen
    checkpoint = trained_run / "checkpoints" / "last.pt"
    panel.open_checkpoint(str(checkpoint))
    qtbot.waitUntil(lambda: panel.session.model_choice.checkpoint == str(checkpoint), timeout=TIMEOUT_MS)
    assert panel.sources.model_combo.count() == len(before) + 1


def test_exports_write_files_that_read_back(qtbot, tmp_path, trained_run, shapes_folder):
    folder, count = shapes_folder
    panel = open_panel(qtbot, tmp_path, trained_run.parent, [folder])
    choose(panel.sources.compare_combo, "none")
    wait_embedded(qtbot, panel)
    combined = panel.session.primary.combined

    panel.export_menu.export_embeddings(str(tmp_path / "embeddings.npz"))
    qtbot.waitUntil(lambda: not panel.export_menu.exporting(), timeout=TIMEOUT_MS)
    archive = np.load(tmp_path / "embeddings.npz")
    assert archive["paths"].tolist() == combined.paths
    assert np.array_equal(archive["features"], combined.features)
    panel.export_menu.export_embeddings(str(tmp_path / "embeddings.csv"))
    qtbot.waitUntil(lambda: not panel.export_menu.exporting(), timeout=TIMEOUT_MS)
    with open(tmp_path / "embeddings.csv") as file:
        rows = list(csv.reader(file))
    assert len(rows) == count + 1 and rows[1][0] == combined.paths[0]

    panel.map.save_png(str(tmp_path / "map.png"))
    assert not QImage(str(tmp_path / "map.png")).isNull()

    panel.neighbours.show_neighbours_of(0)
    panel.neighbours.export_query(str(tmp_path / "neighbours.csv"))
    with open(tmp_path / "neighbours.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["neighbour"] for row in rows] == [combined.paths[i] for i in panel.session.neighbours.indices]
    panel.neighbours.k_spin.setValue(3)
    panel.neighbours.export_every_image(str(tmp_path / "all_neighbours.csv"))
    qtbot.waitUntil(lambda: not panel.export_menu.exporting(), timeout=TIMEOUT_MS)
    with open(tmp_path / "all_neighbours.csv") as file:
        assert len(list(csv.DictReader(file))) == 3 * count

    panel.tabs.setCurrentWidget(panel.duplicates)
    panel.duplicates.set_threshold(0.8)
    qtbot.waitUntil(lambda: panel.session.duplicates is not None and not panel.duplicates.computing(),
                    timeout=TIMEOUT_MS)
    panel.duplicates.export(str(tmp_path / "duplicates.csv"))
    with open(tmp_path / "duplicates.csv") as file:
        assert len(list(csv.DictReader(file))) == len(panel.session.duplicates.pairs)

    # the map's selection: its file list, and its files copied by class, exactly the selected ones
    selected = np.array([1, 4, 9])
    panel.map._set_selection(selected)
    panel.export_menu.update_actions()
    assert panel.export_menu.selection_action.isEnabled() and panel.export_menu.copy_action.isEnabled()
    panel.export_menu.export_selection(str(tmp_path / "selection.csv"))
    qtbot.waitUntil(lambda: not panel.export_menu.exporting(), timeout=TIMEOUT_MS)
    with open(tmp_path / "selection.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["path"] for row in rows] == [combined.paths[i] for i in selected]
    assert [row["class"] for row in rows] == [combined.class_names[combined.labels[i]] for i in selected]
    panel.export_menu.copy_selection(str(tmp_path / "picked"))
    qtbot.waitUntil(lambda: not panel.export_menu.exporting(), timeout=TIMEOUT_MS)
    copied = sorted(str(path.relative_to(tmp_path / "picked")) for path in (tmp_path / "picked").rglob("*.png"))
    assert copied == sorted(f"{combined.class_names[combined.labels[i]]}/{os.path.basename(combined.paths[i])}"
                            for i in selected)
    panel.export_menu.copy_selection(str(tmp_path / "picked"))  # again: numbered names, nothing overwritten
    qtbot.waitUntil(lambda: not panel.export_menu.exporting(), timeout=TIMEOUT_MS)
    assert len(list((tmp_path / "picked").rglob("*.png"))) == 2 * len(selected)

    panel.accuracy.probe_check.setChecked(False)
    panel.accuracy.run()
    qtbot.waitUntil(lambda: bool(panel.accuracy.reports), timeout=TIMEOUT_MS)
    panel.accuracy.export(str(tmp_path / "accuracy.csv"))
    with open(tmp_path / "accuracy.csv") as file:
        rows = list(csv.DictReader(file))
    overall = [row for row in rows if row["class"] == "all" and row["metric"] == "top1"]
    assert float(overall[0]["value"]) == pytest.approx(panel.accuracy.reports[0].knn_top1, abs=1e-6)
    # a file name the export refuses is one message, not a traceback
    panel.export_menu.export_embeddings(str(tmp_path / "embeddings.txt"))
    qtbot.waitUntil(lambda: len(messages(panel)) == 1, timeout=TIMEOUT_MS)
    assert ".npz or .csv" in messages(panel)[0].text()


def test_closing_the_window_mid_embed_ends_the_worker_and_remembers_the_folders(qtbot, tmp_path, trained_run,
                                                                                 monkeypatch):
    monkeypatch.setenv("SSL_EXPLORER_CACHE", str(tmp_path / "cache"))
    embed_in_batches_of(monkeypatch, 2)
    folder = tmp_path / "to_close"
    write_shapes_folder(folder, 200, seed=5, broken=False)
    settings_path = tmp_path / "settings.ini"
    window = MainWindow(AppSettings(settings_path))
    qtbot.addWidget(window)
    window.model.set_config(tiny_config(tmp_path))
    window.evaluate.set_runs_dir(str(trained_run.parent))
    window.resize(1280, 800)
    window.show()
    assert [window.tabs.tabText(i) for i in range(window.tabs.count())][-3:] == ["Training", "Evaluate", "Runs"]
    window.evaluate.add_folder(str(folder))
    qtbot.wait(400)
    assert not window.evaluate.embedding()   # the tab is not on screen: nothing runs yet
    window.tabs.setCurrentWidget(window.evaluate)
    qtbot.waitUntil(lambda: window.evaluate.embedding() and window.evaluate.worker.state().done > 0,
                    timeout=TIMEOUT_MS)
    worker = window.evaluate.worker
    window.close()
    assert worker.isFinished() and window.evaluate.worker is None
    assert AppSettings(settings_path).text(EVALUATED_FOLDERS_KEY) == str(folder)


def test_a_tagged_selection_colours_and_filters_the_map_and_is_there_when_the_folder_is_reopened(
        qtbot, tmp_path, trained_run, shapes_folder):
    folder, count = shapes_folder
    panel = open_panel(qtbot, tmp_path, trained_run.parent, [folder])
    wait_embedded(qtbot, panel)
    tags = panel.map_tab.map_tags
    assert not tags.tag_button.isEnabled() and not tags.show_combo.isEnabled()   # nothing selected, no tags
    panel.map._set_selection(np.array([2, 3, 11]))
    assert tags.tag_button.isEnabled()
    assert tags.tag_selection("check") == 3
    assert "3 images tagged 'check'" in panel.sources.status.text()
    panel.map._set_selection(np.array([11, 20]))
    assert tags.tag_selection("blurry") == 2
    assert tags.show_combo.isEnabled()
    assert [tags.show_combo.itemText(i) for i in range(tags.show_combo.count())] == \
        ["all images", "tagged 'blurry'", "tagged 'check'", "untagged images"]

    choose(panel.map_tab.colour_combo, "tag")
    assert panel.map.group_name(2) == "check" and panel.map.group_name(11) == "blurry"   # its first tag
    assert panel.map.group_name(0) == "untagged"
    tags.show_only("check")
    assert map_point_count(panel) == 3
    np.testing.assert_array_equal(panel.map.selected(), [11])   # 20 is not shown any more
    tags.show_only(SHOW_UNTAGGED)
    assert map_point_count(panel) == count - 4
    # a new layout keeps the filter
    pca = panel.session.projection.xy
    panel.map_tab.projection_combo.setCurrentText("t-SNE")
    qtbot.waitUntil(lambda: panel.session.projection.xy is not pca, timeout=TIMEOUT_MS)
    assert map_point_count(panel) == count - 4
    tags.show_only(None)
    panel.map._set_selection(np.array([2, 3]))
    assert tags.untag_selection("check") == 2
    assert panel.map.group_name(2) == "untagged"

    reopened = open_panel(qtbot, tmp_path, trained_run.parent, [folder])   # the same cache folder
    wait_embedded(qtbot, reopened)
    assert reopened.map_tab.map_tags.names() == ["blurry", "check"]
    paths = reopened.session.primary.combined.paths
    assert [paths[i] for i in reopened.session.tags.rows("check")] == [panel.session.primary.combined.paths[11]]
    assert [paths[i] for i in reopened.session.tags.rows("blurry")] == \
        [panel.session.primary.combined.paths[i] for i in (11, 20)]


def test_an_unreadable_tags_file_is_one_message_and_the_map_still_works(qtbot, tmp_path, trained_run, shapes_folder):
    from ssl_engine.eval.tags import tags_file
    folder, count = shapes_folder
    broken = tags_file(str(folder), str(tmp_path / "cache"))
    broken.parent.mkdir(parents=True)
    broken.write_text("[1, 2")
    panel = open_panel(qtbot, tmp_path, trained_run.parent, [folder])
    wait_embedded(qtbot, panel)
    assert "cannot read the tags" in panel.last_error and len(messages(panel)) == 1
    assert map_point_count(panel) == count
    panel.map._set_selection(np.array([1]))
    assert not panel.map_tab.map_tags.tag_button.isEnabled()
    assert broken.read_text() == "[1, 2"
