"""Small, fast experiment configs, real image folders and real training runs shared by the tests."""

import numpy as np
import torch
from PIL import Image

from ssl_engine.data import generate_shapes

from ssl_engine.config import ExperimentConfig
from ssl_engine.train import EventRates, Trainer, TrainingControl
from ssl_engine.train.events import EpochEnd, StepMetrics

# Narrow heads keep a CPU step to a few milliseconds; every other value is the paper's.
SMALL_HEADS = {
    "simclr": ["method.hidden_dim=64", "method.projection_dim=32"],
    "moco_v2": ["method.hidden_dim=64", "method.projection_dim=32", "method.queue_size=256"],
    "byol": ["method.hidden_dim=64", "method.projection_dim=32"],
    "simsiam": ["method.projection_dim=64", "method.predictor_hidden_dim=16"],
    "barlow_twins": ["method.projection_dim=64", "method.lambd=0.02"],
    "vicreg": ["method.expander_dim=64"],
    "moco_v3": ["method.hidden_dim=64", "method.projection_dim=32"],
    "dino": ["method.out_dim=256", "method.hidden_dim=64", "method.bottleneck_dim=32"],
    "swav": ["method.hidden_dim=64", "method.projection_dim=32", "method.num_prototypes=16"],
    "sela": ["method.num_clusters=16"],
    "deepcluster": ["method.num_clusters=16", "method.pca_dim=32", "method.hidden_dim=64"],
    # MSN is ViT-only: the tiny ViT with 8 px patches (a 4 x 4 grid at 32 px) keeps it quick
    "msn": ["backbone.name=vit_tiny", "backbone.patch_size=8", "method.num_prototypes=16",
            "method.hidden_dim=64", "method.projection_dim=32"],
    "mae": ["backbone.name=vit_tiny", "backbone.patch_size=8", "method.decoder_dim=32",
            "method.decoder_depth=1", "method.decoder_heads=2"],
    "simmim": ["backbone.name=vit_tiny", "backbone.patch_size=8"],
    "maskfeat": ["backbone.name=vit_tiny", "backbone.patch_size=8"],
    "ijepa": ["backbone.name=vit_tiny", "backbone.patch_size=8", "method.predictor_dim=48",
              "method.predictor_depth=1"],
    "beit": ["backbone.name=vit_tiny", "backbone.patch_size=8", "method.codebook_size=16"],
    "ibot": ["backbone.name=vit_tiny", "backbone.patch_size=8", "method.out_dim=64", "method.patch_out_dim=64",
             "method.hidden_dim=32", "method.bottleneck_dim=16"],
}


def tiny_config(tmp_path, method="simclr", *extra, epochs=1, count=400, batch=64, recipe="imagenet"):
    """A run of a few steps on a small generated shapes set, written under tmp_path, in the
    method's paper recipe unless `recipe` says otherwise."""
    return ExperimentConfig.for_method(method, 32, recipe).with_overrides([
        "data.source=shapes", f"data.shapes_count={count}", "data.image_size=32",
        "backbone.name=small_cnn", f"train.epochs={epochs}", f"train.batch_size={batch}",
        "train.device=cpu", f"train.runs_dir={tmp_path / 'runs'}", "train.log_every_steps=1",
        "train.eval_subset=64", "train.linear_probe=false", "train.diagnostics=false",  # a test that wants them says so
        *SMALL_HEADS.get(method, []), *extra]).validate()


def assert_same_state(first, second, where: str = "") -> None:
    """Two state dicts (a model's, or an optimiser's with its nested state and groups) hold the
    same keys, bit-identical tensors and equal plain values (a resumed run against an
    uninterrupted one); `where` names the entry that differs."""
    if isinstance(first, torch.Tensor):
        assert isinstance(second, torch.Tensor) and torch.equal(first, second), where
    elif isinstance(first, dict):
        assert isinstance(second, dict) and first.keys() == second.keys(), where
        for key in first:
            assert_same_state(first[key], second[key], f"{where}.{key}" if where else str(key))
    elif isinstance(first, (list, tuple)):
        assert type(first) is type(second) and len(first) == len(second), where
        for i, (a, b) in enumerate(zip(first, second)):
            assert_same_state(a, b, f"{where}[{i}]")
    else:
        assert first == second, where


def reference_sinkhorn(q: torch.Tensor, iterations: int) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp as its code writes it, on a positive (N, K) matrix q = exp(scores /
    epsilon): normalise the total, then prototypes and samples in turn; rows of the result sum to 1."""
    q = q.T.clone()
    q /= q.sum()
    prototypes, samples = q.shape
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= samples
    return (q * samples).T


def stopped_run(config, at_step: int | None = None) -> tuple[Trainer, dict]:
    """Train `config` and press Stop after step `at_step` (or after the first epoch): the trainer
    and its summary, with the stop's checkpoint in its run folder."""
    control = TrainingControl()
    trainer = Trainer(config, control=control)

    def stop_when_due(event):
        if (isinstance(event, EpochEnd) if at_step is None else
                isinstance(event, StepMetrics) and event.step == at_step):
            control.stop()

    trainer.subscribe(stop_when_due, EventRates(metrics_every_steps=1))
    return trainer, trainer.run()


ODD_FILES = ("circle/grey.png", "cross/rgba.png", "square/deep16.png")  # L, RGBA and 16-bit images


def save_image_set(image_set, folder, labelled=True, start=0):
    """Write an ImageSet's images as files, PNG and JPEG alternately, into class subfolders of
    `folder` (or flat); the paths written, in order."""
    paths = []
    for i in range(len(image_set)):
        subfolder = folder / image_set.class_names[int(image_set.labels[i])] if labelled else folder
        subfolder.mkdir(parents=True, exist_ok=True)
        path = subfolder / f"{start + i:05d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(image_set.images[i].permute(1, 2, 0).numpy()).save(path, quality=95)
        paths.append(path)
    return paths


def write_shapes_folder(root, count=60, size=40, seed=0):
    """A labelled folder of shapes images with greyscale, RGBA and 16-bit images, a nested one,
    a broken file, a stray top-level file and hidden files mixed in."""
    save_image_set(generate_shapes(count, size, seed), root)
    pixels = generate_shapes(3, size, seed + 1).images.permute(0, 2, 3, 1).numpy()
    Image.fromarray(pixels[0]).convert("L").save(root / ODD_FILES[0])
    rgba = np.concatenate([pixels[1], np.full((size, size, 1), 200, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(root / ODD_FILES[1])
    Image.fromarray((pixels[2][..., 0].astype(np.uint16) * 257)).save(root / ODD_FILES[2])
    (root / "star" / "more" / "deeper").mkdir(parents=True)
    Image.fromarray(pixels[0]).save(root / "star" / "more" / "deeper" / "nested.png")
    (root / "ring" / "broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(pixels[1]).save(root / "stray.png")
    Image.fromarray(pixels[1]).save(root / "heart" / ".hidden.png")
    return root


def train_tiny_run(folder):
    """The run folder of a real one-epoch SimCLR run on shapes."""
    trainer = Trainer(tiny_config(folder, count=200))
    trainer.run()
    return trainer.run_dir
