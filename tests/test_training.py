"""The Trainer on the CPU: every method runs, writes its run folder, streams events, stops
with a checkpoint, resumes exactly, and fails with one clear message on a diverging loss."""

import json
import threading

import pytest
import torch

from ssl_engine import losses
from ssl_engine.errors import UserError
from ssl_engine.methods import METHODS
from ssl_engine.run_store import read_run
from ssl_engine.train import EventRates, Trainer, TrainingControl, TrainingDiverged
from ssl_engine.checkpoint import load_checkpoint
from ssl_engine.train.events import CheckpointSaved, EpochEnd, Failed, Finished, ProbeResult, RunStarted, StepMetrics
from tests.helpers import assert_same_state, stopped_run, tiny_config


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_trains_and_writes_its_run_folder(tmp_path, method):
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(tmp_path, method))
    summary = trainer.run()
    run = trainer.run_dir
    assert (run / "config.toml").is_file()
    assert (run / "checkpoints" / "last.pt").is_file()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if m["kind"] == "step"]
    assert len(steps) == 5 and all(isinstance(m["loss"], float) for m in steps)
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["method"] == method and on_disk["epochs"] == 1
    assert 0 <= on_disk["knn_top1"] <= 1 and on_disk["images_per_second"] > 0
    assert summary == on_disk
    state = load_checkpoint(run)
    assert state["step"] == 5 and state["config"]["method"]["name"] == method


def test_training_changes_the_backbone_and_reports_method_terms(tmp_path):
    config = tiny_config(tmp_path, "vicreg")
    trainer = Trainer(config)
    seen, initial = [], {}

    def record(event):
        seen.append(event)
        if isinstance(event, RunStarted):  # the model exists, no step has run yet
            initial.update({k: v.clone() for k, v in trainer.method.backbone.state_dict().items()})

    trainer.subscribe(record, EventRates(metrics_every_steps=1))
    trainer.run()
    steps = [e for e in seen if isinstance(e, StepMetrics)]
    assert set(steps[0].terms) == {"invariance", "variance", "covariance"}
    p = config.method.params
    for s in steps:  # the reported loss is the paper's weighted sum of its terms
        t = s.terms
        assert s.loss == pytest.approx(p.sim_coeff * t["invariance"] + p.std_coeff * t["variance"]
                                       + p.cov_coeff * t["covariance"], rel=1e-4)
    final = load_checkpoint(trainer.run_dir)["method"]
    changed = [k for k, v in initial.items() if v.is_floating_point() and not torch.equal(v, final["backbone." + k])]
    weights = [k for k, v in initial.items() if v.is_floating_point() and k.endswith("weight")]
    assert set(weights) <= set(changed), set(weights) - set(changed)



def probed(events, name):
    """The results of probe `name` among `events`, in order."""
    return [e for e in events if isinstance(e, ProbeResult) and e.name == name]


def test_events_stream_at_the_rates_asked(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "barlow_twins", epochs=2))
    events = []
    trainer.subscribe(events.append, EventRates(metrics_every_steps=2, probes={"views": 3, "matrices": 5, "map": 1,
                                                                              "knn_top1": 1}, views_count=4))
    headless = []
    trainer.subscribe(headless.append, EventRates(metrics_every_steps=0))
    trainer.run()
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is Finished
    assert [e.step for e in events if isinstance(e, StepMetrics)] == [2, 4, 6, 8, 10]
    views = probed(events, "views")
    assert [e.step for e in views] == [1, 3, 6, 9]  # after the first step too, then at the rate
    assert views[0].value.originals.shape == (4, 32, 32, 3) and views[0].value.originals.dtype.name == "uint8"
    assert len(views[0].value.views) == 2 and views[0].value.views[0].shape == (4, 32, 32, 3)
    matrices = probed(events, "matrices")
    assert [e.step for e in matrices] == [1, 5, 10]
    assert set(matrices[0].value.matrices) == {"cross-correlation", "similarity"}
    assert matrices[0].value.matrices["cross-correlation"].shape == (64, 64)
    maps = [e.value for e in probed(events, "map")]
    assert len(maps) == 2 and maps[0].embeddings.shape == (64, 256) and maps[0].projection_2d.shape == (64, 2)
    assert maps[0].images.shape == (64, 32, 32, 3) and (maps[0].labels >= 0).all()
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [1, 2] and all(0 <= e.knn_top1 <= 1 for e in epochs)
    knn = probed(events, "knn_top1")
    assert [(e.epoch, e.value) for e in knn[1:]] == [(e.epoch, e.knn_top1) for e in epochs]
    assert any(isinstance(e, CheckpointSaved) for e in events)
    floors = [e for e in knn if e.step == 0]  # before the first step, once
    assert len(floors) == 1 and floors[0].epoch == 0 and 0 <= floors[0].value <= 1
    assert events.index(floors[0]) < kinds.index(StepMetrics)
    # a listener that asked for nothing costly gets none of it
    assert not any(isinstance(e, (ProbeResult, StepMetrics)) for e in headless)


