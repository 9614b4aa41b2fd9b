"""What reopening a finished run costs: the time from its folder to every live view drawn.

Trains (unless --run names one) a run of --epochs epochs on the bundled shapes with every live
view on, as the window asks for them (the run folder records them once an epoch), then times,
offscreen: reading the folder back (`replay_run`), drawing every view in the Training tab
(`show_run`, then a paint), and moving the map slider to another epoch. Prints seconds, and the
size of the run's recorded probes.

    python benchmarks/reopen_run.py                    # 100 epochs of SimCLR on shapes
    python benchmarks/reopen_run.py --run runs/RUN
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtWidgets import QApplication  # noqa: E402

from app.widgets.training_panel import TrainingPanel  # noqa: E402
from app.worker import UI_RATES  # noqa: E402
from ssl_engine.config import ExperimentConfig  # noqa: E402
from ssl_engine.run_replay import replay_run  # noqa: E402
from ssl_engine.train import Trainer  # noqa: E402


def train(epochs: int, folder: Path) -> Path:
    config = ExperimentConfig.for_method("simclr", 32, "quick").with_overrides([
        "data.source=shapes", "data.shapes_count=400", "backbone.name=small_cnn", f"train.epochs={epochs}",
        "train.batch_size=64", "train.device=cpu", f"train.runs_dir={folder}", "train.eval_subset=256",
        "train.linear_probe=false", "train.minutes=0", "train.log_every_steps=1", "method.hidden_dim=64",
        "method.projection_dim=32"]).validate()
    trainer = Trainer(config)
    trainer.subscribe(lambda event: None, UI_RATES)
    trainer.run()
    return trainer.run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a run folder to reopen (default: train one)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(args.run) if args.run else train(args.epochs, Path(scratch))
        recorded = sum(f.stat().st_size for f in (run / "probes").rglob("*") if f.is_file())
        reads, draws, slides = [], [], []
        panel = TrainingPanel()
        panel.resize(1200, 800)
        panel.show()
        for _ in range(args.repeats):
            tick = time.perf_counter()
            replay = replay_run(run)
            read = time.perf_counter()
            panel.show_run(replay)
            panel.repaint()
            app.processEvents()
            drawn = time.perf_counter()
            panel.map_epochs.setValue(0)
            panel.repaint()
            app.processEvents()
            reads.append(read - tick)
            draws.append(drawn - read)
            slides.append(time.perf_counter() - drawn)
        maps = len(replay.recorded.get("map", []))
        print(f"run {run.name}: {len(replay.metrics)} logged steps, {maps} maps, recorded probes "
              f"{recorded / 1e6:.1f} MB")
        print(f"median of {args.repeats}: read {statistics.median(reads):.3f} s, every view drawn "
              f"{statistics.median(draws):.3f} s, total {statistics.median(reads) + statistics.median(draws):.3f} s; "
              f"slider to another epoch's map {statistics.median(slides):.3f} s")


if __name__ == "__main__":
    main()
