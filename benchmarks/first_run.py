"""A new user's first run: the window with fresh settings, Start, and the wait until it ends.

Opens the real MainWindow (offscreen unless a display is set) with settings of its own, so it
starts on the first experiment a new user sees; waits for the data and the expected duration
beside Start; presses Start; and measures the wall-clock time until the run has finished (its
live views, evaluations and checkpoint included). Prints the expected and the real duration,
the epochs, the kNN top-1 and the same network's at random initialisation.

    python benchmarks/first_run.py
    python benchmarks/first_run.py --method byol    # another method's quick run, as a user picks it
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QCoreApplication  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def wait_for(condition, seconds: float) -> bool:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        QCoreApplication.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="", help="pick this method first (default: the window's own first)")
    parser.add_argument("--limit", type=float, default=900.0, help="give up after this many seconds")
    args = parser.parse_args(argv)

    app = QApplication.instance() or QApplication([])
    from app.main_window import MainWindow
    from app.settings import AppSettings

    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)  # the runs folder of a fresh set-up is relative: keep it out of the repo
        window = MainWindow(AppSettings(Path(scratch) / "settings.ini"))
        window.resize(1280, 800)
        window.show()
        if args.method:
            picker = window.setup.method
            picker.setCurrentIndex(picker.findData(args.method))
        config = window.model.config
        print(f"first experiment: {config.method.name}, recipe {config.method.recipe}, {config.data.source}, "
              f"{config.backbone.name}, batch {config.train.batch_size}, "
              f"{config.train.minutes:g} minutes' budget" if config.train.minutes else f"{config.train.epochs} epochs",
              flush=True)
        opened = time.perf_counter()
        if not wait_for(lambda: window.estimate.text.startswith("expected: about"), 120):
            print(f"no expected duration after 120 s: {window.estimate.text!r} {window.estimate.tooltip!r}")
            return 1
        print(f"{window.estimate.text} ({window.estimate.tooltip}), shown {time.perf_counter() - opened:.1f} s "
              f"after the window opened", flush=True)
        started = time.perf_counter()
        window.start_action.trigger()
        if not wait_for(lambda: window.worker is None, args.limit):
            print(f"the run had not ended after {args.limit:.0f} s")
            window.stop()
            wait_for(lambda: window.worker is None, 120)
            return 1
        seconds = time.perf_counter() - started
        summary = json.loads((Path(window.last_run_dir) / "summary.json").read_text())
        print(f"Start to finished: {seconds:.0f} s; {summary['epochs']:.1f} epochs, {summary['steps']} steps, "
              f"{summary['train_seconds']:.0f} s of training at {summary['images_per_second']:.0f} img/s; "
              f"kNN top-1 {summary['knn_top1']:.3f} against {summary['knn_top1_init']:.3f} at random init, "
              f"linear probe {summary.get('linear_probe_top1') or 0:.3f}", flush=True)
        print(f"status bar: {window.statusBar().currentMessage()}")
        window.close()
        app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