def test_stop_from_another_thread_ends_with_a_checkpoint(tmp_path):
    control = TrainingControl()
    trainer = Trainer(tiny_config(tmp_path, "simclr", epochs=50), control=control)

    def stop_soon(event):
        if isinstance(event, StepMetrics) and event.step == 3:
            threading.Thread(target=control.stop).start()

    trainer.subscribe(stop_soon, EventRates(metrics_every_steps=1))
    summary = trainer.run()
    assert summary["stopped_early"] is True and summary["steps"] < 250
    assert load_checkpoint(trainer.run_dir)["step"] == summary["steps"]
    assert json.loads((trainer.run_dir / "summary.json").read_text())["stopped_early"] is True


def test_pause_blocks_and_resume_continues(tmp_path):
    control = TrainingControl()
    trainer = Trainer(tiny_config(tmp_path, "simclr"), control=control)
    steps = []
    paused_at = threading.Event()

    def on_event(event):
        if isinstance(event, StepMetrics):
            steps.append(event.step)
            if event.step == 2:
                control.pause()
                paused_at.set()

    trainer.subscribe(on_event, EventRates(metrics_every_steps=1))
    worker = threading.Thread(target=trainer.run)
    worker.start()
    assert paused_at.wait(60)
    worker.join(timeout=1.0)
    assert worker.is_alive() and steps == [1, 2]  # paused: no progress
    control.resume()
    worker.join(timeout=60)
    assert not worker.is_alive() and steps == [1, 2, 3, 4, 5]


def test_a_stopped_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path):
    straight = Trainer(tiny_config(tmp_path / "a", "simclr", epochs=2))
    straight.run()

    first, summary = stopped_run(tiny_config(tmp_path / "b", "simclr", epochs=2))
    assert summary["steps"] == 5
    resumed = Trainer(tiny_config(tmp_path / "b", "simclr", epochs=2), resume=first.run_dir)
    summary = resumed.run()
    assert summary["steps"] == 10 and resumed.run_dir == first.run_dir
    a = load_checkpoint(straight.run_dir)["method"]
    b = load_checkpoint(first.run_dir)["method"]
    assert_same_state(a, b)


def test_diverging_loss_fails_with_one_clear_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    # BatchNorm keeps these small nets from diverging on their own, so the loss is made to
    # turn NaN in the second epoch: what is under test is how the trainer reacts.
    real_info_nce = losses.info_nce

    def info_nce_going_nan(z1, z2, temperature):
        calls.append(1)
        loss = real_info_nce(z1, z2, temperature)
        return loss * float("nan") if len(calls) > 7 else loss

    calls = []
    monkeypatch.setattr(losses, "info_nce", info_nce_going_nan)
    trainer = Trainer(tiny_config(tmp_path, "simclr", epochs=3))
    failures = []
    trainer.subscribe(failures.append, EventRates(metrics_every_steps=0))
    with pytest.raises(TrainingDiverged, match="the loss became nan at step 8"):
        trainer.run()
    failed = [e for e in failures if isinstance(e, Failed)]
    assert len(failed) == 1 and "lower optim.lr" in failed[0].message and "\n" not in failed[0].message
    assert "Traceback" in failed[0].details
    assert load_checkpoint(trainer.run_dir)["step"] == 5  # the end of the last good epoch
    assert "failed: the loss became nan" in (trainer.run_dir / "run.log").read_text()
    record = read_run(trainer.run_dir)
    assert record.status == "failed" and record.message == failed[0].message and record.resumable


def test_batch_larger_than_the_data_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"train.batch_size \(512\) is larger than the training set"):
        Trainer(tiny_config(tmp_path, "simclr", batch=512)).run()
