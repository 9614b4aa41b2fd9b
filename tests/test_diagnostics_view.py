"""The Diagnostics view in the Training tab: the measures of a real run drawn per epoch, live and
reopened alike, no alarm for a healthy run; the collapse alarm in words when the rank falls."""

import numpy as np
import pytest

from app.widgets.training_panel import TrainingPanel
from app.worker import UI_RATES, Delivery, Mailbox
from ssl_engine.probes.base import ProbeResult
from ssl_engine.run_replay import replay_run
from ssl_engine.train import Trainer
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real two-epoch SimCLR run as the window receives it: its folder and its delivery."""
    mailbox = Mailbox()
    trainer = Trainer(tiny_config(tmp_path_factory.mktemp("diagnostics"), "simclr", epochs=2, count=120))
    trainer.subscribe(mailbox.put, UI_RATES)
    trainer.run()
    return trainer.run_dir, mailbox.drain()


def test_a_run_draws_its_measures_and_a_reopened_run_the_same(qtbot, run):
    run_dir, delivery = run
    live = TrainingPanel()
    qtbot.addWidget(live)
    live.apply(delivery)
    rank = live.diagnostics.plots["rankme"]
    assert rank.epochs == [0.0, 1.0, 2.0] and all(np.isfinite(rank.values))
    spread = live.diagnostics.plots["embedding_std"]
    assert spread.line.value() == pytest.approx(32 ** -0.5)  # the dashed 1/sqrt(d)
    assert rank.label.text().endswith("/ 32") and spread.line.isVisible()
    assert live.diagnostics.plots["held_out_loss"].widget.isHidden()  # simclr has none
    assert live.alarm.isHidden() and live.curves.tabText(1) == "Diagnostics"

    reopened = TrainingPanel()
    qtbot.addWidget(reopened)
    reopened.show_run(replay_run(run_dir))
    for key, plot in live.diagnostics.plots.items():
        np.testing.assert_allclose(reopened.diagnostics.plots[key].values, plot.values, rtol=1e-6)


def test_the_alarm_says_what_collapsed_and_why(qtbot, run):
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    delivery = run[1]
    at_init = delivery.probes["diagnostics"][0]
    assert at_init.step == 0
    panel.apply(Delivery(started=delivery.started, probes={"diagnostics": [at_init]}))
    assert panel.alarm.isHidden()
    # an epoch whose embedding lost its rank: the alarm, in words, naming SimCLR's safeguard
    collapsed = {**at_init.value, "rankme": 1.0, "embedding_std": at_init.value["embedding_std"] * 0.01}
    panel.apply(Delivery(probes={"diagnostics": [ProbeResult("diagnostics", step=50, epoch=2, value=collapsed)]}))
    assert not panel.alarm.isHidden() and "Complete collapse at epoch 2" in panel.alarm.text()
    assert "the negatives" in panel.alarm.text() and panel.curves.tabText(1) == "Diagnostics ⚠"
    panel.reset()
    assert panel.alarm.isHidden() and panel.diagnostics.plots["rankme"].epochs == []
