"""What watching costs: training speed with the window streaming, against the command line.

Runs one experiment alternately headless (`python main.py train --config`) and in the window
(offscreen, every live view on), starting and ending headless (`--rounds` window runs), and
prints each window run's images per second as a ratio to the mean of the headless runs on
either side of it, and the median ratio: the machine's own drift cancels out. While the window trains, a 10 ms QTimer
heartbeat measures how long the UI event loop stalls; its 50th, 99th percentile and maximum are
printed.

    python benchmarks/app_streaming.py                       # SimCLR on shapes, CPU
    python benchmarks/app_streaming.py --method vicreg --epochs 4 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer  # noqa: E402

from app.main import make_application  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from ssl_engine.config import ExperimentConfig  # noqa: E402

HEARTBEAT_MS = 10


def headless(config_path: Path) -> float:
    """Images per second of the command line on the same experiment file."""
    subprocess.run([sys.executable, str(ROOT / "main.py"), "train", "--config", str(config_path), "--quiet"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    runs = sorted(Path(ExperimentConfig.load(config_path).train.runs_dir).glob("*/summary.json"),
                  key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())["images_per_second"]


def in_window(config: ExperimentConfig, settings_path: Path) -> tuple[float, list[float]]:
    """Images per second in the window, and the event loop's stalls (ms) while it trained."""
    app = make_application([])  # as `python main.py` makes it
    window = MainWindow(AppSettings(settings_path))
    window.model.set_config(config)
    window.resize(1280, 800)
    window.show()
    while window.start_blocked_by() is not None:  # the data loads in the background
        app.processEvents()
        time.sleep(0.01)
    stalls: list[float] = []
    clock = QElapsedTimer()
    heartbeat = QTimer()
    heartbeat.setInterval(HEARTBEAT_MS)

    def beat():
        if window.worker is not None:
            stalls.append(max(clock.nsecsElapsed() / 1e6 - HEARTBEAT_MS, 0.0))
        clock.restart()

    heartbeat.timeout.connect(beat)
    clock.start()
    heartbeat.start()
    window.start()
    loop = QEventLoop()  # a real event loop, as the app runs, until the worker is done
    done = QTimer()
    done.timeout.connect(lambda: window.worker is None and loop.quit())
    done.start(100)
    loop.exec()
    heartbeat.stop()
    summary = json.loads((Path(window.last_run_dir) / "summary.json").read_text())
    window.close()
    return summary["images_per_second"], stalls


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2, help="window runs, each between two headless runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="app_streaming_"))
    config = ExperimentConfig.for_method(args.method).with_overrides([
        f"data.source={args.dataset}", f"backbone.name={args.backbone}", f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch_size}", f"train.device={args.device}", f"train.runs_dir={work / 'runs'}",
        "train.linear_probe=false", *args.set]).validate()
    config_path = work / "experiment.toml"
    config.save(config_path)

    headless_speeds = [headless(config_path)]
    window_speeds, stalls = [], []
    for round_number in range(args.rounds):
        speed, round_stalls = in_window(config, work / f"settings{round_number}.ini")
        window_speeds.append(speed)
        stalls += round_stalls
        headless_speeds.append(headless(config_path))
    ratios = [w / ((before + after) / 2) for w, before, after in
              zip(window_speeds, headless_speeds, headless_speeds[1:])]
    print(f"{args.method} on {args.dataset}, {args.backbone}, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.device}")
    print("headless img/s: " + ", ".join(f"{s:.1f}" for s in headless_speeds)
          + "; window img/s: " + ", ".join(f"{s:.1f}" for s in window_speeds))
    print("window / headless: " + ", ".join(f"{r:.3f}" for r in ratios)
          + f"; median {percentile(ratios, 50):.3f}")
    print(f"event-loop stall while training ({len(stalls)} heartbeats of {HEARTBEAT_MS} ms): "
          f"p50 {percentile(stalls, 50):.1f} ms, p99 {percentile(stalls, 99):.1f} ms, max {max(stalls):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
