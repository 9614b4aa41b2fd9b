"""The explorer window driven as a user drives it: real widgets, real data, real training runs."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from app.main_window import MainWindow  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from ssl_engine import losses  # noqa: E402
from ssl_engine.config import ExperimentConfig  # noqa: E402

from tests.helpers import tiny_config  # noqa: E402


def open_window(qtbot, tmp_path, config=None) -> MainWindow:
    window = MainWindow(AppSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(window)
    if config is not None:
        window.model.set_config(config)
    window.resize(1280, 800)
    window.show()
    qtbot.waitUntil(lambda: window.data is not None and window.start_action.isEnabled(), timeout=20000)
    return window


def points(plot, name="loss") -> int:
    try:
        return len(plot.series_data(name)[0])
    except KeyError:
        return 0


def finish(qtbot, window, timeout=60000):
    qtbot.waitUntil(lambda: window.worker is None, timeout=timeout)


def test_opens_ready_to_train_on_the_bundled_data(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    assert window.model.value("data.source") == "shapes"
    assert window.model.value("method.name") == "simclr"
    assert window.start_action.isEnabled()
    # the preview shows the sample images and the method's two views
    assert len(window.preview.grid.shown) == 3
    assert window.preview.grid.shown[0].shape[1:] == (32, 32, 3)


def test_invalid_field_is_marked_and_blocks_start_until_fixed(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    lr = window.setup.optim_form.editors["lr"]
    lr.selectAll()
    qtbot.keyClicks(lr, "-1")
    problem = window.setup.optim_form.problem_labels["lr"]
    assert not window.start_action.isEnabled()
    assert problem.isVisible() and problem.text() == "learning rate must be > 0, got -1"
    assert "learning rate must be > 0" in window.start_action.toolTip()
    lr.selectAll()
    qtbot.keyClicks(lr, "abc")
    assert "learning rate must be a number" in problem.text()
    lr.selectAll()
    qtbot.keyClicks(lr, "0.5")
    assert problem.text() == ""  # its room stays, empty
    assert window.start_action.isEnabled()
    assert window.model.config.optim.lr == 0.5


def test_switching_method_rebuilds_its_form_with_paper_defaults(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    picker = window.setup.method
    picker.setCurrentIndex(picker.findData("vicreg"))
    form = window.setup.method_form
    assert set(form.editors) >= {"sim_coeff", "std_coeff", "cov_coeff"}
    assert form.editors["sim_coeff"].text() == "25"
    tip = form.editors["sim_coeff"].toolTip()
    assert "valid: >= 0" in tip and "default: 25" in tip
    config = window.model.config
    assert config.method.name == "vicreg"
    # the window opens on the quick recipe, whose VICReg views are solo-learn's CIFAR ones
    # (solarisation 0.1 on both), and the preview offers each view on its own
    assert window.model.recipe == "quick"
    assert config.augment.views == ExperimentConfig.for_method("vicreg", 32, "quick").augment.views
    assert [view.solarize_p for view in config.augment.views] == pytest.approx([0.1, 0.1])
    assert window.preview.view_choice.count() == 3
    assert window.setup.method_card.text.text()


def test_optimiser_form_offers_the_recipes_clipping_and_decay_choices(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    picker = window.setup.method
    picker.setCurrentIndex(picker.findData("dino"))
    form = window.setup.optim_form
    clip, exclusions = form.editors["grad_clip_mode"], form.editors["decay_exclusions"]
    assert [clip.itemData(i) for i in range(clip.count())] == ["global", "per_parameter"]
    assert clip.currentData() == "per_parameter" and exclusions.currentData() == "bias_and_norm"
    assert "DINO" in clip.toolTip()
    exclusions.setCurrentIndex(exclusions.findData("none"))
    assert window.model.config.optim.decay_exclusions == "none"


def test_preview_rerenders_when_a_slider_moves(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    before = [v.copy() for v in window.preview.shown_views()]
    assert any(np.ptp(v.astype(int)[..., 0] - v.astype(int)[..., 1]) > 0 for v in before)  # colour
    window.preview.sliders["grayscale_p"].slider.setValue(window.preview.sliders["grayscale_p"].slider.maximum())
    after = window.preview.shown_views()
    assert window.model.config.augment.views[0].grayscale_p == 1.0
    assert window.model.config.augment.views[1].grayscale_p == 1.0
    for view in after:  # every view of every sample is now grey
        assert np.array_equal(view[..., 0], view[..., 1]) and np.array_equal(view[..., 1], view[..., 2])
    # one view only (asymmetric recipes): the other view keeps its colour
    window.preview.view_choice.setCurrentIndex(2)  # "view 2"
    window.preview.sliders["grayscale_p"].slider.setValue(0)
    first, second = window.preview.shown_views()
    assert np.array_equal(first[..., 0], first[..., 1])
    assert not np.array_equal(second[..., 0], second[..., 1])
    # new random views change the pictures, the recipe stays
    shown = [v.copy() for v in window.preview.shown_views()]
    qtbot.mouseClick(window.preview.new_views, Qt.MouseButton.LeftButton)
    assert not all(np.array_equal(a, b) for a, b in zip(shown, window.preview.shown_views()))


def test_a_short_run_streams_into_every_live_view_and_leaves_a_checkpoint(qtbot, tmp_path):
    config = tiny_config(tmp_path, "vicreg", epochs=2)
    window = open_window(qtbot, tmp_path, config)
    qtbot.mouseClick(window.findChild(object, "start_button"), Qt.MouseButton.LeftButton)
    assert window.worker is not None and not window.start_action.isEnabled()
    finish(qtbot, window)
    panel = window.training
    steps = 2 * (320 // 64)
    assert panel.progress.bar.value() == steps
    plot = panel.loss_plot
    for name in ("loss", "invariance", "variance", "covariance", "lr"):
        assert points(plot, name) == steps, name
    assert panel.views.shown and len(panel.views.shown) == 3
    assert panel.matrix.selected_name() in ("covariance", "cross-correlation")
    assert panel.projection.point_count() == 64
    run_dir = window.last_run_dir
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "last.pt"))
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert "knn_top1" in summary and "kNN" in panel.progress.labels["knn"].text()
    assert window.save_model_action.isEnabled()
    saved = tmp_path / "model.pt"
    window.save_model(str(saved))
    assert saved.stat().st_size == os.path.getsize(os.path.join(run_dir, "checkpoints", "last.pt"))
    assert window.start_action.isEnabled()


def test_pause_resume_and_stop_save_a_checkpoint(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, tiny_config(tmp_path, "simclr", epochs=200))
    window.start()
    qtbot.waitUntil(lambda: points(window.training.loss_plot) >= 2, timeout=30000)
    window.toggle_pause()
    assert window.pause_action.text() == "Resume"
    qtbot.wait(300)
    paused_at = points(window.training.loss_plot)
    qtbot.wait(500)
    assert points(window.training.loss_plot) <= paused_at + 1  # at most the step in flight
    window.toggle_pause()
    qtbot.waitUntil(lambda: points(window.training.loss_plot) > paused_at + 1, timeout=30000)
    window.stop()
    finish(qtbot, window)
    summary = json.load(open(os.path.join(window.last_run_dir, "summary.json")))
    assert summary["stopped_early"] is True and summary["steps"] < 200 * 5
    assert os.path.isfile(os.path.join(window.last_run_dir, "checkpoints", "last.pt"))


def test_nan_loss_shows_one_message_and_the_window_stays_usable(qtbot, tmp_path, monkeypatch):
    real = losses.info_nce

    def info_nce_going_nan(z1, z2, temperature):
        return real(z1, z2, temperature) * float("nan")

    monkeypatch.setattr(losses, "info_nce", info_nce_going_nan)
    window = open_window(qtbot, tmp_path, tiny_config(tmp_path, "simclr"))
    window.start()
    finish(qtbot, window)
    box = window.findChild(QMessageBox, "failure_message")
    assert box is not None and box.isVisible()
    assert "the loss became nan" in box.text() and "Traceback" not in box.text()
    assert "training failed" in window.statusBar().currentMessage()
    box.close()
    monkeypatch.setattr(losses, "info_nce", real)
    assert window.start_action.isEnabled()  # usable: a corrected run can start
    window.start()
    finish(qtbot, window)
    assert os.path.isfile(os.path.join(window.last_run_dir, "summary.json"))


def test_unreadable_folder_is_one_message_and_start_stays_disabled(qtbot, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not an image")
    window = open_window(qtbot, tmp_path)
    window.setup.choose_folder(str(folder))
    qtbot.waitUntil(lambda: window.data_error is not None, timeout=20000)
    assert "no readable images" in window.data_error or "broken" in window.data_error
    assert not window.start_action.isEnabled()
    assert "cannot load" in window.preview.grid.picture.text()


def test_closing_during_training_stops_cleanly_and_remembers_the_experiment(qtbot, tmp_path):
    config = tiny_config(tmp_path, "byol", epochs=200)
    window = open_window(qtbot, tmp_path, config)
    window.start()
    qtbot.waitUntil(lambda: points(window.training.loss_plot) >= 1, timeout=30000)
    window.close()
    assert window.close_when_stopped
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30000)
    assert window.worker is None
    assert os.path.isfile(os.path.join(window.last_run_dir, "checkpoints", "last.pt"))
    again = MainWindow(AppSettings(tmp_path / "settings.ini"))
    qtbot.addWidget(again)
    assert again.model.config.method.name == "byol"
    assert again.model.config.train.epochs == 200


def test_experiments_save_and_open_as_the_command_line_reads_them(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, tiny_config(tmp_path, "barlow_twins"))
    path = tmp_path / "exp.toml"
    window.save_experiment(str(path))
    assert ExperimentConfig.load(path) == window.model.config
    window.model.switch_method("simclr")
    window.open_experiment(str(path))
    assert window.model.config.method.name == "barlow_twins"
    assert window.setup.method.selected() == "barlow_twins"
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim]\nlr = -1\n")
    with pytest.MonkeyPatch.context() as patch:
        shown = []
        patch.setattr(QMessageBox, "warning", lambda *args: shown.append(args[2]))
        window.open_experiment(str(bad))
    assert shown and "optim.lr must be > 0" in shown[0]
    assert window.model.config.method.name == "barlow_twins"  # the open experiment is kept


def test_a_larger_image_size_brings_the_papers_blur_back(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    recipe = window.setup.recipe
    recipe.setCurrentIndex(recipe.findData("imagenet"))
    recipe.activated.emit(recipe.currentIndex())
    size = window.setup.data_form.editors["image_size"]
    assert window.model.config.augment.views[0].blur_p == 0.0  # off at 32 px, as in the CIFAR recipes
    size.selectAll()
    qtbot.keyClicks(size, "64")
    assert window.model.config.data.image_size == 64
    assert window.model.config.augment.views[0].blur_p == 0.5  # SimCLR's ImageNet recipe
    assert window.preview.sliders["blur_p"].value_label.text() == "0.5"
    qtbot.waitUntil(lambda: window.data is not None and window.preview.grid.shown[0].shape[1] == 64, timeout=20000)


def test_a_vit_only_method_brings_a_vit_and_a_cnn_is_marked_at_the_field(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    picker = window.setup.method
    picker.setCurrentIndex(picker.findData("msn"))
    backbone = window.setup.backbone_form.editors["name"]
    assert window.model.config.backbone.name == "vit_tiny" and backbone.currentData() == "vit_tiny"
    backbone.setCurrentIndex(backbone.findData("small_cnn"))
    problem = window.setup.backbone_form.problem_labels["name"]
    assert problem.isVisible() and "backbone must be vit_tiny or vit_small for msn" in problem.text()
    assert not window.start_action.isEnabled()
