"""Reopening a run: every live view rebuilt from its folder as the window drew it while the run
trained, with a slider over the maps of every epoch."""

import numpy as np
import pytest

from app.widgets.training_panel import TrainingPanel
from app.worker import UI_RATES, Mailbox
from ssl_engine.errors import UserError
from ssl_engine.run_replay import replay_run
from ssl_engine.train import Trainer
from tests.helpers import tiny_config


def test_a_reopened_run_shows_what_the_window_showed_while_it_trained(qtbot, tmp_path):
    mailbox = Mailbox()
    trainer = Trainer(tiny_config(tmp_path, "barlow_twins", epochs=3))
    trainer.subscribe(mailbox.put, UI_RATES)
    trainer.run()
    live = TrainingPanel()
    qtbot.addWidget(live)
    live.apply(mailbox.drain())

    reopened = TrainingPanel()
    qtbot.addWidget(reopened)
    replay = replay_run(trainer.run_dir)
    reopened.show_run(replay)
    # every logged step's loss and terms, the kNN of every epoch and its floor
    for name in ("loss", "on-diagonal", "off-diagonal", "lr", "knn_top1"):
        for got, want in zip(reopened.loss_plot.series_data(name), live.loss_plot.series_data(name)):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    assert reopened.loss_plot.floor == pytest.approx(live.loss_plot.floor)
    assert reopened.progress.labels["step"].text() == live.progress.labels["step"].text() == "step 15/15"
    assert reopened.progress.labels["epoch"].text() == "epoch 3/3" and reopened.progress.bar.value() == 15
    assert reopened.progress.labels["knn"].text() == live.progress.labels["knn"].text()
    # views and matrices recorded after the first step and each epoch's last; the window last drew step 10's
    assert [step for step, _ in replay.recorded["views"]] == [1, 5, 10, 15]
    at_ten = replay.load("views", 10).value
    for got, want in zip([at_ten.originals, *at_ten.views], live.views.shown):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(replay.load("matrices", 10).value.matrices["cross-correlation"],
                               live.matrix._matrices["cross-correlation"], atol=2e-3)
    # the reopened run shows its last step's
    last = replay.load("views").value
    assert replay.load("views").step == 15 and len(reopened.views.shown) == 3
    for got, want in zip(reopened.views.shown, [last.originals, *last.views]):
        np.testing.assert_array_equal(got, want)
    assert set(reopened.matrix._matrices) == set(live.matrix._matrices)
    # the map of each epoch, through the slider; the last is shown first
    assert reopened.map_row.isVisibleTo(reopened) and reopened.map_epochs.maximum() == 2
    assert reopened.projection.status.text() == live.projection.status.text()
    reopened.map_epochs.setValue(0)
    assert reopened.projection.status.text().startswith("epoch 1,") and reopened.map_epoch_label.text() == "1"
    first_map = replay.load("map", replay.recorded["map"][0][0]).value
    last_map = replay.load("map").value
    assert not np.allclose(first_map.projection_2d, last_map.projection_2d)
    reopened.reset()
    assert not reopened.map_row.isVisibleTo(reopened) and reopened.replay is None


def test_a_folder_that_is_not_a_run_is_one_message(tmp_path):
    with pytest.raises(UserError, match="is not a run folder this version can reopen"):
        replay_run(tmp_path)
