"""The Runs tab: every run under the runs folder in a sortable, filterable table (the same
table as `python main.py runs`), with open (the run's views rebuilt in the Training tab), rename,
tags, a note, delete (to the system trash, or for good after a confirmation) and resume for runs
that were stopped, failed or interrupted. Two or more selected runs are compared below the
table (`compare_view.CompareView`). "Race…" sets up a race of methods (`race_dialog`), runs it
off the UI thread (`app.race_thread`) and fills its leaderboard below as each run ends; the
leaderboards of earlier races are a choice away.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QFile, QItemSelection, QItemSelectionModel, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QHBoxLayout, QHeaderView, QInputDialog, QLabel, QLineEdit,
                               QMessageBox, QPushButton, QSplitter, QTableView, QVBoxLayout, QWidget)

from ssl_engine.errors import UserError
from ssl_engine.race import RaceFinished, RaceRunEnded, RaceRunStarted, RaceStarted
from ssl_engine.run_store import (RunRecord, delete_run, format_duration, list_races, list_runs, read_race,
                                  rename_run, set_note, set_tags, table_rows)
from ssl_engine.train.events import StepMetrics

from ..race_thread import RaceFailed, RaceThread
from .compare_view import CompareView
from .race_dialog import RaceDialog

SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # numbers sort as numbers, dates as dates
RACE_POLL_MS = 200
RACE_TIP = "train several methods for the same minutes each on one data set and rank them on a leaderboard"
STATUS_COLOURS = {"running": "#2c7fb8", "interrupted": "#d95f02", "failed": "#d9534f"}


class RunsPanel(QWidget):
    """Observes the runs folder; asks the window to resume a run through `resume_requested`."""

    resume_requested = Signal(str)  # the run folder
    open_requested = Signal(str)    # the run folder, to show its views
    race_running = Signal(bool)     # a race started (True) or ended (False)

    def __init__(self, runs_dir: str = "runs", parent=None):
        super().__init__(parent)
        self.runs_dir = runs_dir
        self.records: list[RunRecord] = []
        self._compared: list[Path] | None = None  # the runs the comparison below shows
        self.race_thread: RaceThread | None = None
        self.race_folder: Path | None = None      # the race the leaderboard below shows
        self.race_total = 0
        self.race_blocked_by: str | None = None  # why no race can start now (the window trains)
        # what a new race starts from (the window sets it to its set-up's data and device)
        self.race_defaults = lambda: {"data_source": "shapes", "device": "auto"}
        self.race_timer = QTimer(self)
        self.race_timer.setInterval(RACE_POLL_MS)
        self.race_timer.timeout.connect(self._poll_race)
        self.table_model = QStandardItemModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)  # any column
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.table = QTableView()
        self.table.setObjectName("runs_table")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().hide()
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(lambda _: self.open())

        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter: method, data, status, tag…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter_changed)
        self.count = QLabel()
        self.buttons = {}
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.count)
        for name, text, slot, tip in (
                ("refresh", "Refresh", self.refresh, "read the runs folder again"),
                ("open", "Open", self.open, "show the selected run's curves and views in the Training tab"),
                ("rename", "Rename…", self.rename, "rename the selected run's folder"),
                ("tags", "Tags…", self.edit_tags, "tags of the selected run, separated by commas"),
                ("note", "Note…", self.edit_note, "a note on the selected run"),
                ("delete", "Delete…", self.delete, "move the selected run to the trash"),
                ("resume", "Resume", self.resume, "train the selected run on from its last checkpoint"),
                ("race", "Race…", self.start_race, RACE_TIP)):
            button = self.buttons[name] = QPushButton(text)
            button.setObjectName(f"runs.{name}")
            button.setToolTip(tip)
            button.clicked.connect(slot)
            top.addWidget(button)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.races = QComboBox()
        self.races.setObjectName("runs.races")
        self.races.setToolTip("the leaderboard of a race of methods, with its runs compared")
        self.races.activated.connect(self._race_chosen)
        self.race_status = QLabel()
        self.race_status.setObjectName("runs.race_status")
        self.stop_race_button = QPushButton("Stop race")
        self.stop_race_button.setObjectName("runs.stop_race")
        self.stop_race_button.setToolTip("stop the run that trains (it keeps its checkpoint); the rest are not run")
        self.stop_race_button.clicked.connect(self.stop_race)
        self.stop_race_button.hide()
        race_row = QHBoxLayout()
        race_row.addWidget(QLabel("races:"))
        race_row.addWidget(self.races)
        race_row.addWidget(self.race_status, 1)
        race_row.addWidget(self.stop_race_button)
        self.compare = CompareView()
        upper = QWidget()
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addLayout(top)
        upper_layout.addWidget(self.table, 1)
        upper_layout.addWidget(self.note)
        upper_layout.addLayout(race_row)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(upper)
        self.splitter.addWidget(self.compare)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([300, 500])  # a few rows of runs above, the comparison below
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)
        self.refresh()

    # -- the table ------------------------------------------------------------------------
    def set_runs_dir(self, runs_dir: str) -> None:
        if runs_dir != self.runs_dir:
            self.runs_dir = runs_dir
            self.refresh()

    def refresh(self) -> None:
        """Read the runs folder again, keeping the selected run selected."""
        selected = [r.path for r in self.selected_records()]
        self.records = list_runs(self.runs_dir)
        headers, rows = table_rows(self.records)
        self.table_model.clear()
        self.table_model.setHorizontalHeaderLabels(headers)
        for record, cells in zip(self.records, rows):
            sort_values = [record.name, record.status, record.method, record.recipe, record.data, record.backbone,
                           record.started or 0.0, record.train_seconds or 0.0, record.epochs or 0.0,
                           record.images_per_second or 0.0, _or_below(record.knn), _or_below(record.knn_init),
                           _or_below(record.probe), cells[-1]]
            items = []
            for text, value in zip(cells, sort_values):
                item = QStandardItem(text)
                item.setData(value, SORT_ROLE)
                items.append(item)
            items[0].setData(str(record.path), Qt.ItemDataRole.UserRole)
            items[0].setToolTip(str(record.path) + (f"\n{record.note}" if record.note else ""))
            if record.status in STATUS_COLOURS:
                items[1].setForeground(QBrush(QColor(STATUS_COLOURS[record.status])))
            if record.message:
                items[1].setToolTip(record.message)
            self.table_model.appendRow(items)
        self._compared = None  # read the compared runs again: a running one has logged more
        self._select(selected)
        self._fill_races()
        self._show_count()
        self._update_buttons()

    def selected_records(self) -> list[RunRecord]:
        """The selected runs, in the table's order."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        paths = [self.proxy.data(self.proxy.index(row, 0), Qt.ItemDataRole.UserRole) for row in rows]
        by_path = {str(r.path): r for r in self.records}
        return [by_path[path] for path in paths if path in by_path]

    def selected(self) -> RunRecord | None:
        """The selected run when exactly one is selected (the actions on one run take it)."""
        records = self.selected_records()
        return records[0] if len(records) == 1 else None

    def select_run(self, name: str) -> None:
        record = next((r for r in self.records if r.name == name), None)
        self._select([record.path] if record else [])

    def select_runs(self, names: list[str]) -> None:
        self._select([r.path for r in self.records if r.name in names])

    def _select(self, paths: list[Path]) -> None:
        self.table.clearSelection()
        wanted = {str(path) for path in paths}
        selection = QItemSelection()
        for row in range(self.proxy.rowCount()):
            if self.proxy.data(self.proxy.index(row, 0), Qt.ItemDataRole.UserRole) in wanted:
                selection.select(self.proxy.index(row, 0), self.proxy.index(row, self.proxy.columnCount() - 1))
        self.table.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect
                                           | QItemSelectionModel.SelectionFlag.Rows)

    def _filter_changed(self, text: str) -> None:
        self.proxy.setFilterFixedString(text.strip())
        self._show_count()

    def _show_count(self) -> None:
        shown, total = self.proxy.rowCount(), len(self.records)
        self.count.setText(f"{shown} of {total} runs" if shown != total else f"{total} runs")
        if not total:
            self.note.setText(f"no runs in {Path(self.runs_dir).expanduser()} yet: each training run is kept here")

    def _update_buttons(self, *_) -> None:
        record = self.selected()
        idle = record is not None and record.status != "running"
        for name in ("rename", "delete"):
            self.buttons[name].setEnabled(idle)
        for name in ("tags", "note"):
            self.buttons[name].setEnabled(record is not None)
        self.buttons["open"].setEnabled(idle)
        self.buttons["resume"].setEnabled(bool(record and record.resumable))
        chosen = self.selected_records()
        if record is not None:
            parts = [f"{record.name}: {record.status}", record.message, record.note]
            self.note.setText(" — ".join(p for p in parts if p))
        elif len(chosen) > 1:
            self.note.setText(f"{len(chosen)} runs selected: compared below")
        elif self.records:
            self.note.setText("")
        paths = [r.path for r in chosen]
        if self.race_folder is not None and not set(paths) <= set(self._race_runs()):
            self.race_folder = None  # the user chose runs of no race: no longer the race's comparison
            self.compare.set_race(None)
            self.races.setCurrentIndex(0)
        if paths != self._compared:
            self._compared = paths
            self.compare.set_runs(paths)
        self.buttons["race"].setEnabled(self.race_thread is None and self.race_blocked_by is None)
        self.buttons["race"].setToolTip(self.race_blocked_by or RACE_TIP)

    # -- actions --------------------------------------------------------------------------
    def _act(self, action) -> bool:
        try:
            action()
        except UserError as error:
            QMessageBox.warning(self, "Runs", str(error))
            return False
        return True

    def rename(self) -> None:
        record = self.selected()
        if record is None:
            return
        name, ok = QInputDialog.getText(self, "Rename run", "New name of the run's folder:", text=record.name)
        if ok and name.strip() and name.strip() != record.name:
            renamed = []
            if self._act(lambda: renamed.append(rename_run(record, name))):
                self.refresh()
                self.select_run(renamed[0].name)

    def edit_tags(self) -> None:
        record = self.selected()
        if record is None:
            return
        text, ok = QInputDialog.getText(self, "Tags", "Tags, separated by commas:", text=", ".join(record.tags))
        if ok and self._act(lambda: set_tags(record, [t for t in text.split(",") if t.strip()])):
            self.refresh()

    def edit_note(self) -> None:
        record = self.selected()
        if record is None:
            return
        text, ok = QInputDialog.getMultiLineText(self, "Note", f"A note on {record.name}:", record.note)
        if ok and self._act(lambda: set_note(record, text.strip())):
            self.refresh()

    def delete(self) -> None:
        record = self.selected()
        if record is None:
            return
        answer = QMessageBox.question(self, "Delete run", f"Move the run {record.name} to the trash?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        if record.status == "running":
            QMessageBox.warning(self, "Runs", f"{record.name} is running: stop it first")
            return
        if not QFile.moveToTrash(str(record.path)):
            permanently = QMessageBox.question(
                self, "Delete run", f"This system has no trash for {record.path}. Delete the run for good?")
            if permanently != QMessageBox.StandardButton.Yes or not self._act(lambda: delete_run(record)):
                return
        self.refresh()

    def open(self) -> None:
        record = self.selected()
        if record is not None and record.status != "running":
            self.open_requested.emit(str(record.path))

    def resume(self) -> None:
        record = self.selected()
        if record is not None and record.resumable:
            self.resume_requested.emit(str(record.path))


    # -- races ------------------------------------------------------------------------------
    def _fill_races(self) -> None:
        chosen = self.races.currentData()
        self.races.blockSignals(True)
        self.races.clear()
        self.races.addItem("–", None)
        for race in list_races(self.runs_dir):
            self.races.addItem(f"{race.name} ({race.status})", str(race.path))
        self.races.setCurrentIndex(max(self.races.findData(chosen), 0))
        self.races.blockSignals(False)
        self.races.setEnabled(self.races.count() > 1)

    def _race_chosen(self, index: int) -> None:
        folder = self.races.itemData(index)
        if folder is None:
            self.race_folder = None
            self.compare.set_race(None)
        else:
            self.show_race(folder)

    def _race_runs(self) -> list[Path]:
        race = read_race(self.race_folder) if self.race_folder is not None else None
        if race is None:
            return []
        names = {entry.run for entry in race.entries if entry.record is not None}
        return [r.path for r in self.records if r.name in names]

    def show_race(self, folder: str | Path) -> None:
        """Show the race in `folder`: its leaderboard, and its runs compared."""
        race = read_race(folder)
        if race is None:
            return
        self.race_folder = Path(folder)
        self.races.setCurrentIndex(max(self.races.findData(str(folder)), 0))
        self.compare.set_race(race)
        self._select(self._race_runs())

    def set_race_blocked(self, reason: str | None) -> None:
        if reason != self.race_blocked_by:
            self.race_blocked_by = reason
            self._update_buttons()

    def start_race(self) -> None:
        if self.race_thread is not None or self.race_blocked_by is not None:
            return
        dialog = RaceDialog(runs_dir=self.runs_dir, parent=self, **self.race_defaults())
        if dialog.exec() != QDialog.DialogCode.Accepted or dialog.runner is None:
            return
        self.run_race(dialog.runner)

    def run_race(self, runner) -> None:
        """Run a checked race (`ssl_engine.race.RaceRunner`) off the UI thread."""
        self.race_total = len(runner.configs)
        self.race_thread = RaceThread(runner, self)
        self.race_thread.finished.connect(self._race_thread_ended)
        self.race_status.setText(f"race of {self.race_total} runs: starting…")
        self.stop_race_button.show()
        self.stop_race_button.setEnabled(True)
        self._update_buttons()
        self.race_running.emit(True)
        self.race_thread.start()
        self.race_timer.start()

    def stop_race(self) -> None:
        if self.race_thread is not None:
            self.race_thread.control.stop()
            self.stop_race_button.setEnabled(False)
            self.race_status.setText(self.race_status.text() + " — stopping…")

    def _poll_race(self) -> None:
        if self.race_thread is None:
            return
        events, progress = self.race_thread.drain()
        for event in events:
            if isinstance(event, RaceStarted):
                self.refresh()
                self.show_race(event.folder)
            elif isinstance(event, RaceRunStarted):
                self.race_status.setText(f"run {event.index + 1} of {self.race_total}: {event.method}, "
                                         f"seed {event.seed}")
                self.refresh()
            elif isinstance(event, RaceRunEnded):
                self.refresh()
                if self.race_folder is not None:
                    self.show_race(self.race_folder)
            elif isinstance(event, RaceFinished):
                self.race_status.setText(f"race {'stopped' if event.stopped else 'finished'}: leaderboard in "
                                         f"{Path(event.folder) / 'leaderboard.md'}")
                self.refresh()
                self.show_race(event.folder)
            elif isinstance(event, RaceFailed):
                self.race_status.setText("race failed")
                QMessageBox.warning(self, "Race", event.message)
        if progress is not None and isinstance(progress.event, StepMetrics):
            step = progress.event
            total = step.total_steps or 0
            left = f", {format_duration(step.eta_seconds)} left" if step.eta_seconds > 0 else ""
            self.race_status.setText(f"run {progress.index + 1} of {self.race_total}: step {step.step}"
                                     f"{f'/{total}' if total else ''}{left}")

    def _race_thread_ended(self) -> None:
        self._poll_race()  # what it filed last
        self.race_timer.stop()
        self.race_thread.deleteLater()
        self.race_thread = None
        self.stop_race_button.hide()
        self._update_buttons()
        self.race_running.emit(False)


def _or_below(value: float | None) -> float:
    return -1.0 if value is None else value  # runs without the value sort below every measured one
