"""Comparing runs, read from real run folders: the curves of each run against step, epoch and
training time, the settings that differ, and the maps of the same images lined up; and the
Runs tab showing them for the runs the user selects."""

import numpy as np
import pytest

from app.widgets.runs_panel import RunsPanel
from ssl_engine.run_compare import (compare_maps, config_rows, curve_names, procrustes_onto, read_config_table,
                                    read_curves)
from ssl_engine.run_replay import replay_run
from ssl_engine.runs import read_metrics
from ssl_engine.train import Trainer
from ssl_engine.train.events import EventRates
from tests.helpers import tiny_config


def _run(tmp_path, method, *extra):
    trainer = Trainer(tiny_config(tmp_path, method, f"train.run_name={method}", *extra, epochs=2, count=120))
    trainer.subscribe(lambda event: None, EventRates(metrics_every_steps=0, probes={"map": 1, "knn_top1": 1}))
    trainer.run()
    return trainer.run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    return [_run(root, "simclr"), _run(root, "byol"), _run(root, "simclr", "train.seed=1", "train.run_name=reseeded")]


def test_curves_come_from_each_runs_metrics(runs):
    simclr, byol = (read_curves(run) for run in runs[:2])
    rows = read_metrics(runs[0])
    steps = [r for r in rows if r["kind"] == "step"]
    loss = simclr.series("loss")
    np.testing.assert_allclose(loss.x("step"), [r["step"] for r in steps])
    np.testing.assert_allclose(loss.x("epoch"), [r["epoch"] for r in steps])
    np.testing.assert_allclose(loss.x("time"), [r["time"] for r in steps])
    np.testing.assert_allclose(loss.values, [r["loss"] for r in steps])
    knn = simclr.series("knn_top1")
    epochs = [r for r in rows if r["kind"] == "epoch"]
    np.testing.assert_allclose(knn.x("epoch"), [1, 2])
    np.testing.assert_allclose(knn.values, [r["knn_top1"] for r in epochs])
    assert simclr.floors["knn_top1"] == pytest.approx(next(r for r in rows if r["kind"] == "init")["knn_top1"])
    names = curve_names([simclr, byol])
    assert names[:2] == ["loss", "knn_top1"]
    with pytest.raises(ValueError, match="axis"):
        loss.x("wall")


def test_configs_side_by_side_mark_what_differs(runs):
    rows = {row.address: row for row in config_rows([read_config_table(run) for run in runs])}
    assert rows["method.name"].values == ("simclr", "byol", "simclr") and rows["method.name"].differs
    assert rows["train.seed"].values == ("0", "0", "1") and rows["train.seed"].differs
    assert rows["data.source"].values == ("shapes",) * 3 and not rows["data.source"].differs
    # a parameter only one method has: the other shows none
    assert rows["method.temperature"].values[1] == "–" and rows["method.temperature"].differs
    assert "augment.views[0].hue" in rows


def test_procrustes_undoes_a_rotation_a_reflection_and_a_scale():
    generator = np.random.default_rng(0)
    reference = generator.normal(size=(50, 2))
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    turned = (reference @ rotation) * np.array([1.0, -1.0]) * 3.0 + 5.0
    np.testing.assert_allclose(procrustes_onto(turned, reference), reference, atol=1e-9)


def test_maps_of_the_same_images_are_lined_up_with_the_first(runs):
    comparison = compare_maps(runs[:2])  # the same data and seed: the same evaluation images
    assert comparison.recorded and not comparison.missing and [p.epoch for p in comparison.panels] == [2, 2]
    first, second = comparison.panels
    np.testing.assert_allclose(first.points, replay_run(runs[0]).load("map").value.projection_2d, atol=1e-6)
    # turned onto the first: no farther from it than its own map (scaled alike), as it is or flipped
    raw = replay_run(runs[1]).load("map").value.projection_2d.astype(np.float64)
    centre = first.points.mean(axis=0)
    raw = (raw - raw.mean(axis=0)) * np.linalg.norm(first.points - centre) / np.linalg.norm(raw - raw.mean(axis=0))
    untouched = min(np.linalg.norm(raw + centre - first.points), np.linalg.norm(-raw + centre - first.points))
    assert np.linalg.norm(second.points - first.points) <= untouched + 1e-3


def test_maps_of_runs_that_saw_other_images_embed_the_first_runs_images(runs):
    comparison = compare_maps([runs[0], runs[2]])  # another seed: another evaluation subset
    assert not comparison.recorded and [p.epoch for p in comparison.panels] == [None, None]
    recorded = replay_run(runs[0]).load("map").value
    np.testing.assert_array_equal(comparison.images, recorded.images)
    # the first run's checkpoint is its last epoch's weights: its map is the one it recorded
    np.testing.assert_allclose(comparison.panels[0].points, recorded.projection_2d, atol=2e-2)
    reseeded = replay_run(runs[2]).load("map").value
    assert not np.array_equal(reseeded.images, recorded.images)
    assert comparison.panels[1].points.shape == (len(recorded.labels), 2)


def test_the_runs_tab_compares_the_selected_runs(qtbot, runs):
    panel = RunsPanel(str(runs[0].parent))
    qtbot.addWidget(panel)
    compare = panel.compare
    panel.select_run("simclr")
    assert compare.pages.isHidden() and not compare.hint.isHidden()
    panel.select_runs(["simclr", "byol"])
    assert not compare.pages.isHidden() and "2 runs selected" in panel.note.text()
    assert not panel.buttons["rename"].isEnabled() and not panel.buttons["open"].isEnabled()
    assert [r.name for r in compare.runs] == [r.name for r in panel.selected_records()]
    curves = [compare.curve_choice.itemData(i) for i in range(compare.curve_choice.count())]
    assert curves[:2] == ["loss", "knn_top1"]
    drawn = [item for item in compare.plot.listDataItems()]
    assert sorted(item.name() for item in drawn) == ["byol", "simclr"]

    compare.curve_choice.setCurrentIndex(curves.index("knn_top1"))
    compare.axis_choice.setCurrentIndex(compare.axis_choice.findData("epoch"))
    for item in compare.plot.listDataItems():
        x, y = item.getData()
        np.testing.assert_allclose(x, [1, 2])
        knn = read_curves(runs[0] if item.name() == "simclr" else runs[1]).series("knn_top1").values
        np.testing.assert_allclose(y, 100 * knn)  # in %

    table = compare.config_table
    shown = [table.item(row, 0).text() for row in range(table.rowCount())]
    assert "method.name" in shown and "data.source" not in shown
    compare.only_differences.setChecked(False)
    assert table.rowCount() > len(shown) and "data.source" in [table.item(r, 0).text() for r in range(table.rowCount())]

    compare.pages.setCurrentWidget(compare.maps_page)  # the maps, read when their page is shown
    assert len(compare.map_plots) == 2 and "same evaluation images" in compare.maps_note.text()
    assert all(name in compare.maps_legend.text() for name in ("circle", "square", "star"))
    panel.select_runs(["simclr", "reseeded"])
    assert len(compare.map_plots) == 2 and "first run's images embedded" in compare.maps_note.text()


def test_a_run_too_short_to_log_a_step_shows_its_epochs_mean_loss(tmp_path):
    run = _run(tmp_path, "simclr", "train.log_every_steps=1000")
    rows = [r for r in read_metrics(run) if r["kind"] == "epoch"]
    assert not [r for r in read_metrics(run) if r["kind"] == "step"]
    loss = read_curves(run).series("loss")
    np.testing.assert_allclose(loss.x("epoch"), [1, 2])
    np.testing.assert_allclose(loss.values, [r["loss"] for r in rows])
