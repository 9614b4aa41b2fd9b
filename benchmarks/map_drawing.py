"""What the evaluation's embedding map costs to draw: 10,000 points by default, offscreen.

For dots coloured by label and for thumbnails, it times `set_points` + `set_colouring` + the
first paint, then frames of panning (the view moved by 2% of its width, 50 times) and of
zooming (3% in, then back out), each frame forced to paint at once with `repaint()`; and the
hover lookup (the point under the cursor) and a hover that changes the preview. Prints a table
of milliseconds: the median frame and the 90th percentile.

The thumbnails are the bundled shapes set drawn at 32 px and enlarged to 64 px (the size the
embedding stores), the positions ten clusters as a t-SNE gives them; `--fast` uses random
colours instead of shapes.

    python benchmarks/map_drawing.py
    python benchmarks/map_drawing.py --points 100000 --fast
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PySide6.QtCore import QPointF  # noqa: E402

from app.main import make_application  # noqa: E402
from app.widgets.embedding_map import EmbeddingMap  # noqa: E402
from ssl_engine.data.shapes import SHAPE_NAMES, generate_shapes  # noqa: E402

GROUPS = len(SHAPE_NAMES)


def test_points(count: int, fast: bool, seed: int = 0):
    """Positions in ten clusters, uint8 (count, 64, 64, 3) thumbnails, labels, file paths."""
    rng = np.random.default_rng(seed)
    if fast:
        labels = rng.integers(0, GROUPS, count)
        colours = rng.integers(0, 256, (count, 1, 1, 3), dtype=np.uint8)
        thumbnails = np.broadcast_to(colours, (count, 64, 64, 3)).copy()
    else:
        shapes = generate_shapes(count, image_size=32, seed=seed)
        labels = shapes.labels.numpy()
        thumbnails = shapes.images.permute(0, 2, 3, 1).numpy().repeat(2, axis=1).repeat(2, axis=2)
    xy = rng.normal(size=(GROUPS, 2))[labels] * 6 + rng.normal(size=(count, 2))
    # Files that do not exist: the hover preview falls back to the thumbnail, as for a moved file.
    paths = [f"/nonexistent/{SHAPE_NAMES[label]}/image_{i:07d}.png" for i, label in enumerate(labels)]
    return xy, thumbnails, labels, paths


def milliseconds(times: list[float]) -> tuple[float, float]:
    """Median and 90th percentile of `times` (seconds), in milliseconds."""
    values = np.array(times) * 1000
    return float(np.median(values)), float(np.percentile(values, 90))


def timed_frames(view: EmbeddingMap, move, frames: int) -> list[float]:
    """Seconds per frame: `move(frame)` changes the view, then the map paints at once."""
    viewport = view.plot_widget.viewport()
    times = []
    for frame in range(frames):
        start = time.perf_counter()
        move(frame)
        viewport.repaint()
        times.append(time.perf_counter() - start)
    return times


def measure(app, xy, thumbnails, labels, paths, thumbnails_shown: bool, frames: int) -> dict[str, tuple[float, float]]:
    view = EmbeddingMap()
    view.resize(1280, 800)
    view.show()
    app.processEvents()
    viewport = view.plot_widget.viewport()
    start = time.perf_counter()
    view.set_points(xy, thumbnails, paths)
    view.set_colouring(labels, list(SHAPE_NAMES), "label")
    view.set_thumbnails_shown(thumbnails_shown)
    app.processEvents()  # the layout settles and the view fits the points
    viewport.repaint()
    first_paint = time.perf_counter() - start
    view_box = view.view_box
    width = view_box.viewRect().width()
    pan = timed_frames(view, lambda frame: view_box.translateBy(x=0.02 * width * (1 if frame < frames // 2 else -1)),
                       frames)
    zoom = timed_frames(view, lambda frame: view_box.scaleBy((0.97, 0.97) if frame < frames // 2 else (1 / 0.97,) * 2),
                        frames)
    row = {"set_points + first paint": (first_paint * 1000, first_paint * 1000),
           "pan frame": milliseconds(pan), "zoom frame": milliseconds(zoom)}
    if not thumbnails_shown:
        rng = np.random.default_rng(1)
        targets = [view_box.mapViewToScene(QPointF(*xy[i])) for i in rng.integers(0, len(xy), 1000)]
        lookups = []
        for target in targets:
            start = time.perf_counter()
            view._point_at(target)
            lookups.append(time.perf_counter() - start)
        hovers = []
        for target in targets[:200]:
            start = time.perf_counter()
            view._on_mouse_moved(target)  # as the scene's sigMouseMoved calls it: lookup + preview + move
            hovers.append(time.perf_counter() - start)
        row["hover lookup"] = milliseconds(lookups)
        row["hover with a new preview"] = milliseconds(hovers)
    else:
        view.fit()
        viewport.repaint()
        print(f"thumbnails drawn with the whole map in view: {len(view.thumbnail_layer.drawn)}")
    view.close()
    view.deleteLater()
    app.processEvents()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--fast", action="store_true", help="random colours as thumbnails, no shapes to draw")
    args = parser.parse_args()
    app = make_application([])
    start = time.perf_counter()
    xy, thumbnails, labels, paths = test_points(args.points, args.fast)
    print(f"{args.points} points, {'random colours' if args.fast else 'shapes'} as thumbnails "
          f"(made in {time.perf_counter() - start:.1f} s), {app.platformName()} platform, 1280 x 800 window")
    rows = {"dots": measure(app, xy, thumbnails, labels, paths, False, args.frames),
            "thumbnails": measure(app, xy, thumbnails, labels, paths, True, args.frames)}
    print(f"{'':28s}{'median ms':>12s}{'p90 ms':>10s}")
    for mode, row in rows.items():
        print(mode)
        for name, (median, p90) in row.items():
            print(f"  {name:26s}{median:12.2f}{p90:10.2f}")


if __name__ == "__main__":
    main()
