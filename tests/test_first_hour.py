"""What a new user meets in the window's first hour: every problem of the set-up at once, in
the form's words, with a summary beside Start that goes to the field; the live kNN beside its
random-init floor from the start; a new run that starts every view from nothing."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtCore import QPoint, Qt  # noqa: E402

from app.widgets.loss_plot import display_name  # noqa: E402
from app.widgets.problem_summary import Problem, summary  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402
from tests.test_app_window import finish, open_window, points  # noqa: E402


def type_into(qtbot, editor, text: str) -> None:
    editor.selectAll()
    qtbot.keyClicks(editor, text)


def test_three_bad_fields_give_three_messages_at_once_and_the_summary_goes_to_the_first(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    setup = window.setup
    type_into(qtbot, setup.optim_form.editors["lr"], "abc")
    type_into(qtbot, setup.train_form.editors["epochs"], "2.5")
    type_into(qtbot, setup.train_form.editors["batch_size"], "0")
    messages = {name: form.problem_labels[name] for form, name in ((setup.optim_form, "lr"),
                                                                   (setup.train_form, "epochs"),
                                                                   (setup.train_form, "batch_size"))}
    assert messages["lr"].text() == "learning rate must be a number, got 'abc'"
    assert messages["epochs"].text().startswith("epochs must be an integer")
    assert messages["batch_size"].text().startswith("batch size must be >= ")
    assert all(label.isVisible() for label in messages.values())
    assert "optim.lr" in messages["lr"].toolTip()  # the config key stays at hand
    assert not window.start_action.isEnabled()
    button = window.problem_summary
    qtbot.waitUntil(button.isVisible, timeout=2000)  # the toolbar lays itself out on the next pass
    assert button.isEnabled() and button.text() == "3 problems: learning rate, epochs, batch size"
    assert not window.estimate_label.isVisible() and window.problem_item.isVisible()

    window.setup_scroll.verticalScrollBar().setValue(window.setup_scroll.verticalScrollBar().maximum())
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton, pos=QPoint(8, button.height() // 2))
    editor = setup.optim_form.editors["lr"]
    qtbot.waitUntil(editor.hasFocus, timeout=2000)
    viewport = window.setup_scroll.viewport()
    top = editor.mapTo(viewport, QPoint(0, 0)).y()
    assert 0 <= top <= viewport.height() - editor.height()

    for name, text in (("lr", "0.1"), ("epochs", "2"), ("batch_size", "64")):
        form = setup.optim_form if name == "lr" else setup.train_form
        type_into(qtbot, form.editors[name], text)
    assert window.model.problems == []
    assert not window.problem_item.isVisible() and window.estimate_item.isVisible()


def test_a_message_keeps_its_room_when_it_goes(qtbot, tmp_path):
    # typing through an invalid value must not make the fields below jump back and forth
    window = open_window(qtbot, tmp_path)
    form = window.setup.train_form
    below = form.editors["device"]
    start = below.y()
    type_into(qtbot, form.editors["batch_size"], "0")
    qtbot.waitUntil(lambda: below.y() > start, timeout=2000)
    shifted = below.y()
    type_into(qtbot, form.editors["batch_size"], "64")
    qtbot.wait(50)
    # the message's room stays (the field's own red frame going may move it by its border)
    assert abs(below.y() - shifted) <= 6 and shifted - start > 10


def test_the_summary_counts_and_names_problems():
    assert summary([Problem("learning rate", "")]) == "1 problem: learning rate"
    many = [Problem(name, "") for name in ("a", "b", "b", "c", "d")]
    assert summary(many) == "5 problems: a, b, c, …"
    assert display_name("knn_top1") == "kNN top-1" and display_name("lr") == "learning rate"


def test_the_live_knn_shows_its_random_init_floor_from_the_first_epoch(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, tiny_config(tmp_path, "simclr", epochs=2))
    panel = window.training
    seen = []
    original = panel.progress.show_knn

    def show_knn(epoch, knn):  # what the row says the moment the first kNN arrives
        original(epoch, knn)
        seen.append(panel.progress.labels["knn"].text())

    panel.progress.show_knn = show_knn
    window.start()
    finish(qtbot, window)
    assert seen and "random init" in seen[0], seen
    floor = panel.progress.floor
    assert floor is not None and 0.0 < floor < 1.0
    assert panel.loss_plot.floor == pytest.approx(floor)
    rows = [line for line in open(os.path.join(window.last_run_dir, "metrics.jsonl")) if '"init"' in line]
    assert len(rows) == 1
    # accuracies on a fixed 0-100% axis, not autoscaled around the points
    low, high = panel.loss_plot.epoch_metric_view.viewRange()[1]
    assert low <= 0.0 and high >= 1.0
    # the run is over: no speed or time left
    assert panel.progress.labels["speed"].text() == "–" and panel.progress.labels["eta"].text() == "–"


def test_below_the_floor_is_said_plainly(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    progress = window.training.progress
    progress.set_floor(0.30)
    progress.show_knn(1, 0.25)
    label = progress.labels["knn"]
    assert "below random init" in label.text() and "30.0%" in label.text()
    progress.show_knn(2, 0.35)
    assert "below" not in label.text()


def test_a_new_run_starts_every_view_from_nothing(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, tiny_config(tmp_path, "simclr", epochs=2))
    window.start()
    finish(qtbot, window)
    panel = window.training
    assert points(panel.loss_plot) > 0 and panel.loss_plot.floor is not None
    assert panel.projection.point_count() > 0 and panel.matrix.title.text().startswith("the method's") is False
    window.model.set_config(tiny_config(tmp_path, "simclr", "train.epochs=200"))
    qtbot.waitUntil(window.start_action.isEnabled, timeout=20000)
    window.start()
    # before the new run delivers anything, nothing of the last one is left
    assert points(panel.loss_plot) == 0 and panel.loss_plot.floor is None
    assert not panel.views.shown and panel.projection.point_count() == 0
    assert panel.progress.labels["knn"].text() == "–" and panel.progress.floor is None
    window.stop()
    finish(qtbot, window)


def test_all_views_edits_only_what_every_view_shares(qtbot, tmp_path):
    # DINO's local crops keep their own, smaller scale when "all views" moves the global one
    window = open_window(qtbot, tmp_path)
    window.model.set_config(tiny_config(tmp_path, "dino"))  # the paper's 2 global + local crops
    preview = window.preview
    views = window.model.config.augment.views
    assert any(view.output_size not in (0, 32) for view in views)  # multi-crop: some local views
    labels = [preview.view_choice.itemText(i) for i in range(preview.view_choice.count())]
    assert labels[:3] == ["all views", "global views", "local views"]
    assert any("local" in label and "px" in label for label in labels[3:])
    local_scales = [view.crop_scale_min for view in views if view.output_size not in (0, 32)]
    global_scales = [view.crop_scale_min for view in views if view.output_size in (0, 32)]
    assert len(set(local_scales + global_scales)) > 1
    scale = preview.sliders["crop_scale_min"]
    assert not scale.isEnabled() and scale.value_label.text() == "differs"
    # flip probability is shared by every view: "all views" sets it on each
    preview.sliders["flip_p"].slider.setValue(0)
    assert [view.flip_p for view in window.model.config.augment.views] == pytest.approx([0.0] * len(views))
    # the global group edits the global views' scale alone
    preview.view_choice.setCurrentIndex(1)
    assert scale.isEnabled()
    scale.slider.setValue(scale.slider.value() + 1)
    after = window.model.config.augment.views
    assert [v.crop_scale_min for v in after if v.output_size not in (0, 32)] == pytest.approx(local_scales)
    assert len({v.crop_scale_min for v in after if v.output_size in (0, 32)}) == 1


def test_switching_from_mae_to_vicreg_says_what_changed_and_hides_vit_fields(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    picker, setup = window.setup.method, window.setup
    picker.setCurrentIndex(picker.findData("mae"))
    assert window.model.value("backbone.name") == "vit_tiny"
    layout = setup.backbone_form.layout()
    assert layout.isRowVisible(setup.backbone_form.editors["patch_size"])
    assert not layout.isRowVisible(setup.backbone_form.editors["small_stem"])
    picker.setCurrentIndex(picker.findData("vicreg"))
    assert window.model.value("backbone.name") == "small_cnn"  # MAE's forced choice goes
    note = setup.switch_note
    assert note.isVisibleTo(window) and note.text().startswith("Switched from mae to vicreg")
    assert "backbone vit_tiny → small_cnn" in note.toolTip() and "optimiser adamw → lars" in note.toolTip()
    for name in ("patch_size", "vit_depth", "position_embedding", "layer_scale", "vit_features"):
        assert not layout.isRowVisible(setup.backbone_form.editors[name]), name
    assert layout.isRowVisible(setup.backbone_form.editors["small_stem"])
    window.model.set_config(tiny_config(tmp_path, "simclr"))  # a file opened: no switch to tell of
    assert not note.isVisibleTo(window)


def test_the_blur_the_size_rule_turned_off_says_so_at_its_slider(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    window.model.set_config(tiny_config(tmp_path, "byol"))
    note = window.preview.rule_notes["blur_p"]
    assert not note.isHidden() and note.text().startswith("off at 32 px") and "1 / 0.1" in note.text()
    assert window.preview.rule_notes["hue"].isHidden()
    window.preview.sliders["blur_p"].slider.setValue(3)  # the user sets it again
    assert note.isHidden()
    window.model.set_config(tiny_config(tmp_path, "byol", "data.image_size=64"))
    assert note.isHidden()  # 64 px keeps the paper's blur


def test_a_masked_method_shows_its_masks_in_the_preview_and_they_follow_the_mask_ratio(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path)
    window.model.set_config(tiny_config(tmp_path, "mae", "backbone.name=vit_tiny", "backbone.patch_size=4",
                                        "backbone.vit_depth=2"))
    preview = window.preview
    grid = preview.grid
    assert "mask" in grid.caption.text() and len(grid.shown) == 3  # image, its view, its mask

    def hidden_share(column):  # the overlay darkens hidden patches: compare with the image
        originals = grid.shown[0].astype(int)
        return float(np.mean(np.any(column.astype(int) != originals, axis=-1)))

    at_75 = hidden_share(grid.shown[2])
    window.model.set_value("method.mask_ratio", 0.25)
    at_25 = hidden_share(grid.shown[2])
    assert at_75 > at_25 + 0.2
    window.model.set_config(tiny_config(tmp_path, "ijepa", "backbone.name=vit_tiny", "backbone.patch_size=4",
                                        "backbone.vit_depth=2"))
    assert "context" in grid.caption.text() and "targets" in grid.caption.text()
    window.model.set_config(tiny_config(tmp_path, "simclr"))
    assert "mask" not in grid.caption.text()  # a CNN method draws no mask


def test_the_accuracy_axis_is_fixed_at_0_100_and_zooms_with_the_wheel_over_it(qtbot):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    from app.widgets.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(800, 400)
    plot.show()
    plot.add_points(np.arange(1, 11, dtype=float), {"loss": np.linspace(3, 1, 10)})
    plot.add_epoch_metric("knn_top1", 5, 0.112)
    plot.add_epoch_metric("knn_top1", 10, 0.097)  # a small dip stays small on a 0-100% axis
    qtbot.wait(50)
    low, high = plot.epoch_metric_view.viewRange()[1]
    assert low <= 0.0 and high >= 1.0
    axis = plot._right_axes[plot.epoch_metric_view]
    view = plot.plot_item.getViewWidget()
    where = view.mapFromScene(axis.mapToScene(axis.boundingRect().center()))
    QApplication.sendEvent(view.viewport(), QWheelEvent(
        QPointF(where), QPointF(view.mapToGlobal(where)), QPoint(0, 0), QPoint(0, 120), Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False))
    zoomed_low, zoomed_high = plot.epoch_metric_view.viewRange()[1]
    assert zoomed_high - zoomed_low < 0.9 * (high - low)
