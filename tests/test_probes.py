"""Live views as probes: computed only when a listener asks, delivered by name, recorded in the
run folder and read back as they were sent, drawn by the Training tab through their display."""

import json

import numpy as np
import pytest

from app.worker import UI_RATES, Mailbox
from ssl_engine.probes import PROBES, probe
from ssl_engine.probes.record import read_probe_results
from ssl_engine.train import EventRates, Trainer
from ssl_engine.train.events import ProbeResult
from tests.helpers import tiny_config


@pytest.fixture
def counting_probe():
    """A step probe 'test_steps' (its value: the step) and a curve 'test_curve' (per epoch),
    registered for one test; `calls` lists the steps and epochs each computed at."""
    calls = {"steps": [], "epochs": []}

    @probe("test_steps", per="step", every=3, display="views", help="the step", first_step=True)
    def steps(context):
        calls["steps"].append(context.step)
        return context.step

    @probe("test_curve", per="epoch", every=1, display="curve", help="the epoch as a number", at_start=True)
    def curve(context):
        calls["epochs"].append(context.epoch)
        return float(context.features.shape[0] + context.epoch)

    yield calls
    del PROBES["test_steps"], PROBES["test_curve"]


def test_a_probe_is_computed_only_at_the_steps_a_listener_asked_for(tmp_path, counting_probe):
    trainer = Trainer(tiny_config(tmp_path, "simclr", epochs=2))
    every_four, headless = [], []
    trainer.subscribe(every_four.append, EventRates(metrics_every_steps=0, probes={"test_steps": 4, "test_curve": 2}))
    trainer.subscribe(headless.append, EventRates(metrics_every_steps=0))
    trainer.run()
    assert trainer.steps_per_epoch == 5
    # the listener's rate, and the run's first step; the run folder's record adds each epoch's last step
    assert counting_probe["steps"] == [1, 4, 5, 8, 10]
    assert [e.step for e in every_four if isinstance(e, ProbeResult) and e.name == "test_steps"] == [1, 4, 8]
    # the curve before the first step (the floor) and at its rate, and in metrics.jsonl's rows
    assert counting_probe["epochs"] == [0, 2]
    curve = [(e.epoch, e.value) for e in every_four if isinstance(e, ProbeResult) and e.name == "test_curve"]
    assert curve == [(0, pytest.approx(64.0)), (2, pytest.approx(66.0))]
    assert not any(isinstance(e, ProbeResult) for e in headless)
    rows = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("test_curve") for r in rows if r["kind"] in ("init", "epoch")] == [64.0, None, 66.0]


def test_nothing_is_computed_or_recorded_when_no_listener_asks(tmp_path, counting_probe):
    trainer = Trainer(tiny_config(tmp_path, "simclr"))
    trainer.subscribe(lambda event: None, EventRates(metrics_every_steps=1))
    trainer.run()
    assert counting_probe == {"steps": [], "epochs": []}
    assert not (trainer.run_dir / "probes").exists()


def test_an_unknown_probe_name_is_refused_with_the_names_there_are(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "simclr"))
    with pytest.raises(ValueError, match="unknown probe mapp; the probes are .*map"):
        trainer.subscribe(print, EventRates(probes={"mapp": 1}))


def test_the_mailbox_queues_curves_and_keeps_the_newest_of_other_probes():
    mailbox = Mailbox()
    for step in (10, 20):
        mailbox.put(ProbeResult("views", step, 0, f"views {step}"))
        mailbox.put(ProbeResult("knn_top1", step, step // 10, step / 100))
    delivery = mailbox.drain()
    assert [r.value for r in delivery.probes["views"]] == ["views 20"]
    assert [r.value for r in delivery.probes["knn_top1"]] == [pytest.approx(0.1), pytest.approx(0.2)]
    assert delivery.latest("views") == "views 20" and delivery.latest("map") is None
    assert mailbox.drain().empty()


def test_what_a_window_asks_for_is_recorded_once_an_epoch_and_read_back_as_sent(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "simclr", epochs=2))
    seen = []
    trainer.subscribe(seen.append, UI_RATES)
    trainer.run()
    recorded = read_probe_results(trainer.run_dir / "probes")
    # step probes after the first step and each epoch's last, epoch probes each epoch; a CNN and
    # SimCLR have no pictures, attention or histograms; curves (the kNN) are in metrics.jsonl instead
    assert [(r.name, r.step, r.epoch) for r in recorded] == [
        ("matrices", 1, 0), ("views", 1, 0), ("matrices", 5, 0), ("views", 5, 0), ("map", 5, 1), ("matrices", 10, 1), ("views", 10, 1), ("map", 10, 2)]
    sent = {(e.name, e.step): e.value for e in seen if isinstance(e, ProbeResult)}
    # the window saw step probes at steps 1 and 10 and the map at every epoch: those read back as sent
    compared = [r for r in recorded if (r.name, r.step) in sent]
    assert [(r.name, r.step) for r in compared] == [("matrices", 1), ("views", 1), ("map", 5), ("matrices", 10),
                                                     ("views", 10), ("map", 10)]
    for result in compared:
        original = sent[(result.name, result.step)]
        assert type(result.value) is type(original)
        if result.name == "map":
            np.testing.assert_allclose(result.value.embeddings, original.embeddings, rtol=2e-3, atol=2e-3)
            np.testing.assert_array_equal(result.value.images, original.images)
            np.testing.assert_array_equal(result.value.labels, original.labels)
            assert result.value.class_names == original.class_names
        elif result.name == "views":
            np.testing.assert_array_equal(result.value.originals, original.originals)
            assert len(result.value.views) == len(original.views)
            for got, want in zip(result.value.views, original.views):
                np.testing.assert_array_equal(got, want)
        else:
            assert list(result.value.matrices) == list(original.matrices)
            for name in original.matrices:
                np.testing.assert_allclose(result.value.matrices[name], original.matrices[name], atol=2e-3)
    # the evaluation images are the same every epoch: written once
    with np.load(trainer.run_dir / "probes" / "map" / f"{10:09d}.npz") as second_map:
        assert "images" not in second_map.files and "embeddings" in second_map.files
    assert read_probe_results(trainer.run_dir / "probes", "views")[2].step == 10


def test_the_training_tab_draws_a_new_curve_probe_without_a_change_of_its_own(qtbot, tmp_path, counting_probe):
    from app.widgets.training_panel import TrainingPanel

    mailbox = Mailbox()
    trainer = Trainer(tiny_config(tmp_path, "simclr", epochs=2))
    trainer.subscribe(mailbox.put, EventRates(metrics_every_steps=1, probes={"test_curve": 1, "knn_top1": 1}))
    trainer.run()
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.apply(mailbox.drain())
    steps, values = panel.loss_plot.series_data("test_curve")
    np.testing.assert_allclose(steps, [0, 5, 10])
    np.testing.assert_allclose(values, [64.0, 65.0, 66.0])
    # the kNN's value before training is the floor line, not a point
    assert panel.loss_plot.floor is not None and panel.progress.floor is not None and len(panel.loss_plot.series_data("knn_top1")[0]) == 2
