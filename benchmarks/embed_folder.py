"""Embedding a folder of image files: images per second, peak memory, and the cache.

Writes `--count` shapes images at `--size` px, JPEG and PNG alternately, into class subfolders
(kept and reused on later runs), plus a folder of the first half of them (hard links). For the
half folder and then the full one, with a fresh cache each, it measures: the cold embedding
(images/s, and how far the process's resident memory rose above where it started, sampled
every 5 ms on a thread, and the ru_maxrss delta), the warm reopen (every row from the cache),
and re-embedding after one file changed. Streaming means the memory column should not grow
with the folder.

    python benchmarks/embed_folder.py                                 # 10,000 images, random-init small_cnn
    python benchmarks/embed_folder.py --count 2000 --device cpu
    python benchmarks/embed_folder.py --checkpoint runs/<run> --device cuda
    python benchmarks/embed_folder.py --backbone resnet18 --image-size 64
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from ssl_engine.data import generate_shapes  # noqa: E402
from ssl_engine.eval.folder_embedding import embed_folder  # noqa: E402
from ssl_engine.eval.model_source import open_model, random_init_model  # noqa: E402

WRITE_CHUNK = 500           # images generated in memory at a time while writing the folder
COMPLETE_MARKER = ".complete"  # hidden, so the folder reader ignores it


def write_folder(folder: Path, count: int, size: int) -> None:
    """`count` shapes images in class subfolders of `folder`, unless a complete one is there."""
    marker = folder / COMPLETE_MARKER
    if marker.is_file() and marker.read_text() == f"{count} {size}":
        return
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    for start in range(0, count, WRITE_CHUNK):
        images = generate_shapes(min(WRITE_CHUNK, count - start), size, seed=start)
        for i in range(len(images)):
            subfolder = folder / images.class_names[int(images.labels[i])]
            subfolder.mkdir(parents=True, exist_ok=True)
            number = start + i
            pixels = Image.fromarray(images.images[i].permute(1, 2, 0).numpy())
            pixels.save(subfolder / f"{number:06d}.{'jpg' if number % 2 else 'png'}", quality=90)
    marker.write_text(f"{count} {size}")
    print(f"wrote {count} images of {size} px to {folder} in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def half_folder(folder: Path, half: Path) -> None:
    """Hard links to the first half of `folder`'s images (copies where links are not possible)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    expected = f"{len(files) // 2} of {folder}"
    if (half / COMPLETE_MARKER).is_file() and (half / COMPLETE_MARKER).read_text() == expected:
        return
    shutil.rmtree(half, ignore_errors=True)
    for path in sorted(files, key=lambda p: p.name)[:len(files) // 2]:
        target = half / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    (half / COMPLETE_MARKER).write_text(expected)


def resident_bytes() -> int | None:
    """This process's resident set size now (Linux /proc), or None elsewhere."""
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


class PeakMemory:
    """The highest resident set size seen while the block ran, sampled on a thread."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes() or 0)
            time.sleep(self.interval)

    def __enter__(self):
        self.start = resident_bytes() or 0
        self.start_max = max_rss_bytes()
        self.peak = self.start
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.rise = self.peak - self.start
        self.max_rss_rise = max_rss_bytes() - self.start_max


def measure(model, folder: Path, args) -> dict:
    cache = tempfile.mkdtemp(prefix="embed-bench-cache-")
    try:
        options = dict(cache_dir=cache, batch_size=args.batch_size, device=args.device)
        with PeakMemory() as memory:
            started = time.perf_counter()
            result = embed_folder(model, str(folder), **options)
            cold = time.perf_counter() - started
        count = len(result.paths)
        started = time.perf_counter()
        warm_result = embed_folder(model, str(folder), **options)
        warm = time.perf_counter() - started
        assert warm_result.reused == count
        changed = Path(result.paths[count // 2])
        os.utime(changed, ns=(time.time_ns(), changed.stat().st_mtime_ns + 10**9))
        started = time.perf_counter()
        after_change = embed_folder(model, str(folder), **options)
        one_changed = time.perf_counter() - started
        assert after_change.reused == count - 1
        cache_bytes = sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file())
        return {"images": count, "cold_s": cold, "images_per_s": count / cold, "rss_rise": memory.rise,
                "max_rss_rise": memory.max_rss_rise, "warm_s": warm, "one_changed_s": one_changed,
                "cache_bytes": cache_bytes}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="images in the full folder (default 10000)")
    parser.add_argument("--size", type=int, default=128, help="side of the image files in px (default 128)")
    parser.add_argument("--folder", help="where the images are written (default: a folder under the temp dir)")
    parser.add_argument("--checkpoint", help="a checkpoint or run folder (default: a random-init backbone)")
    parser.add_argument("--backbone", default="small_cnn", help="random-init backbone (default small_cnn)")
    parser.add_argument("--image-size", type=int, default=32, help="model input size for random init (default 32)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    folder = Path(args.folder or Path(tempfile.gettempdir()) / f"ssl_explorer_embed_bench_{args.count}_{args.size}")
    write_folder(folder, args.count, args.size)
    half = folder.with_name(folder.name + "_half")
    half_folder(folder, half)
    model = open_model(args.checkpoint) if args.checkpoint else \
        random_init_model(backbone=args.backbone, image_size=args.image_size)

    from ssl_engine.devices import resolve_device

    print(f"model: {model.name} ({model.feature_dim} features, {model.image_size} px input); device "
          f"{resolve_device(args.device)}; {os.cpu_count()} CPU cores; files {args.size} px, half JPEG half PNG")
    header = (f"{'images':>7} {'cold s':>7} {'img/s':>7} {'RSS rise MiB':>13} {'maxrss rise MiB':>16} "
              f"{'warm reopen s':>14} {'1 changed s':>12} {'cache MiB':>10}")
    print(header)
    print("-" * len(header))
    mib = 1 << 20
    for path in (half, folder):
        row = measure(model, path, args)
        print(f"{row['images']:>7} {row['cold_s']:>7.1f} {row['images_per_s']:>7.0f} {row['rss_rise'] / mib:>13.0f} "
              f"{row['max_rss_rise'] / mib:>16.0f} {row['warm_s']:>14.3f} {row['one_changed_s']:>12.3f} "
              f"{row['cache_bytes'] / mib:>10.0f}")


if __name__ == "__main__":
    main()
