"""The Runs tab: every run under the runs folder in a sortable, filterable table (the same
table as `python main.py runs`), with open (the run's views rebuilt in the Training tab), rename,
tags, a note, delete (to the system trash, or for good after a confirmation) and resume for runs
that were stopped, failed or interrupted.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QFile, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QInputDialog, QLabel, QLineEdit,
                               QMessageBox, QPushButton, QTableView, QVBoxLayout, QWidget)

from ssl_engine.errors import UserError
from ssl_engine.run_store import RunRecord, delete_run, list_runs, rename_run, set_note, set_tags, table_rows

SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # numbers sort as numbers, dates as dates
STATUS_COLOURS = {"running": "#2c7fb8", "interrupted": "#d95f02", "failed": "#d9534f"}


class RunsPanel(QWidget):
    """Observes the runs folder; asks the window to resume a run through `resume_requested`."""

    resume_requested = Signal(str)  # the run folder
    open_requested = Signal(str)    # the run folder, to show its views

    def __init__(self, runs_dir: str = "runs", parent=None):
        super().__init__(parent)
        self.runs_dir = runs_dir
        self.records: list[RunRecord] = []
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
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
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
                ("resume", "Resume", self.resume, "train the selected run on from its last checkpoint")):
            button = self.buttons[name] = QPushButton(text)
            button.setObjectName(f"runs.{name}")
            button.setToolTip(tip)
            button.clicked.connect(slot)
            top.addWidget(button)
        self.note = QLabel()
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        self.refresh()

    # -- the table ------------------------------------------------------------------------
    def set_runs_dir(self, runs_dir: str) -> None:
        if runs_dir != self.runs_dir:
            self.runs_dir = runs_dir
            self.refresh()

    def refresh(self) -> None:
        """Read the runs folder again, keeping the selected run selected."""
        selected = self.selected()
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
        self._select(selected.path if selected else None)
        self._show_count()
        self._update_buttons()

    def selected(self) -> RunRecord | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        path = self.proxy.data(self.proxy.index(rows[0].row(), 0), Qt.ItemDataRole.UserRole)
        return next((r for r in self.records if str(r.path) == path), None)

    def select_run(self, name: str) -> None:
        record = next((r for r in self.records if r.name == name), None)
        self._select(record.path if record else None)

    def _select(self, path: Path | None) -> None:
        self.table.clearSelection()
        if path is None:
            return
        for row in range(self.proxy.rowCount()):
            if self.proxy.data(self.proxy.index(row, 0), Qt.ItemDataRole.UserRole) == str(path):
                self.table.selectRow(row)
                return

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
        if record is not None:
            parts = [f"{record.name}: {record.status}", record.message, record.note]
            self.note.setText(" — ".join(p for p in parts if p))
        elif self.records:
            self.note.setText("")

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


def _or_below(value: float | None) -> float:
    return -1.0 if value is None else value  # runs without the value sort below every measured one
