"""The expected duration before Start: the words it is said in, the arithmetic from a step's cost
to a run (by hand), a real measurement, a finished run's speed, the command line's line and the
window's label, which follows the amount of work without measuring again."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from ssl_engine.cli import main  # noqa: E402
from ssl_engine.config import ExperimentConfig  # noqa: E402
from ssl_engine.train.estimate import StepCosts, duration_in_words, measure, project, with_run_speed  # noqa: E402
from ssl_engine.data.for_config import load_data_for  # noqa: E402


def costs(**changes) -> StepCosts:
    values = dict(seconds_per_step=0.5, measured_steps=5, batch_size=64, device="this CPU", setup_seconds=2.0,
                  inference_images_per_second=1000.0, knn_seconds_per_pair=0.0, probe_seconds_per_row=0.0,
                  epoch_work_seconds_per_image=0.0, epoch_work_every=0)
    return StepCosts(**{**values, **changes})


@pytest.fixture(scope="module")
def digits():
    config = ExperimentConfig.for_method("simclr").with_overrides(["data.source=digits", "train.device=cpu"])
    return config, load_data_for(config)


@pytest.mark.parametrize("seconds, words", [(7.2, "about 7 s"), (41, "about 40 s"), (150, "about 2 min 30 s"),
                                            (236, "about 4 min"), (7800, "about 2 h 10 min"),
                                            (3 * 86400 + 4 * 3600, "about 3 days 4 h")])
def test_durations_in_words(seconds, words):
    assert duration_in_words(seconds) == words


def test_a_run_of_epochs_is_its_steps_and_its_evaluations(digits):
    config, data = digits
    config = config.with_overrides(["train.batch_size=64", "train.epochs=3", "train.linear_probe=false"])
    steps_per_epoch = len(data.train) // 64
    labelled, test = len(data.train), len(data.test)
    estimate = project(costs(), config, data)
    assert estimate.steps == 3 * steps_per_epoch
    assert estimate.train_seconds == pytest.approx(3 * steps_per_epoch * 0.5)
    # the kNN before and after training each embed the labelled training images and the test split
    assert estimate.evaluation_seconds == pytest.approx(2 * (labelled + test) / 1000.0)
    assert estimate.seconds == pytest.approx(2.0 + estimate.train_seconds + estimate.evaluation_seconds)
    assert estimate.images_per_second == pytest.approx(128.0)
    longer = project(costs(), config.with_overrides(["train.epochs=6"]), data)
    assert longer.train_seconds == pytest.approx(2 * estimate.train_seconds)


def test_a_time_budget_is_the_budget_and_a_method_with_epoch_work_pays_it(digits):
    config, data = digits
    budget = project(costs(), config.with_overrides(["train.minutes=1.5", "train.linear_probe=false"]), data)
    assert budget.train_seconds == pytest.approx(90.0) and budget.steps == 180
    # a resumed budget run has only what is left of its budget
    resumed = project(costs(), config.with_overrides(["train.minutes=1.5"]), data, start_step=100,
                      trained_seconds=60.0)
    assert resumed.train_seconds == pytest.approx(30.0) and resumed.steps == 60
    # DeepCluster's clustering at the start of every epoch: 0.001 s per image
    work = costs(epoch_work_seconds_per_image=0.001, epoch_work_every=1)
    config = config.with_overrides(["train.batch_size=64", "train.epochs=2", "train.minutes=0"])
    plain, worked = project(costs(), config, data), project(work, config, data)
    assert worked.train_seconds - plain.train_seconds == pytest.approx(2 * 0.001 * len(data.train))


def test_a_finished_runs_speed_replaces_the_measurement():
    measured = costs()
    run = with_run_speed(measured, {"steps": 100, "train_seconds": 40.0}, train_size=6400)
    assert run.seconds_per_step == pytest.approx(0.4) and run.from_run
    assert run.source == "from the last run of this set-up"
    assert with_run_speed(measured, {"steps": 5, "train_seconds": 4.0}, train_size=6400) == measured
    assert StepCosts.from_dict(run.to_dict()) == run
    with pytest.raises(ValueError):
        StepCosts.from_dict({"seconds_per_step": 0})


def test_a_real_measurement_times_the_steps(digits):
    config, data = digits
    config = config.with_overrides(["train.batch_size=32", "method.hidden_dim=64", "method.projection_dim=32"])
    measured = measure(config, data)
    assert measured.seconds_per_step > 0 and measured.measured_steps >= 1
    assert measured.batch_size == 32 and measured.device == "this CPU"
    assert measured.inference_images_per_second > 0 and measured.epoch_work_every == 0
    assert "measured over" in project(measured, config, data).line()


def test_the_command_line_says_how_long_before_it_trains(tmp_path, capsys):
    assert main(["train", "--method", "simclr", "--dataset", "digits", "--epochs", "1", "--batch-size", "64",
                 "--device", "cpu", "--runs-dir", str(tmp_path), "--set", "train.linear_probe=false",
                 "--set", "method.hidden_dim=64", "--set", "method.projection_dim=32"]) == 0
    err = capsys.readouterr().err
    assert "expected: about " in err and " on this CPU (" in err and "per step" in err
    assert err.index("expected: about ") < err.index("run folder:")


def test_the_window_shows_the_duration_and_follows_the_epochs(qtbot, tmp_path):
    from app.main_window import MainWindow
    from app.settings import AppSettings

    settings = AppSettings(path=str(tmp_path / "settings.ini"))
    config = ExperimentConfig.for_method("simclr").with_overrides(
        ["data.source=digits", "train.device=cpu", "train.epochs=2", "train.batch_size=64",
         "method.hidden_dim=64", "method.projection_dim=32", f"train.runs_dir={tmp_path}"])
    settings.set_experiment(config.to_dict())
    window = MainWindow(settings)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.estimate_label.text().startswith("expected: about"), timeout=60_000)
    assert "per step" in window.estimate_label.toolTip()
    measured = dict(window.estimate._costs)
    two_epochs = window.estimate.text
    window.model.set_value("train.epochs", 200)
    # the arithmetic follows at once, from the same measurement
    assert window.estimate.text != two_epochs and window.estimate._costs == measured
    window.model.set_value("train.epochs", "abc")  # an invalid set-up has no duration
    assert window.estimate_label.text() == ""
    window.estimate.shutdown()
