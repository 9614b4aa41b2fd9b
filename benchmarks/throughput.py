"""Training throughput against the compute bound of the backbone.

For one experiment config, prints images per second of
  - the whole training step as the Trainer runs it (data on the device, batched views,
    the method's heads and loss, backward, optimiser, EMA, logging), measured by a real run;
  - the backbone's forward and backward alone, on ready tensors of the same shapes
    (one pass per view, as the methods call it);
  - the augmentation alone;
and the ratio whole-step / backbone-alone: the share of the compute bound the pipeline reaches.

    python benchmarks/throughput.py --method simclr --dataset shapes --device cpu --steps 30
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from ssl_engine.cli import add_experiment_arguments, experiment_config  # noqa: E402
from ssl_engine.errors import UserError  # noqa: E402
from ssl_engine.train import Trainer  # noqa: E402
from ssl_engine.data.for_config import load_data_for  # noqa: E402
from ssl_engine.devices import resolve_device, resolve_precision, synchronise  # noqa: E402
from ssl_engine.models.build import build_backbone_for  # noqa: E402
from ssl_engine.augment.views import ViewAugmenter  # noqa: E402
from ssl_engine.methods.base import features_by_resolution  # noqa: E402


def backbone_alone(config, device, steps: int, warmup: int = 3) -> float:
    """Images per second of the backbone's forward + backward on ready tensors: each view at its
    own size (multi-crop's local views are smaller), one pass per run of same-sized views as the
    multi-crop methods make them."""
    torch.manual_seed(0)
    backbone = build_backbone_for(config).to(device).train()
    batch = config.train.batch_size
    inputs = [torch.randn(batch, 3, size, size, device=device)
              for size in (view.output_size or config.data.image_size for view in config.augment.views)]
    dtype = resolve_precision(config.train.precision, device)
    autocast = torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext()
    for i in range(warmup + steps):
        if i == warmup:
            synchronise(device)
            start = time.perf_counter()
        backbone.zero_grad(set_to_none=True)
        with autocast:
            loss = sum(features.float().square().mean() for features in features_by_resolution(backbone, inputs))
        loss.backward()
    synchronise(device)
    return steps * batch / (time.perf_counter() - start)


def augmentation_alone(config, images, device, steps: int) -> float:
    augmenter = ViewAugmenter(config.augment.views, config.data.image_size)
    batch = images[:config.train.batch_size].to(device)
    augmenter(batch, torch.Generator().manual_seed(0))
    synchronise(device)
    start = time.perf_counter()
    for step in range(steps):
        augmenter(batch, torch.Generator().manual_seed(step))
    synchronise(device)
    return steps * len(batch) / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_experiment_arguments(parser)
    parser.add_argument("--steps", type=int, default=30, help="training steps to time (at least)")
    args = parser.parse_args(argv)
    try:
        config = experiment_config(args)
        device = resolve_device(config.train.device)
        data = load_data_for(config)
        steps_per_epoch = len(data.train) // config.train.batch_size
        epochs = max(1, math.ceil(args.steps / max(1, steps_per_epoch)))
        with tempfile.TemporaryDirectory() as runs:
            timed = config.with_overrides([f"train.epochs={epochs}", f"train.runs_dir={runs}",
                                           "train.log_every_steps=100000", "train.linear_probe=false"]).validate()
            pipeline = Trainer(timed, data=data).run()["images_per_second"]
        bound = backbone_alone(config, device, steps=min(args.steps, 50))
        augment = augmentation_alone(config, data.train.images, device, steps=min(args.steps, 50))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"config: {config.method.name} on {config.data.source} ({config.data.image_size}px), "
          f"{config.backbone.name}, batch {config.train.batch_size}, {len(config.augment.views)} views, "
          f"device {device}, precision {config.train.precision}, {epochs * steps_per_epoch} steps")
    print(f"whole training step:       {pipeline:10.1f} images/s")
    print(f"backbone fwd+bwd alone:    {bound:10.1f} images/s")
    print(f"augmentation alone:        {augment:10.1f} images/s")
    print(f"ratio step / backbone:     {pipeline / bound:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
