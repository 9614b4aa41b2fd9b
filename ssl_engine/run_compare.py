"""Several runs side by side, read from their folders: their curves on one axis (against the
step, the epoch or the training time), their configs with the settings that differ, and their
last embedding maps of the same images, turned to line up.

Curves come from each run's metrics.jsonl: the step rows give the loss and each loss term, the
epoch rows the curve probes (kNN top-1, ...), the init row each curve's random-init floor.
Maps come from each run's recorded `map` probe. Two runs' maps are only comparable when they
show the same images (the same data, the same evaluation subset); PCA's axes are arbitrary up
to a rotation and a reflection, so every map after the first is turned by an orthogonal
Procrustes fit onto the first: the same structure then looks the same.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .addresses import address_of
from .errors import UserError
from .runs import read_metrics

AXES = {"step": "optimiser steps", "epoch": "epochs", "time": "training time (s)"}
STEP_COLUMNS = {"kind", "step", "epoch", "lr", "images_per_second", "time"}  # not curves of a run
TOTAL_LOSS = "loss"


@dataclass
class Series:
    """One curve of one run: each point's step, epoch position, training seconds and value."""

    steps: np.ndarray
    epochs: np.ndarray
    seconds: np.ndarray
    values: np.ndarray

    def x(self, axis: str) -> np.ndarray:
        if axis not in AXES:
            raise ValueError(f"axis {axis!r} is not one of {', '.join(AXES)}")
        return {"step": self.steps, "epoch": self.epochs, "time": self.seconds}[axis]


@dataclass
class RunCurves:
    run_dir: Path
    per_step: dict[str, Series] = field(default_factory=dict)   # the loss and each term
    per_epoch: dict[str, Series] = field(default_factory=dict)  # curve probes at epoch ends
    floors: dict[str, float] = field(default_factory=dict)      # curve probes before the first step

    @property
    def name(self) -> str:
        return self.run_dir.name

    def series(self, name: str) -> Series | None:
        return self.per_step.get(name) or self.per_epoch.get(name)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _series(points: list[tuple[float, float, float, float]]) -> Series:
    steps, epochs, seconds, values = (np.array(column, dtype=np.float64) for column in zip(*points))
    return Series(steps, epochs, seconds, values)


def read_curves(run_dir: str | Path) -> RunCurves:
    """Every curve of the run in `run_dir` (an empty set for a run that logged nothing yet)."""
    run_dir = Path(run_dir).expanduser()
    step_points: dict[str, list] = {}
    epoch_points: dict[str, list] = {}
    epoch_losses: list = []
    curves = RunCurves(run_dir)
    for row in read_metrics(run_dir):
        kind, step = row.get("kind"), row.get("step")
        if not _finite(step):
            continue
        if kind == "init":
            curves.floors.update({k: float(v) for k, v in row.items() if k not in STEP_COLUMNS and _finite(v)})
        elif kind == "step":
            where = (float(step), float(row.get("epoch", 0.0)), float(row.get("time", 0.0)))
            for key, value in row.items():
                if key not in STEP_COLUMNS and _finite(value):
                    step_points.setdefault(key, []).append((*where, float(value)))
        elif kind == "epoch":
            where = (float(step), float(row.get("epoch", 0.0)), float(row.get("time", 0.0)))
            for key, value in row.items():  # an epoch row's loss is the epoch's mean: the step rows have it
                if key not in STEP_COLUMNS and key != TOTAL_LOSS and _finite(value):
                    epoch_points.setdefault(key, []).append((*where, float(value)))
            if _finite(row.get(TOTAL_LOSS)):
                epoch_losses.append((*where, float(row[TOTAL_LOSS])))
    if TOTAL_LOSS not in step_points and epoch_losses:
        # a run too short to log a step (a race's, at a large batch): its epochs' mean losses
        step_points[TOTAL_LOSS] = epoch_losses
    curves.per_step = {name: _series(points) for name, points in step_points.items()}
    curves.per_epoch = {name: _series(points) for name, points in epoch_points.items()}
    return curves


def curve_names(runs: list[RunCurves]) -> list[str]:
    """Every curve some run has: the loss first, then the epoch curves, then the loss terms."""
    per_epoch = sorted({name for run in runs for name in run.per_epoch})
    terms = sorted({name for run in runs for name in run.per_step} - {TOTAL_LOSS})
    has_loss = any(TOTAL_LOSS in run.per_step for run in runs)
    return [TOTAL_LOSS] * has_loss + per_epoch + terms


