"""Does each method learn? kNN top-1 after a time-boxed training run, against its floors.

For each method: the kNN top-1 (test split, cosine, k=20) of raw pixels, of the same backbone
at random initialisation (same seed), and of the backbone after training in its recipe
(`--recipe`, quick by default: `ssl_engine.recipes` and each method's `quick_recipe` give every
setting and its reason) for `--minutes` of training time (`train.minutes`: the schedules span
the budget); plus the trained backbone's linear probe and the training images per second.

    python benchmarks/knn_vs_baselines.py --dataset shapes --device cpu
    python benchmarks/knn_vs_baselines.py --dataset digits --minutes 3 --methods simclr,byol
    python benchmarks/knn_vs_baselines.py --methods simmim --minutes 5 --seeds 0,1,2,3
    python benchmarks/knn_vs_baselines.py --recipe small --minutes 10 --methods simclr

A kNN top-1 on a few thousand test images moves by about a point from the seed alone: with
`--seeds` each method runs once per seed (its random network too), and a last line gives the
mean gain over the random network with its standard error across seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_engine.config import ExperimentConfig  # noqa: E402
from ssl_engine.eval.evaluate import evaluate_pixels  # noqa: E402
from ssl_engine.methods import METHODS  # noqa: E402
from ssl_engine.recipes import RECIPES  # noqa: E402
from ssl_engine.train import Trainer  # noqa: E402
from ssl_engine.data.for_config import load_data_for  # noqa: E402


def configure(method: str, args, runs_dir: str) -> ExperimentConfig:
    """Method `method` in recipe `args.recipe`, with the benchmark's data, device and budget;
    the backbone and the batch are the recipe's unless given."""
    config = ExperimentConfig.for_method(method, args.image_size, args.recipe)
    overrides = [f"data.source={args.dataset}", f"train.device={args.device}", f"train.runs_dir={runs_dir}",
                 "train.log_every_steps=100000", f"train.seed={args.seed}"]
    if args.minutes:
        overrides.append(f"train.minutes={args.minutes}")
    if args.backbone:
        overrides.append(f"backbone.name={args.backbone}")
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    return config.with_overrides([*overrides, *args.set]).validate()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--methods", default=",".join(sorted(METHODS)))
    parser.add_argument("--recipe", choices=tuple(RECIPES), default="quick")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="training-time budget per method (0: the recipe's; quick's is 2 minutes)")
    parser.add_argument("--backbone", default="", help="instead of the recipe's backbone")
    parser.add_argument("--batch-size", type=int, default=0, help="instead of the recipe's batch size")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default="", help="comma-separated seeds, one run each (instead of --seed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    # the data alone: --set may name another method's settings, which SimCLR's config lacks
    data = load_data_for(ExperimentConfig.for_method("simclr").with_overrides(
        [f"data.source={args.dataset}", f"data.image_size={args.image_size}",
         *[a for a in args.set if a.startswith("data.")]]))
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [args.seed]
    pixels = evaluate_pixels(data, seed=seeds[0])
    print(f"{args.dataset}: {len(data.train)} train / {len(data.test)} test images; raw pixels: "
          f"kNN {pixels['knn_top1']:.3f}, linear probe {pixels['linear_probe_top1']:.3f}; recipe {args.recipe}",
          flush=True)
    print(f"{'method':<14}{'seed':>5}{'epochs':>7}{'train s':>9}{'img/s':>7}{'pixels':>9}{'random':>9}{'trained':>9}"
          f"{'probe':>9}", flush=True)
    for method in args.methods.split(","):
        gains = []
        for seed in seeds:
            run_args = argparse.Namespace(**{**vars(args), "seed": seed})
            with tempfile.TemporaryDirectory() as runs:
                started = time.perf_counter()
                summary = Trainer(configure(method, run_args, runs), data=data).run()
            gains.append(summary["knn_top1"] - summary["knn_top1_init"])
            print(f"{method:<14}{seed:>5}{summary['epochs']:>7.1f}{summary['train_seconds']:>9.0f}"
                  f"{summary['images_per_second']:>7.0f}{pixels['knn_top1']:>9.3f}"
                  f"{summary['knn_top1_init']:>9.3f}{summary['knn_top1']:>9.3f}{summary['linear_probe_top1']:>9.3f}"
                  f"   (wall {time.perf_counter() - started:.0f} s)", flush=True)
        if len(gains) > 1:
            print(gain_summary(method, gains), flush=True)
    return 0


def gain_summary(method: str, gains: list[float]) -> str:
    """One line: the mean kNN gain over the random network, its standard error across seeds
    (sample standard deviation / sqrt(seeds)) and at how many seeds the trained network is above."""
    mean, error = statistics.mean(gains), statistics.stdev(gains) / len(gains) ** 0.5
    above = sum(gain > 0 for gain in gains)
    return (f"{method}: kNN gain over the random network {mean:+.3f} +- {error:.3f} (mean +- standard error, "
            f"{len(gains)} seeds; above it at {above} of {len(gains)})")


if __name__ == "__main__":
    sys.exit(main())
