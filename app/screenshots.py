"""Screenshots of the real window for the README: the augmentation preview, and training live.

    xvfb-run -s "-screen 0 1920x1080x24" python -m app.screenshots resources/screenshots --size 1280x800

Opens the window with the default experiment (SimCLR on the bundled shapes), saves the preview,
starts training, waits until the first epoch's embedding map and kNN are drawn, saves the
training views, then stops the run (which saves its checkpoint) and closes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

from ssl_engine.config import ExperimentConfig

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
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)

    app = make_application(sys.argv[:1])
    work = Path(tempfile.mkdtemp(prefix="screenshots_"))
    window = MainWindow(AppSettings(work / "settings.ini"))
    window.model.set_config(ExperimentConfig.for_method(args.method).with_overrides(
        [f"train.runs_dir={work / 'runs'}", "train.epochs=20", *args.set]))
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


if __name__ == "__main__":
    sys.exit(main())