# -- configs ---------------------------------------------------------------------------------
def _leaves(table, path: tuple = ()) -> dict[tuple, object]:
    if isinstance(table, dict):
        items = table.items()
    elif isinstance(table, list) and table and all(isinstance(item, dict) for item in table):
        items = enumerate(table)  # [[augment.views]]
    else:
        return {path: table}
    leaves = {}
    for key, value in items:
        leaves.update(_leaves(value, (*path, key)))
    return leaves


def _text(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class ConfigRow:
    address: str
    values: tuple[str, ...]  # one per run, "–" where a run has no such setting

    @property
    def differs(self) -> bool:
        return len(set(self.values)) > 1


def read_config_table(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "config.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from None


def config_rows(configs: list[dict]) -> list[ConfigRow]:
    """Every setting of the configs, one row per address in the first config's order (then
    the others' own), with each run's value as text."""
    leaves = [_leaves(config) for config in configs]
    order = list(dict.fromkeys(path for run in leaves for path in run))
    return [ConfigRow(address_of(path), tuple(_text(run.get(path)) for run in leaves)) for path in order]


# -- maps ------------------------------------------------------------------------------------
@dataclass
class MapPanel:
    run_dir: Path
    epoch: int | None        # the recorded map's epoch; None: embedded now from the run's last checkpoint
    points: np.ndarray       # (M, 2), turned onto the first panel's map
    labels: np.ndarray
    class_names: list[str]


@dataclass
class MapComparison:
    panels: list[MapPanel]
    recorded: bool           # every panel is the run's own recorded map (else embedded from checkpoints)
    missing: list[str]       # runs with no map: none recorded by any run, or no checkpoint to embed with
    images: np.ndarray | None = None  # the images every panel shows (uint8, M x H x W x 3)


def procrustes_onto(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`points` centred, scaled to the reference's spread and turned (a rotation, or a rotation and
    a reflection) to lie closest to `reference` in the least-squares sense."""
    source = points - points.mean(axis=0)
    target = reference - reference.mean(axis=0)
    source_norm, target_norm = np.linalg.norm(source), np.linalg.norm(target)
    if source_norm == 0.0 or target_norm == 0.0:
        return source + reference.mean(axis=0)
    u, _, vt = np.linalg.svd(source.T @ target)
    return (source @ (u @ vt)) * (target_norm / source_norm) + reference.mean(axis=0)


def _embedded_map(run_dir: Path, images: np.ndarray) -> np.ndarray:
    """The PCA map of `images` (uint8, M x H x W x 3) under the run's last checkpoint, at its image size."""
    import torch
    from torch.nn import functional as F

    from .eval.embed import embed
    from .eval.model_source import open_model
    from .eval.projection import pca_2d

    model = open_model(run_dir)
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if batch.shape[-1] != model.image_size or batch.shape[-2] != model.image_size:
        resized = F.interpolate(batch.float(), size=(model.image_size, model.image_size), mode="bilinear",
                                antialias=True, align_corners=False)
        batch = resized.round().clamp(0, 255).to(torch.uint8)
    return pca_2d(embed(model.backbone, batch, mean=model.mean, std=model.std, device="cpu"))


def compare_maps(run_dirs: list[str | Path]) -> MapComparison:
    """Maps of the same images for every run: their recorded last maps when they all show the
    same images; otherwise the first recorded map's images embedded by each run's last
    checkpoint. Every map after the first is turned onto the first."""
    from .run_replay import replay_run

    run_dirs = [Path(d) for d in run_dirs]
    recorded = {}
    for run_dir in run_dirs:
        result = replay_run(run_dir).load("map")
        if result is not None:
            recorded[run_dir] = result
    if not recorded:
        return MapComparison([], False, [d.name for d in run_dirs])
    reference = next(iter(recorded.values())).value
    same = len(recorded) == len(run_dirs) and all(
        r.value.images.shape == reference.images.shape and np.array_equal(r.value.images, reference.images)
        and np.array_equal(r.value.labels, reference.labels) for r in recorded.values())
    panels, missing = [], []
    for run_dir in run_dirs:
        if same:
            result = recorded[run_dir]
            points, epoch = np.asarray(result.value.projection_2d, dtype=np.float64), result.epoch
        else:
            try:
                points, epoch = _embedded_map(run_dir, reference.images).astype(np.float64), None
            except UserError:  # no checkpoint (a run cut short before its first) or an unreadable one
                missing.append(run_dir.name)
                continue
        if panels:
            points = procrustes_onto(points, panels[0].points)
        panels.append(MapPanel(run_dir, epoch, points.astype(np.float32), np.asarray(reference.labels),
                               list(reference.class_names)))
    return MapComparison(panels, same, missing, reference.images)
