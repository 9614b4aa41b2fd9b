"""Models to evaluate: a trained run's backbone, a checkpoint file, or a random-init floor.

Every model comes back as an `EvalModel`: the backbone in eval mode on the CPU, the
normalisation and image size it was trained with, and a `key` that fingerprints everything
that decides its features (weights, image size, normalisation, a ViT's feature choice), so
that the embedding cache is shared by copies of one checkpoint and never reused by a changed
model. Checkpoints are read with `load_checkpoint` (tensors only: a file that would run code
is refused).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import checkpoint_file, load_checkpoint
from ..config import ExperimentConfig, with_vit_layout_of
from ..errors import UserError
from ..models.build import backbone_state, build_backbone_for

NEUTRAL_MEAN_STD = (0.5, 0.5, 0.5)  # normalisation of a random-init model with no `like`: [0, 1] -> [-1, 1]


@dataclass
class EvalModel:
    name: str                      # for people: "simclr · shapes · 20261122-101500" / "small_cnn at random init"
    backbone: torch.nn.Module      # CPU, eval mode; backbone(x) -> (N, D); ViTs use evaluation_features
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int                # images are centre-cropped and resized to this before embedding
    key: str                       # hex fingerprint of weights, image_size, mean/std and ViT feature choice
    source: str                    # the checkpoint path / run folder, or "random:<backbone>:<seed>"
    feature_dim: int
    config: ExperimentConfig | None = dataclasses.field(default=None, repr=False)  # what built the backbone


@dataclass
class RunInfo:
    path: str                      # the run folder
    method: str
    data: str                      # the data source it trained on
    backbone: str
    epochs_done: float | None      # from summary.json; None while it has none
    knn_top1: float | None
    modified: float                # mtime of its last checkpoint (seconds since the epoch)


def model_key(backbone: torch.nn.Module, image_size: int, mean, std) -> str:
    """sha1 over the backbone's tensors (names, dtypes, shapes, bytes) and what else shapes its features."""
    digest = hashlib.sha1()
    for name, tensor in backbone.state_dict().items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    settings = {"image_size": int(image_size), "mean": [float(m) for m in mean], "std": [float(s) for s in std],
                "vit_features": getattr(backbone, "evaluation_pooling", None)}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def _data_name(source: str) -> str:
    return Path(source[len("folder:"):]).name if source.startswith("folder:") else source


def run_name(checkpoint: Path) -> str:
    """The run folder's name for runs/<run>/checkpoints/last.pt, else the file's own name."""
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent.name
    return checkpoint.stem


def open_model(path: str | os.PathLike) -> EvalModel:
    """The backbone of a checkpoint file or of a run folder (its checkpoints/last.pt)."""
    checkpoint = checkpoint_file(Path(path).expanduser().absolute())
    state = load_checkpoint(path)  # errors name the path as the user gave it
    config = ExperimentConfig.from_dict(state["config"])
    if "normalization" not in state:
        raise UserError(f"{checkpoint} has no normalisation statistics; it was not written by the SSL Explorer trainer")
    weights = backbone_state(state)
    config = with_vit_layout_of(config, weights)
    backbone = build_backbone_for(config)
    try:
        backbone.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserError(f"{checkpoint}: its weights do not fit a {config.backbone.name} backbone ({first})") from None
    backbone.eval()
    mean = tuple(float(v) for v in state["normalization"]["mean"])
    std = tuple(float(v) for v in state["normalization"]["std"])
    image_size = config.data.image_size
    return EvalModel(
        name=f"{config.method.name} · {_data_name(config.data.source)} · {run_name(checkpoint)}",
        backbone=backbone, mean=mean, std=std, image_size=image_size,
        key=model_key(backbone, image_size, mean, std), source=str(checkpoint),
        feature_dim=int(backbone.feature_dim), config=config)


def random_init_model(like: EvalModel | None = None, *, backbone: str = "small_cnn", image_size: int = 32,
                      seed: int = 0) -> EvalModel:
    """A randomly initialised backbone (seeded): the floor a trained model should beat.

    With `like`, the same architecture, image size and normalisation as that model, so the two
    differ only in their weights; otherwise `backbone` at `image_size`, normalised with 0.5/0.5.
    """
    mean = std = NEUTRAL_MEAN_STD
    if like is not None:
        backbone, image_size, mean, std = like.backbone.name, like.image_size, like.mean, like.std
    config = like.config if like is not None and like.config is not None else \
        ExperimentConfig.for_method("simclr").with_values({"backbone.name": backbone, "data.image_size": image_size})
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random stream
        torch.manual_seed(seed)
        network = build_backbone_for(config)
    network.eval()
    name = config.backbone.name
    return EvalModel(name=f"{name} at random init", backbone=network, mean=tuple(mean), std=tuple(std),
                     image_size=image_size, key=model_key(network, image_size, mean, std),
                     source=f"random:{name}:{seed}", feature_dim=int(network.feature_dim), config=config)


def at_image_size(model: EvalModel, image_size: int) -> EvalModel:
    """`model` fed images of another size (same weights; a ViT resizes its position embeddings)."""
    if image_size == model.image_size:
        return model
    patch = getattr(model.backbone, "patch_size", 1)
    if image_size % patch:
        raise UserError(f"image size {image_size} is not a multiple of this ViT's patch size {patch}")
    return dataclasses.replace(model, image_size=image_size,
                               key=model_key(model.backbone, image_size, model.mean, model.std))


def _read_summary(run: Path) -> dict:
    try:
        summary = json.loads((run / "summary.json").read_text())
        return summary if isinstance(summary, dict) else {}
    except (OSError, ValueError):
        return {}


def list_runs(runs_dir: str | os.PathLike = "runs") -> list[RunInfo]:
    """Runs under `runs_dir` that have a checkpoint and a readable config, newest first."""
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        return []
    runs = []
    for run in root.iterdir():
        checkpoint = run / "checkpoints" / "last.pt"
        if not checkpoint.is_file() or not (run / "config.toml").is_file():
            continue
        try:
            config = ExperimentConfig.load(run / "config.toml")
            modified = checkpoint.stat().st_mtime
        except (UserError, OSError, ValueError):  # a damaged or foreign run folder: not listed
            continue
        summary = _read_summary(run)
        epochs, knn = summary.get("epochs"), summary.get("knn_top1")
        runs.append(RunInfo(path=str(run), method=config.method.name, data=config.data.source,
                            backbone=config.backbone.name,
                            epochs_done=float(epochs) if isinstance(epochs, (int, float)) else None,
                            knn_top1=float(knn) if isinstance(knn, (int, float)) else None,
                            modified=modified))
    return sorted(runs, key=lambda r: r.modified, reverse=True)
