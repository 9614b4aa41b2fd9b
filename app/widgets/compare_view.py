"""Runs side by side (the Runs tab's lower half): their curves overlaid, against the step, the
epoch or the training time; their configs with the settings that differ highlighted; their last
embedding maps of the same images, turned to line up; and, for a race of methods, its
leaderboard. Everything is read from the run folders (`ssl_engine.run_compare`,
`ssl_engine.leaderboard`); maps are read only when their page is shown.
"""

from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QHBoxLayout, QLabel, QSlider, QTableWidget,
                               QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from ssl_engine.errors import UserError
from ssl_engine.leaderboard import HEADERS as LEADERBOARD_HEADERS
from ssl_engine.leaderboard import leaderboard_rows, plan_line, row_cells
from ssl_engine.run_compare import AXES, RunCurves, compare_maps, config_rows, curve_names, read_config_table, read_curves

from .embedding_map import group_colour
from .loss_plot import MAX_SMOOTHING, display_name, smooth_ema
from .theme import legend_brush

# one colour per run, told apart in print and by the colour-blind (Okabe and Ito's palette)
RUN_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#f0e442", "#000000")
DIFFERENCE_BACKGROUND = QColor(255, 236, 153)
MAP_DOT_SIZE = 5
MAPS_PER_ROW = 4
FEW_POINTS = 30  # a per-step curve of this many points or fewer also shows its points


def run_colour(index: int) -> str:
    return RUN_COLOURS[index % len(RUN_COLOURS)]


