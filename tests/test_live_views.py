"""The live training views (loss curves, matrix heatmap, embedding map) driven as real widgets."""

import gc
import os
import weakref

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")
from PySide6.QtCore import QPointF, QThreadPool  # noqa: E402

from app.widgets.loss_plot import LossPlot, smooth_ema  # noqa: E402
from app.widgets.matrix_view import MatrixView, symmetric_level  # noqa: E402
from app.widgets.projection_view import TSNE_METHOD, ProjectionView  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402


def test_smooth_ema_matches_a_hand_computation():
    values, weight = np.array([2.0, 4.0, 1.0]), 0.5
    # last: 0.5*0 + 0.5*2 = 1, then 0.5*1 + 0.5*4 = 2.5, then 0.5*2.5 + 0.5*1 = 1.75
    expected = [1.0 / (1 - 0.5), 2.5 / (1 - 0.25), 1.75 / (1 - 0.125)]
    np.testing.assert_allclose(smooth_ema(values, weight), expected)
    assert smooth_ema(values, weight)[0] == pytest.approx(2.0)  # bias-corrected: the first point not pulled to 0
    np.testing.assert_allclose(smooth_ema(values, 0.0), values)


def test_loss_plot_curves_hold_what_was_added(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.set_smoothing(0.0)
    steps = np.arange(5, dtype=np.float64)
    added = {"loss": np.array([30.0, 20, 15, 12, 10]), "invariance": np.array([5.0, 4, 3, 2, 1]),
             "lr": np.array([1e-4, 5e-4, 1e-3, 1e-3, 9e-4])}
    plot.add_points(steps[:2], {name: values[:2] for name, values in added.items()})
    plot.add_points(steps[2:], {name: values[2:] for name, values in added.items()})
    for name, values in added.items():
        x, y = plot.curve(name).getOriginalDataset()
        np.testing.assert_array_equal(x, steps)
        np.testing.assert_array_equal(y, values)
    assert plot.curve("loss").getViewBox() is plot.plot_item.vb
    assert plot.curve("lr").getViewBox() is plot.learning_rate_view
    plot.show()
    qtbot.waitUntil(lambda: plot.learning_rate_view.viewRange()[1][1] < 0.01)  # its own scale, not the loss's
    assert plot.plot_item.vb.viewRange()[1][1] > 20
    plot.add_epoch_metric("knn_top1", 4, 0.5)
    assert plot.curve("knn_top1").getViewBox() is plot.epoch_metric_view
    plot.set_smoothing(0.5)
    np.testing.assert_allclose(plot.curve("loss").getOriginalDataset()[1], smooth_ema(added["loss"], 0.5))
    plot.add_points(np.array([5.0]), {"loss": np.array([8.0])})  # the average carries on from the last point
    np.testing.assert_allclose(plot.curve("loss").getOriginalDataset()[1], smooth_ema([*added["loss"], 8.0], 0.5))
    np.testing.assert_array_equal(plot.curve("lr").getOriginalDataset()[1], added["lr"])  # lr is not smoothed


def test_log_scale_hides_non_positive_values(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.set_smoothing(0.0)
    plot.add_points(np.arange(4.0), {"loss": np.array([1.0, -0.5, 0.0, 2.0]), "lr": np.array([0.0, 1, 1, 1])})
    plot.set_log_scale(True)
    assert plot.plot_item.ctrl.logYCheck.isChecked()
    loss = plot.curve("loss").getOriginalDataset()[1]
    np.testing.assert_array_equal(np.isnan(loss), [False, True, True, False])
    assert not np.isnan(plot.curve("lr").getOriginalDataset()[1]).any()  # the lr axis stays linear
    plot.set_log_scale(False)
    assert not plot.plot_item.ctrl.logYCheck.isChecked()
    np.testing.assert_array_equal(plot.curve("loss").getOriginalDataset()[1], [1.0, -0.5, 0.0, 2.0])


def test_loss_plot_takes_100k_points_in_chunks_and_resets(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    chunk, total = 10_000, 100_000
    for start in range(0, total, chunk):
        steps = np.arange(start, start + chunk, dtype=np.float64)
        plot.add_points(steps, {"loss": 1.0 / (steps + 1), "lr": np.full(chunk, 1e-3)})
    steps, values = plot.series_data("loss")
    assert len(steps) == total
    np.testing.assert_array_equal(steps, np.arange(total))
    np.testing.assert_allclose(values, 1.0 / (np.arange(total) + 1))
    curve = weakref.ref(plot.curve("loss"))
    plot.reset()
    gc.collect()
    assert curve() is None  # nothing holds on to the old run's items
    assert not [item for item in plot.plot_item.items if item.name()]
    assert not plot.learning_rate_view.addedItems and not plot.plot_item.legend.items
    with pytest.raises(KeyError):
        plot.series_data("loss")


def test_hover_reads_out_the_nearest_step(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(600, 400)
    plot.show()
    qtbot.waitExposed(plot)
    plot.set_smoothing(0.0)
    plot.add_points(np.array([0.0, 10, 20]), {"loss": np.array([3.0, 2, 1])})
    plot.plot_item.vb.setRange(xRange=(0, 20), yRange=(0, 3), padding=0)
    plot.plot_item.scene().sigMouseMoved.emit(plot.plot_item.vb.mapViewToScene(QPointF(11.0, 1.5)))
    assert "step 10" in plot.readout.text() and "loss 2" in plot.readout.text()


def test_matrix_selector_shows_for_several_matrices_and_keeps_the_choice(qtbot):
    view = MatrixView()
    qtbot.addWidget(view)
    correlation = np.eye(4, dtype=np.float32)
    view.set_matrices({"cross-correlation": correlation})
    assert view.selector.isHidden()
    np.testing.assert_allclose(view.image.getLevels(), [-1.0, 1.0])
    assert "4 × 4" in view.title.text()
    covariance = 3.7 * np.eye(4, dtype=np.float32)
    view.set_matrices({"cross-correlation": correlation, "covariance": covariance})
    assert not view.selector.isHidden()
    view.selector.setCurrentText("covariance")
    np.testing.assert_allclose(view.image.getLevels(), [-4.0, 4.0])   # 3.7 rounded up
    view.set_matrices({"cross-correlation": correlation * 0.5, "covariance": covariance * 2})
    assert view.selected_name() == "covariance"
    np.testing.assert_array_equal(view.image.image, covariance * 2)
    view.clear()
    assert view.selector.isHidden() and view.image.image is None


def test_symmetric_level_rounds_up_beyond_one():
    # computed through log10 (whose last bit depends on the CPU's SIMD kernels): compared with a tolerance
    assert symmetric_level(np.array([[0.3, -1.0]], np.float32)) == pytest.approx(1.0)
    assert symmetric_level(np.array([[27.0, -3.0]])) == pytest.approx(30.0)
    assert symmetric_level(np.array([[-1.2, np.nan]])) == pytest.approx(2.0)


def _snapshot(count=60, classes=3, seed=0):
    generator = np.random.default_rng(seed)
    labels = np.arange(count) % (classes + 1) - 1  # includes unknown (-1)
    embeddings = generator.normal(size=(count, 8)).astype(np.float32) + labels[:, None]
    images = generator.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    points = embeddings[:, :2].copy()
    return points, labels.astype(np.int64), [f"class {k}" for k in range(classes)], images, embeddings


def test_projection_one_scatter_per_class_and_hover_thumbnail(qtbot):
    view = ProjectionView()
    qtbot.addWidget(view)
    view.resize(600, 500)
    view.show()
    qtbot.waitExposed(view)
    points, labels, names, images, embeddings = _snapshot()
    view.set_snapshot(points, labels, names, images, embeddings, "epoch 1")
    scatters = {item.name(): item for item in view.plot_item.items}
    assert sorted(scatters) == ["class 0", "class 1", "class 2", "unknown"]
    assert all(len(scatters[name].data) == 15 for name in scatters)
    index = 7
    view.plot_item.vb.autoRange()
    view.plot_item.scene().sigMouseMoved.emit(view.plot_item.vb.mapViewToScene(QPointF(*points[index])))
    assert view.hovered_index == index
    assert view.thumbnail_image.pixmap().width() == 96
    assert view.thumbnail_caption.text() == "class 2"  # label of point 7
    view.plot_item.scene().sigMouseMoved.emit(QPointF(-1000, -1000))
    assert view.hovered_index is None
    points[3] = np.nan  # a diverged run: the other points stay hoverable
    view.set_snapshot(points, labels, names, images, embeddings, "epoch 2")
    view.plot_item.vb.autoRange()
    view.plot_item.scene().sigMouseMoved.emit(view.plot_item.vb.mapViewToScene(QPointF(*points[index])))
    assert view.hovered_index == index


def test_tsne_runs_off_the_ui_thread_and_survives_new_snapshots(qtbot):
    view = ProjectionView()
    qtbot.addWidget(view)
    points, labels, names, images, embeddings = _snapshot()
    view.set_snapshot(points, labels, names, images, embeddings, "epoch 1")
    view.method_selector.setCurrentText(TSNE_METHOD)
    assert "computing t-SNE" in view.status.text()
    # A snapshot of another size arrives while t-SNE runs: the t-SNE keeps its own snapshot's points.
    view.set_snapshot(*_snapshot(count=40, seed=1), "epoch 2")
    qtbot.waitUntil(lambda: "computing" not in view.status.text(), timeout=60_000)
    shown = np.concatenate([np.column_stack([item.data["x"], item.data["y"]]) for item in view.plot_item.items])
    assert shown.shape == (60, 2) and np.isfinite(shown).all()
    assert not np.allclose(np.sort(shown[:, 0]), np.sort(points[:, 0]))  # not the PCA points
    assert view.status.text().startswith("epoch 1: t-SNE of 60 points")
    assert "Recompute" in view.status.text() and view.recompute_button.isEnabled()


def test_closing_during_tsne_leaves_no_thread(qtbot):
    view = ProjectionView()
    qtbot.addWidget(view)
    view.set_snapshot(*_snapshot(), "epoch 1")
    view.method_selector.setCurrentText(TSNE_METHOD)
    pool = view.findChild(QThreadPool)
    assert pool.activeThreadCount() == 1
    view.close()
    assert pool.activeThreadCount() == 0



def test_tsne_result_of_a_cleared_run_is_dropped(qtbot):
    view = ProjectionView()
    qtbot.addWidget(view)
    view.set_snapshot(*_snapshot(), "epoch 1")
    view.method_selector.setCurrentText(TSNE_METHOD)
    view.clear()
    view.findChild(QThreadPool).waitForDone()
    qtbot.wait(50)  # delivers the queued result
    assert not view.plot_item.items and view.status.text().startswith("the map of the evaluation images appears")


def test_a_masked_vit_run_shows_its_masks_reconstructions_and_attention(qtbot, tmp_path):
    """A real MAE run on a ViT: the trainer sends the method's pictures and the attention maps
    of the fixed sample images, and the panel shows them in their own tabs."""
    from app.widgets.training_panel import TrainingPanel
    from app.worker import Mailbox
    from ssl_engine.probes.images import MethodPictures
    from ssl_engine.train import EventRates, Trainer

    mailbox = Mailbox()
    trainer = Trainer(tiny_config(tmp_path, "mae"))
    trainer.subscribe(mailbox.put, EventRates(probes={"views": 2, "pictures": 2, "attention": 2}, views_count=4))
    trainer.run()
    delivery = mailbox.drain()
    shown, attention = delivery.latest("pictures"), delivery.latest("attention")
    assert isinstance(shown, MethodPictures)
    assert set(shown.pictures) == {"mask", "reconstruction"}
    assert shown.pictures["mask"].shape == (4, 32, 32, 1) and shown.pictures["reconstruction"].shape == (4, 32, 32, 3)
    hidden = shown.pictures["mask"].mean()
    assert abs(hidden - 0.75) < 1e-6  # MAE hides 75% of the patches
    assert np.array_equal(attention.originals, shown.originals)
    assert attention.attention.shape == (4, 3, 4, 4)  # vit_tiny: 3 heads over a 4 x 4 grid
    np.testing.assert_allclose(attention.attention.max(axis=(2, 3)), 1.0, rtol=1e-5)

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.apply(delivery)
    tabs = panel.method_views
    assert tabs.isTabVisible(2) and tabs.isTabVisible(3) and not tabs.isTabVisible(1)
    assert not tabs.isTabVisible(0)  # MAE has no view embeddings to correlate
    originals, mask_column, reconstruction = panel.masks.shown
    assert np.array_equal(originals, shown.originals)
    hidden_pixels = shown.pictures["mask"][..., 0] == 1
    # hidden patches drawn dark, visible ones untouched
    assert (mask_column[hidden_pixels] <= originals[hidden_pixels]).all()
    assert np.array_equal(mask_column[~hidden_pixels], originals[~hidden_pixels])
    assert "reconstruction" in panel.masks.caption.text()
    assert len(panel.attention.shown) == 1 + 3
    panel.reset()
    assert tabs.isTabVisible(0) and not tabs.isTabVisible(2) and not tabs.isTabVisible(3)


def test_a_cnn_run_sends_no_pictures(tmp_path):
    from ssl_engine.train import EventRates, Trainer
    from ssl_engine.train.events import ProbeResult

    seen = []
    trainer = Trainer(tiny_config(tmp_path, "simclr"))
    trainer.subscribe(seen.append, EventRates(probes={"views": 1, "pictures": 1, "attention": 1}, views_count=4))
    trainer.run()
    probes = {event.name for event in seen if isinstance(event, ProbeResult)}
    assert probes == {"views"}  # a CNN and a method without pictures: no pictures, no attention
