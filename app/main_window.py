"""The explorer window: set up an experiment on the left, preview, training and evaluation on the right.

It owns the experiment model, loads the data off the UI thread (the preview and the Trainer
share the loaded set), starts one TrainingThread at a time and drains its mailbox on a timer.
The Evaluate tab lists the runs of the experiment's runs folder; a run that finishes or stops
becomes its chosen model. Closing the window during training asks the worker to stop, waits for
its checkpoint, then closes: nothing is lost; an embedding in progress is cancelled and waited for.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QTimer, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QLabel, QMainWindow, QMessageBox, QScrollArea, QSplitter,
                               QTabWidget, QToolBar)

from ssl_engine.addresses import section_of
from ssl_engine.backbone_export import export_backbone
from ssl_engine.config import ExperimentConfig
from ssl_engine.data.for_config import load_data_for
from ssl_engine.errors import ConfigError, UserError
from ssl_engine.run_replay import replay_run
from ssl_engine.run_store import resume_config

from .background import BackgroundCall
from .experiment_model import ExperimentModel
from .file_dialogs import open_file, save_file
from .run_estimate import RunEstimate
from .settings import AppSettings
from .wheel_guard import install_wheel_guard
from .widgets.evaluate_panel import EvaluatePanel
from .widgets.param_form import field_label, in_words
from .widgets.preview_panel import PreviewPanel
from .widgets.problem_summary import Problem, ProblemSummary
from .widgets.runs_panel import RunsPanel
from .widgets.setup_panel import SetupPanel
from .widgets.training_panel import TrainingPanel
from .window_geometry import remember_geometry
from .worker import TrainingThread

DRAIN_INTERVAL_MS = 100  # 10 redraws a second at most: smooth to the eye, cheap for training
DATA_DEBOUNCE_MS = 300  # wait for the user to stop typing before reloading the data
EVALUATED_FOLDERS_KEY = "evaluated_folders"  # the Evaluate tab's folders, one per line
# what "Save model" writes: the run's checkpoint as it is
CHECKPOINT_HOLDS = ("the whole training state (backbone, the method's heads and teacher, optimiser, config), "
                    "which the Evaluate tab and `main.py eval --checkpoint` open")
# what "Export backbone" writes, as `main.py export` does
BACKBONE_EXPORT_HOLDS = "the trained backbone alone, as a plain state dict for your own PyTorch code"


def megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "size unknown"


def data_key(config_table: dict, seed) -> tuple:
    """What decides which images are loaded: a change here means loading again."""
    data = config_table["data"]
    return (data.get("source"), data.get("image_size"), data.get("test_fraction"), data.get("shapes_count"),
            data.get("root"), seed)


class MainWindow(QMainWindow):
    def __init__(self, settings: AppSettings | None = None, parent=None):
        super().__init__(parent)
        install_wheel_guard(QApplication.instance())  # before any editor is shown
        self.settings = settings or AppSettings()
        self.setWindowTitle("SSL Explorer")
        self.model = ExperimentModel(self.settings.experiment())  # None: the first experiment
        self.data = None                  # the loaded DataSplits for `self.data_key`
        self.data_key: tuple | None = None
        self.data_error: str | None = None
        self.loader: BackgroundCall | None = None
        self.worker: TrainingThread | None = None
        self.last_run_dir: str | None = None
        self.close_when_stopped = False
        self.run_config: ExperimentConfig | None = None  # what the current or last run trains

        self.setup = SetupPanel(self.model, last_folder=self.settings.text("last_folder"))
        self.setup.folder_chosen.connect(self._remember_folder)
        scroll = self.setup_scroll = QScrollArea()
        scroll.setWidget(self.setup)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(330)
        self.preview = PreviewPanel(self.model)
        self.training = TrainingPanel()
        self.evaluate = EvaluatePanel(runs_dir=self.model.table["train"].get("runs_dir") or "runs")
        remembered = self.settings.text(EVALUATED_FOLDERS_KEY).splitlines()
        self.evaluate.set_folders([folder for folder in remembered if Path(folder).is_dir()])
        self.evaluate.folders_changed.connect(self._remember_evaluated_folders)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.preview, "Augmentations")
        self.tabs.addTab(self.training, "Training")
        self.tabs.addTab(self.evaluate, "Evaluate")
        self.runs = RunsPanel(runs_dir=self.model.table["train"].get("runs_dir") or "runs")
        self.runs.resume_requested.connect(self.resume_run)
        self.runs.open_requested.connect(self.open_run)
        self.runs.race_running.connect(self._race_running)
        self.runs.race_defaults = lambda: {"data_source": self.model.table["data"].get("source") or "shapes",
                                           "device": self.model.table["train"].get("device") or "auto"}
        self.tabs.addTab(self.runs, "Runs")
        splitter = QSplitter()
        splitter.addWidget(scroll)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 900])
        self.setCentralWidget(splitter)
        self.estimate = RunEstimate(self)
        self._build_toolbar()
        self.estimate.changed.connect(self._show_estimate)

        self.drain_timer = QTimer(self)
        self.drain_timer.setInterval(DRAIN_INTERVAL_MS)
        self.drain_timer.timeout.connect(self.drain)
        self.data_timer = QTimer(self)
        self.data_timer.setSingleShot(True)
        self.data_timer.setInterval(DATA_DEBOUNCE_MS)
        self.data_timer.timeout.connect(self.load_data)
        self.model.changed.connect(self._model_changed)
        self._model_changed()
        self.load_data()
        QTimer.singleShot(0, self._offer_interrupted_runs)

    # -- building ---------------------------------------------------------------------
    def _build_toolbar(self) -> None:
        bar = QToolBar("Run")
        bar.setObjectName("run_toolbar")
        bar.setMovable(False)
        self.addToolBar(bar)

        def action(text: str, slot, tip: str, shortcut=None) -> QAction:
            item = QAction(text, self)
            item.setToolTip(tip)
            item.triggered.connect(slot)
            if shortcut is not None:
                item.setShortcut(shortcut)
            bar.addAction(item)
            return item

        self.open_action = action("Open…", self.open_experiment, "open an experiment (.toml, as the command line uses)",
                                  QKeySequence.StandardKey.Open)
        self.save_action = action("Save…", self.save_experiment, "save this experiment as .toml",
                                  QKeySequence.StandardKey.Save)
        bar.addSeparator()
        self.start_action = action("Start", self.start, "train this experiment")
        self.pause_action = action("Pause", self.toggle_pause, "pause or resume training")
        self.stop_action = action("Stop", self.stop, "stop training (a checkpoint is saved)")
        self.save_model_action = action("Save model…", self.save_model, "copy the finished run's checkpoint to a file")
        self.export_backbone_action = action("Export backbone…", self.export_backbone,
                                             f"write {BACKBONE_EXPORT_HOLDS}")
        for name in ("start", "pause", "stop", "save_model", "export_backbone"):
            bar.widgetForAction(getattr(self, f"{name}_action")).setObjectName(f"{name}_button")
        bar.addSeparator()
        self.estimate_label = QLabel()
        self.estimate_label.setObjectName("run_estimate")
        self.estimate_label.setContentsMargins(8, 0, 8, 0)
        self.estimate_item = bar.addWidget(self.estimate_label)
        self.problem_summary = ProblemSummary()
        self.problem_item = bar.addWidget(self.problem_summary)  # a toolbar shows its widgets through these
        self._update_actions()

    # -- the experiment and its data --------------------------------------------------
    @Slot()
    def _model_changed(self) -> None:
        table = self.model.table
        key = data_key(table, table["train"].get("seed"))
        if key != self.data_key:
            self.data_timer.start()
        runs_dir = table["train"].get("runs_dir")
        if isinstance(runs_dir, str) and runs_dir:
            self.evaluate.set_runs_dir(runs_dir)
            self.runs.set_runs_dir(runs_dir)
        self._update_actions()
        self._update_estimate()

    @Slot()
    def load_data(self) -> None:
        """Load the data the experiment names, off the UI thread (once a load is running, the
        next one waits for it)."""
        if self.loader is not None:
            self.data_timer.start()
            return
        table = self.model.table
        key = data_key(table, table["train"].get("seed"))
        if key == self.data_key:
            self._update_actions()
            self._update_estimate()
            return
        try:
            config = ExperimentConfig.from_dict({"data": table["data"], "train": {"seed": table["train"]["seed"]}})
        except ConfigError:
            return  # the field is marked; load once it is fixed
        self.data, self.data_key, self.data_error = None, key, None
        self.preview.set_data(None)
        self.preview.grid.clear("loading the data set…")
        self.statusBar().showMessage(f"loading {config.data.source}…")
        self.loader = BackgroundCall(load_data_for, config)
        self.loader.finished.connect(self._data_loaded)
        self.loader.start()
        self._update_actions()

    @Slot()
    def _data_loaded(self) -> None:
        loader, self.loader = self.loader, None
        loader.wait()
        if loader.error:
            self.data_error = loader.error
            self.preview.grid.clear(f"cannot load the data: {loader.error}")
            self.statusBar().showMessage(f"cannot load the data: {loader.error}")
        else:
            self.data = loader.result
            self.preview.set_data(self.data.train, seed=0)
            skipped = f", {len(self.data.skipped)} unreadable files skipped" if self.data.skipped else ""
            test = f", {len(self.data.test):,} test" if self.data.test is not None else ""
            self.statusBar().showMessage(f"{self.data.name}: {len(self.data.train):,} training images{test}{skipped}")
        self._update_actions()
        self._update_estimate()

    def _update_estimate(self) -> None:
        """The expected duration follows the set-up and its data (none while either is not ready)."""
        if self.worker is not None:
            return
        ready = self.model.config is not None and self.data is not None and self.loader is None \
            and not self.data_timer.isActive() and data_key(self.model.table, self.model.table["train"].get("seed")) \
            == self.data_key
        self.estimate.update(self.model.config if ready else None, self.data if ready else None)

    @Slot()
    def _show_estimate(self) -> None:
        self.estimate_label.setText(self.estimate.text)
        self.estimate_label.setToolTip(self.estimate.tooltip)

    def _remember_folder(self, folder: str) -> None:
        self.settings.set_text("last_folder", folder)

    @Slot(object)
    def _remember_evaluated_folders(self, folders: list[str]) -> None:
        self.settings.set_text(EVALUATED_FOLDERS_KEY, "\n".join(folders))

    def start_blocked_by(self) -> str | None:
        """Why Start is disabled, or None when it is enabled."""
        if self.worker is not None:
            return "a run is in progress"
        if self.runs.race_thread is not None:
            return "a race of methods is running (Runs tab): stop it or let it end first"
        if self.model.config is None:
            return "fix the marked fields: " + "; ".join(self._problem(p).message for p in self.model.problems[:3])
        if self.data_error:
            return f"the data cannot be loaded: {self.data_error}"
        if self.data is None or self.loader is not None or self.data_timer.isActive():
            return "loading the data…"
        return None

    def _update_actions(self) -> None:
        running = self.worker is not None
        blocked = self.start_blocked_by()
        self.start_action.setEnabled(blocked is None)
        self.start_action.setToolTip(blocked or "train this experiment")
        self.pause_action.setEnabled(running and not self.close_when_stopped)
        self.stop_action.setEnabled(running and not self.close_when_stopped)
        self.save_model_action.setEnabled(not running and self.last_run_dir is not None)
        self.export_backbone_action.setEnabled(not running and self.last_run_dir is not None)
        checkpoint = Path(self.last_run_dir or "") / "checkpoints" / "last.pt"
        self.save_model_action.setToolTip(f"copy the run's checkpoint to a file: {CHECKPOINT_HOLDS}, "
                                          f"{megabytes(checkpoint)}" if self.last_run_dir and checkpoint.is_file()
                                          else "copy the finished run's checkpoint to a file")
        self.open_action.setEnabled(not running)
        self.setup.setEnabled(not running)
        self.runs.set_race_blocked("a run of this window is training: a race would share its cores" if running else None)
        self.problem_summary.show_problems([self._problem(problem) for problem in self.model.problems])
        self.problem_item.setVisible(bool(self.model.problems))
        self.estimate_item.setVisible(not self.model.problems)

    def _problem(self, problem) -> Problem:
        """One of the model's problems (an engine `Problem`), named as the form names its field,
        with the way there."""
        field = self.setup.field_for(problem.address)
        if field is not None:
            editor, label = field
            return Problem(label, in_words(problem, label), lambda: self._go_to(editor))
        if section_of(problem.address) == "augment":  # a view's setting: the Augmentations tab holds it
            return Problem(field_label(problem.address), str(problem), lambda: self.tabs.setCurrentWidget(self.preview))
        return Problem(field_label(problem.address), str(problem))

    def _go_to(self, editor) -> None:
        self.setup_scroll.ensureWidgetVisible(editor, 20, 40)
        editor.setFocus()

    # -- files ------------------------------------------------------------------------
    def open_experiment(self, path: str | None = None) -> None:
        if not path:
            path = open_file(self, "Open experiment", "Experiments (*.toml)", self.settings.text("last_config"))
        if not path:
            return
        try:
            self.model.load(path)
        except ConfigError as error:
            QMessageBox.warning(self, "Cannot open the experiment", "\n".join(error.lines))
            return
        self.settings.set_text("last_config", path)
        self.statusBar().showMessage(f"opened {path}")

    def save_experiment(self, path: str | None = None) -> None:
        if self.model.config is None:
            QMessageBox.warning(self, "Cannot save", "fix the marked fields first:\n" +
                                "\n".join(str(problem) for problem in self.model.problems))
            return
        if not path:
            last = self.settings.text("last_config")
            path = save_file(self, "Save experiment", Path(last).name if last else "experiment.toml",
                             "Experiments (*.toml)", last)
        if not path:
            return
        self.model.save(path)
        self.settings.set_text("last_config", path)
        self.statusBar().showMessage(f"saved {path}")

    def save_model(self, path: str | None = None) -> None:
        checkpoint = Path(self.last_run_dir or "") / "checkpoints" / "last.pt"
        if not checkpoint.is_file():
            QMessageBox.warning(self, "No model to save", f"{checkpoint} does not exist")
            return
        if not path:
            path = save_file(self, "Save model", "model.pt", "Checkpoints (*.pt)", self.last_run_dir)
        if not path:
            return
        try:
            shutil.copyfile(checkpoint, path)
        except OSError as error:
            QMessageBox.warning(self, "Cannot save the model", str(error))
            return
        self.statusBar().showMessage(f"model saved to {path}: {CHECKPOINT_HOLDS}, {megabytes(checkpoint)}")

    def export_backbone(self, path: str | None = None) -> None:
        checkpoint = Path(self.last_run_dir or "") / "checkpoints" / "last.pt"
        if not checkpoint.is_file():
            QMessageBox.warning(self, "No backbone to export", f"{checkpoint} does not exist")
            return
        if not path:
            path = save_file(self, "Export backbone", "backbone.pt", "PyTorch weights (*.pt)", self.last_run_dir)
        if not path:
            return
        try:
            exported = export_backbone(checkpoint, path)
        except UserError as error:
            QMessageBox.warning(self, "Cannot export the backbone", str(error))
            return
        self.statusBar().showMessage(f"backbone exported to {path} ({exported.megabytes}): loads into "
                                     f"{exported.loads_into()}; its \"snippet\" entry is the code that loads it")

    # -- training ---------------------------------------------------------------------
    def start(self) -> None:
        if self.start_blocked_by() is not None:
            return
        self._train(self.model.config, self.data)

    def resume_run(self, run_dir: str) -> None:
        """Train the run in `run_dir` on from its last checkpoint, with its own config."""
        if self.worker is not None:
            QMessageBox.warning(self, "Cannot resume", "a run is training: stop it first")
            return
        try:
            config = resume_config(run_dir).validate()
        except UserError as error:
            QMessageBox.warning(self, "Cannot resume", str(error))
            return
        self._train(config, None, resume=run_dir)

    def open_run(self, run_dir: str) -> None:
        """Show a run's curves and views, rebuilt from its folder, in the Training tab."""
        if self.worker is not None:
            QMessageBox.warning(self, "Cannot open the run", "a run is training: its views are on show")
            return
        try:
            replay = replay_run(run_dir)
        except UserError as error:
            QMessageBox.warning(self, "Cannot open the run", str(error))
            return
        self.training.show_run(replay)
        self.last_run_dir = run_dir
        self.tabs.setCurrentWidget(self.training)
        self.statusBar().showMessage(f"run {Path(run_dir).name}: {len(replay.metrics)} logged steps, "
                                     f"{len(replay.recorded.get('map', []))} maps")
        self._update_actions()

    def _offer_interrupted_runs(self) -> None:
        """Runs whose process ended without finishing (killed, or the machine stopped): offer
        the newest for resuming; the Runs tab lists them all."""
        interrupted = [r for r in self.runs.records if r.status == "interrupted" and r.resumable]
        if not interrupted or self.worker is not None:
            return
        newest = interrupted[0]
        more = f" ({len(interrupted) - 1} more in the Runs tab)" if len(interrupted) > 1 else ""
        epochs = f" at epoch {newest.epochs:.3g}" if newest.epochs is not None else ""
        box = QMessageBox(QMessageBox.Icon.Question, "Interrupted run",
                          f"The run {newest.name} ({newest.method} on {newest.data}) was interrupted{epochs}{more}. "
                          f"Resume it from its last checkpoint?", parent=self)
        box.setObjectName("interrupted_runs")
        resume = box.addButton("Resume", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
        box.buttonClicked.connect(lambda button: self.resume_run(str(newest.path)) if button is resume else None)
        box.open()  # not exec(): the window stays live behind it
        self.interrupted_box = box

    def _train(self, config: ExperimentConfig, data, resume: str | None = None) -> None:
        self.training.reset()
        self.estimate.pause()
        self.run_config = config
        self.worker = TrainingThread(config, data, resume=resume, parent=self)
        self.worker.finished.connect(self._worker_finished)
        self.worker.start()
        self.drain_timer.start()
        self.tabs.setCurrentWidget(self.training)
        self.pause_action.setText("Pause")
        self.statusBar().showMessage("training…")
        self._update_actions()

    def toggle_pause(self) -> None:
        if self.worker is None:
            return
        control = self.worker.control
        if control.paused:
            control.resume()
            self.pause_action.setText("Pause")
            self.statusBar().showMessage("training…")
        else:
            control.pause()
            self.pause_action.setText("Resume")
            self.statusBar().showMessage("paused")

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.control.stop()
            self.statusBar().showMessage("stopping: saving a checkpoint…")

    @Slot()
    def drain(self) -> None:
        if self.worker is None:
            return
        delivery = self.worker.mailbox.drain()
        if delivery.empty():
            return
        self.training.apply(delivery)
        if delivery.started is not None:
            self.last_run_dir = delivery.started.run_dir
            self.runs.refresh()
        if delivery.failed is not None:
            self._show_failure(delivery.failed.message, delivery.failed.run_dir)
        if delivery.finished is not None:
            summary = delivery.finished.summary
            knn, floor = summary.get("knn_top1"), summary.get("knn_top1_init")
            result = f", kNN top-1 {knn:.1%}" if knn is not None else ""
            if knn is not None and floor is not None:
                result += f" (random init {floor:.1%}{'; below it' if knn < floor else ''})"
            verb = "stopped" if delivery.finished.stopped_early else "finished"
            self.statusBar().showMessage(f"{verb} after {summary.get('epochs', 0):.2f} epochs{result}; "
                                         f"run folder {delivery.finished.run_dir}")
            self.evaluate.run_finished(delivery.finished.run_dir)
            self.runs.refresh()
            self.estimate.run_finished(self.run_config, summary, self.data)

    def _show_failure(self, message: str, run_dir: str | None) -> None:
        where = f"\n\nThe run's log is in {run_dir}/run.log." if run_dir else ""
        self.statusBar().showMessage(f"training failed: {message}")
        box = QMessageBox(QMessageBox.Icon.Warning, "Training stopped", message + where, parent=self)
        box.setObjectName("failure_message")
        box.open()  # not exec(): the window stays live behind it

    @Slot()
    def _worker_finished(self) -> None:
        self.worker.wait()
        self.drain()  # what arrived after the last tick
        worker, self.worker = self.worker, None
        self.drain_timer.stop()
        self.training.progress.stopped()
        worker.deleteLater()
        self._update_actions()
        self.estimate.resume()
        self._update_estimate()
        if self.close_when_stopped:
            self.close()

    @Slot(bool)
    def _race_running(self, running: bool) -> None:
        self._update_actions()
        if not running and self.close_when_stopped and self.worker is None:
            self.close()

    def closeEvent(self, event) -> None:
        if self.runs.race_thread is not None:  # the race's run keeps its checkpoint; then close
            self.close_when_stopped = True
            self.runs.stop_race()
            self.statusBar().showMessage("stopping the race, saving its run's checkpoint before closing…")
            event.ignore()
            return
        if self.worker is not None:
            # stop, let the worker write its checkpoint, and close when it has finished
            self.close_when_stopped = True
            self.worker.control.stop()
            self.statusBar().showMessage("saving a checkpoint before closing…")
            self._update_actions()
            event.ignore()
            return
        if self.loader is not None:
            self.loader.wait()
        self.evaluate.shutdown()
        self.estimate.shutdown()
        self.settings.set_experiment(self.model.table)
        remember_geometry(self, self.settings)
        super().closeEvent(event)