class CompareView(QWidget):
    """`set_runs(folders)` shows those runs side by side; fewer than two show a hint."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.runs: list[RunCurves] = []
        self._maps_for: list[Path] | None = None  # the runs the Maps page shows
        self.race = None  # the race (run_store.RaceRecord) whose leaderboard is shown, if any

        self.hint = QLabel("Select two or more runs (Ctrl- or Shift-click) to compare their curves, configs and maps.")
        self.hint.setWordWrap(True)
        self.pages = QTabWidget()
        self.pages.setObjectName("compare.pages")
        self.pages.addTab(self._curves_page(), "Curves")
        self.pages.addTab(self._configs_page(), "Configs")
        self.maps_page = self._maps_page()
        self.pages.addTab(self.maps_page, "Maps")
        self.leaderboard_page = self._leaderboard_page()
        self.pages.currentChanged.connect(self._page_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.hint)
        layout.addWidget(self.pages, 1)
        self.set_runs([])

    # -- pages -------------------------------------------------------------------------------
    def _curves_page(self) -> QWidget:
        page = QWidget()
        self.curve_choice = QComboBox()
        self.curve_choice.setObjectName("compare.curve")
        self.curve_choice.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.curve_choice.currentIndexChanged.connect(self._draw_curves)
        self.axis_choice = QComboBox()
        self.axis_choice.setObjectName("compare.axis")
        for axis, label in AXES.items():
            self.axis_choice.addItem(label, axis)
        self.axis_choice.currentIndexChanged.connect(self._draw_curves)
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, round(MAX_SMOOTHING * 100))
        self.smoothing.setValue(60)
        self.smoothing.setMaximumWidth(160)
        self.smoothing.setToolTip("TensorBoard smoothing of per-step curves (an exponential moving average)")
        self.smoothing.valueChanged.connect(self._draw_curves)
        controls = QHBoxLayout()
        for label, widget in (("curve", self.curve_choice), ("against", self.axis_choice),
                              ("smoothing", self.smoothing)):
            controls.addWidget(QLabel(label))
            controls.addWidget(widget)
        controls.addStretch(1)
        plot_widget = pg.PlotWidget()
        self.plot = plot_widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.legend = self.plot.addLegend(brush=legend_brush(), offset=(-10, 10))
        layout = QVBoxLayout(page)
        layout.addLayout(controls)
        layout.addWidget(plot_widget, 1)
        return page

    def _configs_page(self) -> QWidget:
        page = QWidget()
        self.only_differences = QCheckBox("only the settings that differ")
        self.only_differences.setObjectName("compare.only_differences")
        self.only_differences.setChecked(True)
        self.only_differences.toggled.connect(self._show_config_rows)
        self.config_summary = QLabel()
        self.config_table = QTableWidget()
        self.config_table.setObjectName("compare.configs")
        self.config_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.config_table.verticalHeader().hide()
        top = QHBoxLayout()
        top.addWidget(self.only_differences)
        top.addWidget(self.config_summary, 1)
        layout = QVBoxLayout(page)
        layout.addLayout(top)
        layout.addWidget(self.config_table, 1)
        return page

    def _leaderboard_page(self) -> QWidget:
        page = QWidget()
        self.race_title = QLabel()
        self.race_title.setWordWrap(True)
        self.leaderboard = QTableWidget()
        self.leaderboard.setObjectName("compare.leaderboard")
        self.leaderboard.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.leaderboard.verticalHeader().hide()
        layout = QVBoxLayout(page)
        layout.addWidget(self.race_title)
        layout.addWidget(self.leaderboard, 1)
        return page

    def set_race(self, race) -> None:
        """Show `race`'s leaderboard as the first page (None: no race). Its runs are set apart,
        with `set_runs`."""
        had_race = self.race is not None
        self.race = race
        index = self.pages.indexOf(self.leaderboard_page)
        if race is None:
            if index >= 0:
                self.pages.removeTab(index)
            self._show_pages()
            return
        if index < 0:
            self.pages.insertTab(0, self.leaderboard_page, "Leaderboard")
        if not had_race:
            self.pages.setCurrentWidget(self.leaderboard_page)
        rows = leaderboard_rows(race)
        self.race_title.setText(f"<b>{race.name}</b> ({race.status}): {plan_line(race.plan)}. Gain: kNN minus "
                                f"the random-init floor of the same network.")
        self.leaderboard.setColumnCount(len(LEADERBOARD_HEADERS))
        self.leaderboard.setHorizontalHeaderLabels(LEADERBOARD_HEADERS)
        self.leaderboard.setRowCount(len(rows))
        colour_of = {run.name: run_colour(i) for i, run in enumerate(self.runs)}
        for row_index, row in enumerate(rows):
            for column, text in enumerate(row_cells(row)):
                item = QTableWidgetItem(text)
                if column == 0 and row.run in colour_of:
                    item.setForeground(QBrush(QColor(colour_of[row.run])))
                if row.message:
                    item.setToolTip(row.message)
                self.leaderboard.setItem(row_index, column, item)
        self.leaderboard.resizeColumnsToContents()
        self._show_pages()

    def _maps_page(self) -> QWidget:
        page = QWidget()
        self.maps_note = QLabel()
        self.maps_note.setWordWrap(True)
        self.maps_legend = QLabel()  # the classes' colours, the same in every map
        self.maps_legend.setWordWrap(True)
        self.maps_grid = QGridLayout()
        self.map_plots: list[pg.PlotItem] = []
        layout = QVBoxLayout(page)
        layout.addWidget(self.maps_note)
        layout.addWidget(self.maps_legend)
        layout.addLayout(self.maps_grid, 1)
        return page

    # -- the runs ----------------------------------------------------------------------------
    def set_runs(self, folders: list[str | Path]) -> None:
        folders = [Path(f) for f in folders]
        comparing = len(folders) >= 2 or (self.race is not None and bool(folders))
        self.runs = [read_curves(folder) for folder in folders] if comparing else []
        self._show_pages()
        chosen = self.curve_choice.currentData()
        self.curve_choice.blockSignals(True)
        self.curve_choice.clear()
        for name in curve_names(self.runs):
            self.curve_choice.addItem(display_name(name), name)
        index = self.curve_choice.findData(chosen)
        self.curve_choice.setCurrentIndex(max(index, 0))
        self.curve_choice.blockSignals(False)
        self._draw_curves()
        self._fill_configs(folders if comparing else [])
        if self.race is not None:
            self.set_race(self.race)  # the runs' colours in the leaderboard
        self._maps_for = None
        self._page_changed(self.pages.currentIndex())

    def _show_pages(self) -> None:
        shown = bool(self.runs) or self.race is not None
        self.hint.setVisible(not shown)
        self.pages.setVisible(shown)

    def _draw_curves(self, *_) -> None:
        self.plot.clear()
        self.legend.clear()
        name, axis = self.curve_choice.currentData(), self.axis_choice.currentData()
        self.plot.setLabel("bottom", AXES[axis])
        accuracy = bool(name) and name.endswith("top1")  # drawn in %, as the Runs table shows it
        scale = 100.0 if accuracy else 1.0
        self.plot.setLabel("left", (display_name(name) + (" (%)" if accuracy else "")) if name else "")
        if not name:
            return
        weight = self.smoothing.value() / 100.0
        for index, run in enumerate(self.runs):
            series = run.series(name)
            colour = run_colour(index)
            if series is None:
                continue
            per_epoch = name in run.per_epoch
            values = (series.values if per_epoch else smooth_ema(series.values, weight)) * scale
            dots = per_epoch or len(values) <= FEW_POINTS  # a line of one point shows nothing
            self.plot.plot(series.x(axis), values, pen=pg.mkPen(colour, width=2), name=run.name,
                           symbol="o" if dots else None, symbolSize=6, symbolBrush=colour, symbolPen=None)
            if name in run.floors:  # the random-init floor, dashed in the run's colour
                floor = pg.InfiniteLine(pos=run.floors[name] * scale, angle=0,
                                        pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine))
                floor.setToolTip(f"{run.name}: random-init floor {run.floors[name]:.3f}")
                self.plot.addItem(floor)

    def _fill_configs(self, folders: list[Path]) -> None:
        try:
            self.config_rows = config_rows([read_config_table(f) for f in folders]) if folders else []
        except UserError as error:
            self.config_rows = []
            self.config_summary.setText(str(error))
        self.config_table.setColumnCount(1 + len(folders))
        self.config_table.setHorizontalHeaderLabels(["setting", *(f.name for f in folders)])
        for index in range(len(folders)):
            self.config_table.horizontalHeaderItem(1 + index).setForeground(QBrush(QColor(run_colour(index))))
        self._show_config_rows()

    def _show_config_rows(self, *_) -> None:
        rows = [r for r in self.config_rows if r.differs or not self.only_differences.isChecked()]
        differing = sum(r.differs for r in self.config_rows)
        if self.config_rows:
            self.config_summary.setText(f"{differing} of {len(self.config_rows)} settings differ")
        self.config_table.setRowCount(len(rows))
        bold = QFont()
        bold.setBold(True)
        for row, config_row in enumerate(rows):
            for column, text in enumerate((config_row.address, *config_row.values)):
                item = QTableWidgetItem(text)
                if config_row.differs:
                    item.setBackground(QBrush(DIFFERENCE_BACKGROUND))
                    item.setForeground(QBrush(QColor("black")))
                    if column == 0:
                        item.setFont(bold)
                self.config_table.setItem(row, column, item)
        self.config_table.resizeColumnsToContents()

    def _page_changed(self, index: int) -> None:
        if self.pages.widget(index) is self.maps_page:
            folders = [run.run_dir for run in self.runs]
            if folders and folders != self._maps_for:
                self._draw_maps(folders)

    def _draw_maps(self, folders: list[Path]) -> None:
        self._maps_for = folders
        for plot_widget in [self.maps_grid.itemAt(i).widget() for i in range(self.maps_grid.count())]:
            plot_widget.setParent(None)
            plot_widget.deleteLater()
        self.map_plots = []
        try:
            comparison = compare_maps(folders)
        except UserError as error:
            self.maps_note.setText(str(error))
            return
        notes = []
        if not comparison.panels:
            notes.append("none of these runs recorded a map: runs of the window record one each epoch, "
                         "runs of the command line only when a listener asks")
        elif comparison.recorded:
            notes.append("each run's map of its last epoch, of the same evaluation images, coloured by class")
        else:
            notes.append("these runs recorded maps of different images (another data set, seed or subset): each "
                         "map shows the first run's images embedded by that run's last checkpoint, coloured by class")
        if comparison.missing and comparison.panels:
            notes.append(f"no map for {', '.join(comparison.missing)}: no checkpoint to embed with")
        if len(comparison.panels) > 1:
            notes.append("each map is turned (a rotation, perhaps a reflection) to line up with the first")
        self.maps_note.setText("; ".join(notes))
        if comparison.panels:
            panel = comparison.panels[0]
            groups = max(len(panel.class_names), int(panel.labels.max(initial=-1)) + 1)
            self.maps_legend.setText("  ".join(f"<span style='color:{group_colour(i, groups).name()}'>●</span> {name}"
                                               for i, name in enumerate(panel.class_names)))
        else:
            self.maps_legend.setText("")
        index_of = {run.run_dir: i for i, run in enumerate(self.runs)}
        for position, panel in enumerate(comparison.panels):
            plot_widget = pg.PlotWidget()
            plot = plot_widget.getPlotItem()
            colour = run_colour(index_of.get(panel.run_dir, position))
            when = "last checkpoint" if panel.epoch is None else f"epoch {panel.epoch}"
            plot.setTitle(f"<span style='color:{colour}'>{panel.run_dir.name}</span> · {when}")
            plot.hideAxis("left")
            plot.hideAxis("bottom")
            plot.setAspectLocked(True)
            groups = max(len(panel.class_names), int(panel.labels.max(initial=-1)) + 1)
            brushes = [pg.mkBrush(group_colour(int(label), groups)) for label in panel.labels]
            plot.addItem(pg.ScatterPlotItem(x=panel.points[:, 0], y=panel.points[:, 1], size=MAP_DOT_SIZE,
                                            pen=None, brush=brushes))
            self.maps_grid.addWidget(plot_widget, position // MAPS_PER_ROW, position % MAPS_PER_ROW)
            self.map_plots.append(plot)

