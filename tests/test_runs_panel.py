"""The Runs tab on real run folders: the table, sorting and filtering, tags, resume; and the
window offering to resume a run whose process was killed."""

import json
import shutil
import subprocess
import sys

import pytest
from PySide6.QtCore import Qt

from app.main_window import MainWindow
from app.settings import AppSettings
from app.widgets.runs_panel import RunsPanel
from ssl_engine.run_store import read_run, set_tags
from ssl_engine.runs import STATUS_FILE
from tests.helpers import stopped_run, tiny_config


@pytest.fixture
def runs(tmp_path, trained_run):
    root = tmp_path / "runs"
    shutil.copytree(trained_run, root / "finished")
    stopped_run(tiny_config(tmp_path, "byol", "train.run_name=stopped", f"train.runs_dir={root}"), at_step=3)
    return root


def cells(panel: RunsPanel, column: int) -> list[str]:
    return [panel.proxy.data(panel.proxy.index(row, column)) for row in range(panel.proxy.rowCount())]


def test_the_table_sorts_filters_tags_and_asks_to_resume(qtbot, runs):
    panel = RunsPanel(str(runs))
    qtbot.addWidget(panel)
    assert cells(panel, 0) == ["stopped", "finished"] and cells(panel, 1) == ["stopped", "finished"]
    assert panel.count.text() == "2 runs"
    headers = [panel.table_model.headerData(c, Qt.Orientation.Horizontal) for c in range(panel.table_model.columnCount())]
    epochs = headers.index("epochs")
    panel.table.sortByColumn(epochs, Qt.SortOrder.DescendingOrder)  # 1 epoch above 0.6, as numbers
    assert cells(panel, 0) == ["finished", "stopped"]
    panel.table.sortByColumn(epochs, Qt.SortOrder.AscendingOrder)
    assert cells(panel, 0) == ["stopped", "finished"]

    panel.filter.setText("BYOL")
    assert cells(panel, 0) == ["stopped"] and panel.count.text() == "1 of 2 runs"
    panel.filter.setText("")

    set_tags(read_run(runs / "finished"), ["baseline"])
    panel.refresh()
    panel.filter.setText("baseline")
    assert cells(panel, 0) == ["finished"] and cells(panel, headers.index("tags")) == ["baseline"]
    panel.table.selectRow(0)
    assert not panel.buttons["resume"].isEnabled() and panel.buttons["delete"].isEnabled()

    panel.filter.setText("")
    panel.select_run("stopped")
    assert panel.selected().name == "stopped" and panel.buttons["resume"].isEnabled()
    with qtbot.waitSignal(panel.resume_requested) as asked:
        qtbot.mouseClick(panel.buttons["resume"], Qt.MouseButton.LeftButton)
    assert asked.args == [str(runs / "stopped")]


def test_the_window_offers_to_resume_a_killed_run_and_trains_it_to_the_end(qtbot, tmp_path, runs):
    folder = runs / "stopped"
    status = json.loads((folder / STATUS_FILE).read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / STATUS_FILE).write_text(json.dumps({**status, "status": "running", "pid": dead.pid}))
    settings = AppSettings(tmp_path / "settings.ini")
    settings.set_experiment(tiny_config(tmp_path, "simclr", f"train.runs_dir={runs}").to_dict())
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: getattr(window, "interrupted_box", None) is not None, timeout=10000)
    box = window.interrupted_box
    assert "The run stopped (byol on shapes) was interrupted at epoch 0.6" in box.text()
    resume = next(b for b in box.buttons() if b.text() == "Resume")
    qtbot.mouseClick(resume, Qt.MouseButton.LeftButton)
    assert window.worker is not None and window.worker.resume == str(folder)
    qtbot.waitUntil(lambda: window.worker is None, timeout=120000)
    record = read_run(folder)
    assert record.status == "finished" and record.epochs == pytest.approx(1.0)
    assert [r.name for r in window.runs.records if r.status == "finished"] == ["stopped", "finished"]
