"""Screenshots of the real window for the README: the augmentation preview, training live, evaluation.

    xvfb-run -s "-screen 0 1920x1080x24" python -m app.screenshots resources/screenshots --size 1280x800
    xvfb-run -s "-screen 0 1920x1080x24" python -m app.screenshots resources/screenshots \
        --evaluate runs/RUN --folder path/to/images [--folder more/images]

Opens the window with the default experiment (SimCLR on the bundled shapes), saves the preview,
starts training, waits until the first epoch's embedding map and kNN are drawn, saves the
training views and the Diagnostics view, then stops the run (which saves its checkpoint) and
closes. A collapse demo: `--method simsiam --set method.stop_gradient=false`.

With --evaluate (a checkpoint file or run folder) and --folder, it opens the Evaluate tab on
them instead, compared with the random-init floor, and saves each sub-tab: the map (by label,
and as thumbnails), a point's neighbours, the near-duplicates, the label check and the accuracy of
both models.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QApplication

from ssl_engine.checkpoint import checkpoint_file
from ssl_engine.config import ExperimentConfig, parse_assignments
from ssl_engine.eval.embedded import same_path

from .main import make_application
from .main_window import MainWindow
from .settings import AppSettings


def wait_for(app: QApplication, condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the window did not reach the expected state in time")
        app.processEvents()
        time.sleep(0.01)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="1280x800")
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--epochs-shown", type=int, default=2, help="epochs trained before the training shot")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--evaluate", metavar="CHECKPOINT", help="shoot the Evaluate tab on this checkpoint or run")
    parser.add_argument("--folder", action="append", default=[], help="image folder for --evaluate (repeatable)")
    parser.add_argument("--duplicate-threshold", type=float, default=0.95, help="threshold of the duplicates shot")
    args = parser.parse_args(argv)
    if args.evaluate and not args.folder:
        parser.error("--evaluate needs at least one --folder")
    width, height = (int(v) for v in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)

    app = make_application(sys.argv[:1])
    work = Path(tempfile.mkdtemp(prefix="screenshots_"))
    window = MainWindow(AppSettings(work / "settings.ini"))
    if args.evaluate:
        return evaluate_shots(app, window, args, work)
    window.model.set_config(ExperimentConfig.for_method(args.method).with_values(
        [("train.runs_dir", str(work / "runs")), ("train.epochs", 20), *parse_assignments(args.set)]))
    window.resize(width, height)
    window.show()
    wait_for(app, lambda: window.start_blocked_by() is None, 60)
    for _ in range(20):
        app.processEvents()
    window.grab().save(str(args.out / f"preview-{args.size}.png"))

    window.start()
    wait_for(app, lambda: window.training.progress.knn_epoch >= args.epochs_shown, 600)
    time.sleep(1)
    for _ in range(20):
        app.processEvents()
    window.grab().save(str(args.out / f"training-{args.size}.png"))
    # the Diagnostics view beside the loss: rank, spread, bounds and any collapse alarm
    window.training.curves.setCurrentIndex(1)
    for _ in range(20):
        app.processEvents()
    window.grab().save(str(args.out / f"diagnostics-{args.size}.png"))
    window.training.curves.setCurrentIndex(0)
    # the method's own tabs, where it has them: prototype usage, masks, ViT attention
    for tab, name in ((1, "usage"), (2, "masks"), (3, "attention")):
        if window.training.method_views.isTabVisible(tab):
            window.training.method_views.setCurrentIndex(tab)
            for _ in range(20):
                app.processEvents()
            window.grab().save(str(args.out / f"{name}-{args.size}.png"))
    window.stop()
    wait_for(app, lambda: window.worker is None, 120)
    window.close()
    print(f"saved {args.out}/preview-{args.size}.png and {args.out}/training-{args.size}.png")
    return 0


def settle(app: QApplication, seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def tagged_shots(panel, shoot) -> None:
    """The map with a selection (the 30 points nearest the first on the map), then that selection
    tagged and the map coloured by tag, then filtered to the tag; the tag is removed afterwards."""
    map_tab = panel.map_tab
    xy = panel.session.projection.xy
    nearest = np.sort(np.argsort(((xy - xy[0]) ** 2).sum(axis=1))[:30])
    map_tab.map._set_selection(nearest)
    shoot("map-selection")
    map_tab.map_tags.tag_selection("screenshot")
    map_tab.colour_combo.setCurrentText("tag")
    shoot("map-tagged")
    map_tab.map_tags.show_only("screenshot")
    shoot("map-filtered")
    map_tab.map_tags.show_only(None)
    map_tab.map_tags.untag_selection("screenshot")
    map_tab.map.clear_selection()
    map_tab.colour_combo.setCurrentIndex(0)


def evaluate_shots(app: QApplication, window: MainWindow, args, work: Path) -> int:
    """The Evaluate tab's sub-tabs on one checkpoint and its folders, one PNG each."""
    os.environ.setdefault("SSL_EXPLORER_CACHE", str(work / "cache"))
    panel = window.evaluate
    session = panel.session
    window.resize(*(int(v) for v in args.size.split("x")))
    window.show()
    window.tabs.setCurrentWidget(panel)
    panel.open_checkpoint(args.evaluate)
    wait_for(app, lambda: not panel.busy(), 120)
    chosen = session.model_choice
    if chosen is None or not same_path(chosen.checkpoint, checkpoint_file(os.path.abspath(args.evaluate))):
        raise SystemExit(panel.last_error or f"cannot open {args.evaluate}")
    panel.set_folders(args.folder)
    wait_for(app, lambda: session.primary is not None and not panel.busy(), 1800)
    shots = []

    def shoot(name: str) -> None:
        settle(app)
        path = args.out / f"evaluate-{name}-{args.size}.png"
        window.grab().save(str(path))
        shots.append(path)

    panel.tabs.setCurrentIndex(0)
    panel.neighbours.show_neighbours_of(0)   # its neighbours are ringed on the map
    shoot("map")
    panel.map_tab.thumbnails_check.setChecked(True)
    shoot("map-thumbnails")
    panel.map_tab.thumbnails_check.setChecked(False)
    tagged_shots(panel, shoot)
    panel.tabs.setCurrentWidget(panel.neighbours)
    shoot("neighbours")
    panel.tabs.setCurrentWidget(panel.duplicates)
    panel.duplicates.set_threshold(args.duplicate_threshold)
    wait_for(app, lambda: session.duplicates is not None and not panel.duplicates.computing(), 600)
    shoot("duplicates")
    if session.primary.combined.has_labels:
        panel.tabs.setCurrentWidget(panel.label_check)
        wait_for(app, lambda: session.label_check is not None and not panel.label_check.computing(), 600)
        shoot("label-check")
    if panel.accuracy.has_labels():
        wait_for(app, lambda: session.compared is not None or not panel.embedding(), 1800)
        panel.tabs.setCurrentWidget(panel.accuracy)
        panel.accuracy.run()
        wait_for(app, lambda: not panel.accuracy.running(), 1800)
        shoot("accuracy")
    window.close()
    print("saved " + ", ".join(str(path) for path in shots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
