"""train.minutes: a run sized by a time budget. The first steps' speed sets its length, the
learning-rate and momentum schedules span that length, the deadline ends it as a finished (and
evaluated) run, and a stopped budget run resumes with the length and time it had.

The trainer's clock is driven by the step events here (one second per step), so that the
steps, the estimate and the deadline are exact; one run on the real clock checks the command."""

import json

import pytest

from ssl_engine.cli import main
from ssl_engine.train import EventRates, Trainer, TrainingControl
from ssl_engine.checkpoint import load_checkpoint
from ssl_engine.train.events import StepMetrics
from tests.helpers import SMALL_HEADS, tiny_config

BUDGET = ["train.minutes=0.5"]  # 30 seconds: 30 steps at one second each
PROVISIONAL_STEPS = 100  # 20 epochs of 5 steps: the length before the speed is measured


class StepClock:
    """One second per training step: the time moves when a step's metrics are emitted."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def budget_run(config, *, stop_at: int | None = None, resume=None):
    control = TrainingControl()
    trainer = Trainer(config, control=control, resume=resume)
    trainer.clock = clock = StepClock()
    seen = []

    def on_step(event):
        if isinstance(event, StepMetrics):
            seen.append(event)
            clock.now += 1.0
            if event.step == stop_at:
                control.stop()

    trainer.subscribe(on_step, EventRates(metrics_every_steps=1))
    return trainer, trainer.run(), seen


def test_the_budget_sizes_the_run_and_its_schedules_span_it(tmp_path):
    trainer, summary, seen = budget_run(tiny_config(tmp_path, "byol", *BUDGET, epochs=20))
    # 10 timed steps after the first took 10 s: 20 more fit in the 20 s left, 31 in all
    assert [m.total_steps for m in seen[:10]] == [PROVISIONAL_STEPS] * 10
    assert {m.total_steps for m in seen[10:]} == {31}
    assert trainer.method.total_steps == 31
    # the deadline (30 s) comes one step before the estimate's end: a finished run, evaluated
    assert summary["steps"] == 30 and not summary["stopped_early"] and summary["knn_top1"] is not None
    assert summary["minutes"] == pytest.approx(0.5)
    peak = trainer.peak_lr
    assert seen[-1].lr < 0.05 * peak  # the cosine reached its end; over 100 steps it would be at ~0.8
    assert trainer.method.momentum > 0.999  # BYOL's EMA momentum, 0.996 -> 1 over the 31 steps
    checkpoint = load_checkpoint(trainer.run_dir)
    assert checkpoint["total_steps"] == 31 and checkpoint["length_measured"] is True


def test_a_warm_up_under_way_when_the_length_is_measured_goes_on_without_a_jump(tmp_path):
    """200 provisional epochs put the warm-up at 50 steps; the measured 31-step run wants 3. At
    step 11 the rate has reached 11/50 of the peak: it climbs on from there at the new warm-up's
    slope, then the cosine brings it down by the end."""
    trainer, summary, seen = budget_run(tiny_config(tmp_path, "simclr", *BUDGET, epochs=200))
    peak, rates = trainer.peak_lr, [m.lr for m in seen]
    assert rates[10] == pytest.approx(peak * 11 / 50)  # the last provisional step
    assert max(abs(b - a) for a, b in zip(rates, rates[1:])) < 0.3 * peak  # a jump to the peak would be 0.78
    top = rates.index(max(rates))
    assert max(rates) == pytest.approx(peak) and 11 < top < 16
    assert all(b >= a for a, b in zip(rates[:top], rates[1:top + 1]))
    assert all(b <= a for a, b in zip(rates[top:], rates[top + 1:]))
    assert summary["steps"] == 30 and rates[-1] < 0.05 * peak


def test_a_stopped_budget_run_resumes_with_its_length_and_time(tmp_path):
    config = tiny_config(tmp_path, "byol", *BUDGET, epochs=20)
    first, summary, _ = budget_run(config, stop_at=15)
    assert summary["stopped_early"] and summary["steps"] == 15
    assert load_checkpoint(first.run_dir)["train_seconds"] == pytest.approx(15.0)
    resumed, summary, seen = budget_run(config, resume=first.run_dir)
    assert {m.total_steps for m in seen} == {31}  # not measured again
    assert summary["steps"] == 30 and not summary["stopped_early"]  # 15 s before and 15 s now


def test_the_command_trains_for_minutes_on_the_real_clock(tmp_path, capsys):
    sets = ["data.shapes_count=400", "train.eval_subset=64", "train.linear_probe=false", *SMALL_HEADS["simclr"]]
    assert main(["train", "--method", "simclr", "--dataset", "shapes", "--minutes", "0.05", "--batch-size", "64",
                 "--device", "cpu", "--runs-dir", str(tmp_path), "--quiet",
                 *[a for s in sets for a in ("--set", s)]]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["minutes"] == pytest.approx(0.05) and not summary["stopped_early"] and summary["steps"] >= 1
    assert summary["train_seconds"] < 3 + 30  # the 3 s budget, and at most a slow step past it
    run = next(tmp_path.iterdir())
    assert "minutes = 0.05" in (run / "config.toml").read_text()


def test_the_progress_row_follows_the_measured_length(qtbot):
    from app.widgets.training_panel import ProgressRow
    from ssl_engine.train.events import RunStarted

    row = ProgressRow()
    qtbot.addWidget(row)
    row.start(RunStarted(run_dir="", config={}, total_steps=PROVISIONAL_STEPS, steps_per_epoch=5, start_step=0,
                         device="cpu", train_size=320, test_size=80, class_names=[], skipped_files=[]))
    row.set_total_steps(31)
    row.show_step(12, 2, 100.0, 19.0)
    assert row.bar.maximum() == 31
    assert row.labels["step"].text() == "step 12/31" and row.labels["epoch"].text() == "epoch 3/7"
    row.set_total_steps(0)  # an event without a length (no budget) changes nothing
    assert row.bar.maximum() == 31
