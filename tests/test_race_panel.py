"""A race of methods from the window: the dialog checks the plan before anything trains, the
race runs off the UI thread with Start blocked, and its leaderboard and compared runs fill the
Runs tab as each run ends; an earlier race's leaderboard comes back from its folder."""

import pytest
from PySide6.QtCore import Qt

from app.main_window import MainWindow
from app.settings import AppSettings
from app.widgets.race_dialog import RaceDialog, parse_seeds
from ssl_engine.errors import ConfigError
from ssl_engine.leaderboard import HEADERS
from ssl_engine.run_store import list_races, list_runs
from tests.helpers import tiny_config

RACE_SETTINGS = ("train.batch_size=32", "train.eval_subset=64", "train.linear_probe=false",
                 "method.projection_dim=32", "method.hidden_dim=64")


def _tick(dialog: RaceDialog, methods) -> None:
    for row in range(dialog.methods.count()):
        item = dialog.methods.item(row)
        if item.data(Qt.ItemDataRole.UserRole):
            item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in methods
                               else Qt.CheckState.Unchecked)


def test_seeds_are_whole_numbers():
    assert parse_seeds("0, 1 2, 1") == (0, 1, 2)
    for text in ("", "one", "0.5"):
        with pytest.raises(ConfigError, match="seeds"):
            parse_seeds(text)


def test_the_dialog_shows_a_bad_plan_and_stays_open(qtbot, tmp_path):
    dialog = RaceDialog(data_source="digits", runs_dir=str(tmp_path / "runs"), device="cpu")
    qtbot.addWidget(dialog)
    assert dialog.data_source() == "digits" and sorted(dialog.chosen_methods()) == ["byol", "simclr"]
    _tick(dialog, ())
    dialog.accept()
    assert dialog.runner is None and "tick at least one method" in dialog.problems.text()
    _tick(dialog, ("simclr",))
    dialog.seeds.setText("first")
    dialog.accept()
    assert dialog.runner is None and "seeds" in dialog.problems.text()
    dialog.seeds.setText("0")
    dialog.assignments.setText("train.batch_size=zero")
    dialog.accept()
    assert dialog.runner is None and "train.batch_size" in dialog.problems.text()
    assert not (tmp_path / "runs").exists()  # nothing created for a refused plan


def test_a_race_fills_the_leaderboard_and_blocks_start(qtbot, tmp_path):
    runs_dir = tmp_path / "runs"
    settings = AppSettings(tmp_path / "settings.ini")
    settings.set_experiment(tiny_config(tmp_path, "simclr", f"train.runs_dir={runs_dir}").to_dict())
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.start_blocked_by() is None, timeout=30000)
    panel = window.runs
    dialog = RaceDialog(runs_dir=str(runs_dir), parent=panel, **panel.race_defaults())
    assert dialog.data_source() == "shapes" and dialog.device.currentData() == "cpu"
    _tick(dialog, ("simclr", "byol"))
    dialog.data.setCurrentIndex(dialog.data.findData("digits"))
    dialog.minutes.setValue(0.05)
    dialog.backbone.setCurrentIndex(dialog.backbone.findData("small_cnn"))
    dialog.assignments.setText(" ".join(RACE_SETTINGS))
    dialog.accept()
    assert dialog.runner is not None
    panel.run_race(dialog.runner)
    assert "race" in window.start_blocked_by() and not panel.buttons["race"].isEnabled()
    assert not window.start_action.isEnabled()
    qtbot.waitUntil(lambda: panel.race_thread is None, timeout=240000)

    race = list_races(runs_dir)[0]
    assert race.status == "finished" and (race.path / "leaderboard.md").is_file()
    assert "finished" in panel.race_status.text() and panel.stop_race_button.isHidden()
    assert window.start_blocked_by() is None and panel.buttons["race"].isEnabled()
    compare = panel.compare
    assert compare.pages.widget(0) is compare.leaderboard_page
    table = compare.leaderboard
    assert [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())] == HEADERS
    methods = sorted(table.item(row, 0).text() for row in range(table.rowCount()))
    assert methods == ["byol", "simclr"]
    floors = [table.item(row, HEADERS.index("random-init floor")).text() for row in range(table.rowCount())]
    assert all(floor.endswith("%") for floor in floors)
    raced = sorted(r.name for r in list_runs(runs_dir))
    assert sorted(run.name for run in compare.runs) == raced and len(raced) == 2
    assert sorted(r.name for r in panel.selected_records()) == raced

    # some of the race's runs are compared under its leaderboard; "–" leaves the race
    panel.select_run(raced[0])
    assert compare.race is not None and compare.runs and [r.name for r in compare.runs] == [raced[0]]
    panel.races.setCurrentIndex(panel.races.findData(None))
    panel.races.activated.emit(panel.races.currentIndex())
    assert compare.race is None and compare.pages.indexOf(compare.leaderboard_page) < 0
    panel.races.setCurrentIndex(panel.races.findData(str(race.path)))
    panel.races.activated.emit(panel.races.currentIndex())
    assert compare.race is not None and compare.leaderboard.rowCount() == 2
    assert sorted(r.name for r in panel.selected_records()) == raced
