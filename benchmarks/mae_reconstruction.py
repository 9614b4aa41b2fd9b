"""Does MAE learn to reconstruct? Its loss on held-out images before and after a run.

Trains MAE on the training split, then compares the reconstruction loss (normalised-pixel MSE on
the hidden patches, under fixed seeded masks) of held-out test images for the network at random
initialisation (the same seed, so the same starting weights) and after training; also kNN and
linear-probe top-1 of the trained encoder.

    python benchmarks/mae_reconstruction.py --dataset shapes --epochs 3 --device cpu
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from ssl_engine.augment.ops import normalize  # noqa: E402
from ssl_engine.config import ExperimentConfig  # noqa: E402
from ssl_engine.train import EventRates, Trainer  # noqa: E402
from ssl_engine.train.events import RunStarted  # noqa: E402
from ssl_engine.data.for_config import load_data_for  # noqa: E402


def held_out_loss(trainer: Trainer, images_uint8: torch.Tensor) -> float:
    """The loss of the trainer's MAE on `images_uint8`, normalised as the trainer normalises."""
    images = normalize(images_uint8.to(trainer.device).float() / 255.0, trainer.mean, trainer.std)
    return trainer.method.held_out_loss(images)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--held-out", type=int, default=256, help="test images the loss is measured on")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as runs:
        config = ExperimentConfig.for_method("mae").with_overrides([
            f"data.source={args.dataset}", f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}",
            f"train.device={args.device}", f"train.runs_dir={runs}", "train.log_every_steps=100000",
            *args.set]).validate()
        data = load_data_for(config)
        held_out = data.test.images[:args.held_out]
        trainer = Trainer(config, data=data)
        before = []
        # measured when the run starts: the network as built, before its first step
        trainer.subscribe(lambda event: before.append(held_out_loss(trainer, held_out))
                          if isinstance(event, RunStarted) else None, EventRates())
        started = time.perf_counter()
        summary = trainer.run()
        before, after = before[0], held_out_loss(trainer, held_out)
    print(f"MAE on {args.dataset}, {config.backbone.name} ({config.backbone.patch_size} px patches), "
          f"{args.epochs} epochs in {summary['train_seconds']:.0f} s (wall {time.perf_counter() - started:.0f} s)")
    print(f"held-out reconstruction loss ({len(held_out)} test images): start {before:.4f}, end {after:.4f}, "
          f"ratio {after / before:.3f}")
    print(f"kNN top-1 {summary.get('knn_top1_init', float('nan')):.3f} at init -> {summary.get('knn_top1', float('nan')):.3f}; "
          f"linear probe {summary.get('linear_probe_top1', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
