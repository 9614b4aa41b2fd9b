"""Does each method learn? kNN top-1 after a time-boxed training run, against its floors.

For each method: the kNN top-1 (test split, cosine, k=20) of raw pixels, of the same backbone
at random initialisation (same seed), and of the backbone after training for at most
`--minutes` of training time; plus the trained backbone's linear probe. The number of epochs is
chosen from a short calibration run so that training fits the budget.

    python benchmarks/knn_vs_baselines.py --dataset shapes --minutes 3 --device cpu
    python benchmarks/knn_vs_baselines.py --dataset digits --minutes 3 --methods simclr,byol
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_engine.config import ExperimentConfig  # noqa: E402
from ssl_engine.data.image_set import DataSplits  # noqa: E402
from ssl_engine.eval.evaluate import evaluate_pixels  # noqa: E402
from ssl_engine.methods import METHODS  # noqa: E402
from ssl_engine.train import Trainer  # noqa: E402
from ssl_engine.train.trainer import load_data_for  # noqa: E402

# A few minutes on a CPU is a few hundred steps, where the papers train for 10^5: each method
# keeps its paper recipe except for what these settings change, which are the usual CIFAR-sized
# choices of the reproductions (solo-learn's configs) for runs that short.
SHORT_RUN = {
    # narrower projectors than the papers' 8192 (for ResNet-50 on ImageNet), so that the time
    # goes to the backbone
    "barlow_twins": ["method.projection_dim=1024", "train.batch_size=128"],
    "vicreg": ["method.expander_dim=2048"],
    "moco_v2": ["method.queue_size=4096"],  # MoCo's CIFAR setting: below the data set's size
    # no negatives: more, smaller steps, and a target that follows the online network faster
    # than ImageNet's 0.996 over a few hundred steps
    "byol": ["train.batch_size=64", "optim.lr=1.0", "method.base_momentum=0.99"],
    # MoCo v3's AdamW recipe is the ViT one; with a CNN the paper trains with LARS
    "moco_v3": ["optim.name=lars", "optim.lr=0.3", "optim.weight_decay=1e-6"],
    # the paper freezes the prototypes for 313 iterations, one ImageNet epoch at batch 4096
    "swav": ["method.freeze_prototypes_iters=31"],
    "msn": ["backbone.name=vit_tiny"],  # ViT only: it masks patch tokens
}
CALIBRATION_STEPS = 8


def configure(method: str, args, runs_dir: str, extra=()) -> ExperimentConfig:
    return ExperimentConfig.for_method(method).with_overrides([
        f"data.source={args.dataset}", f"data.image_size={args.image_size}", f"backbone.name={args.backbone}",
        f"train.batch_size={args.batch_size}", f"train.device={args.device}", f"train.runs_dir={runs_dir}",
        "train.log_every_steps=100000", f"train.seed={args.seed}",
        *SHORT_RUN.get(method, []), *args.set, *extra]).validate()


def images_per_second(method: str, args, data: DataSplits, runs_dir: str) -> float:
    """Speed of a short run on a slice of the data, to size the real run."""
    count = min(len(data.train), CALIBRATION_STEPS * args.batch_size)
    small = DataSplits(train=data.train.subset(list(range(count))), test=None, skipped=[], name=data.name)
    config = configure(method, args, runs_dir, ["train.epochs=1", "train.linear_probe=false"])
    return Trainer(config, data=small).run()["images_per_second"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--methods", default=",".join(sorted(METHODS)))
    parser.add_argument("--minutes", type=float, default=3.0, help="training-time budget per method")
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    data = load_data_for(configure("simclr", args, "unused"))
    pixels = evaluate_pixels(data, seed=args.seed)
    print(f"{args.dataset}: {len(data.train)} train / {len(data.test)} test images; raw pixels: "
          f"kNN {pixels['knn_top1']:.3f}, linear probe {pixels['linear_probe_top1']:.3f}", flush=True)
    print(f"{'method':<14}{'epochs':>7}{'train s':>9}{'pixels':>9}{'random':>9}{'trained':>9}{'probe':>9}", flush=True)
    for method in args.methods.split(","):
        with tempfile.TemporaryDirectory() as runs:
            speed = images_per_second(method, args, data, runs)
            # 0.9: the calibration slice runs a little faster than the whole set (epoch-end work)
            epochs = max(1, int(0.9 * args.minutes * 60 * speed / len(data.train)))
            started = time.perf_counter()
            summary = Trainer(configure(method, args, runs, [f"train.epochs={epochs}"]), data=data).run()
        print(f"{method:<14}{epochs:>7}{summary['train_seconds']:>9.0f}{pixels['knn_top1']:>9.3f}"
              f"{summary['knn_top1_init']:>9.3f}{summary['knn_top1']:>9.3f}{summary['linear_probe_top1']:>9.3f}"
              f"   (wall {time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
