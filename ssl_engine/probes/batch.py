"""Probes of the step's batch, from the method's output: its matrices (cross-correlation,
similarity) and its histograms (prototype or cluster usage)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import ProbeContext, probe

MATRIX_EVERY_STEPS = 10  # one d x d matrix: cheap next to a step


@dataclass
class Matrices:
    matrices: dict[str, np.ndarray]  # name -> float32 (d, d)


@dataclass
class Histograms:
    histograms: dict[str, np.ndarray]  # name -> float32 (K,) counts


def _numpy(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: t.detach().float().cpu().numpy().copy() for name, t in tensors.items()}


@probe("matrices", per="step", every=MATRIX_EVERY_STEPS, display="matrices", first_step=True,
       help="the batch's matrices: the two views' cross-correlation and cosine similarity")
def batch_matrices(context: ProbeContext) -> Matrices | None:
    matrices = context.method.matrices(context.output)
    return Matrices(_numpy(matrices)) if matrices else None


@probe("histograms", per="step", every=MATRIX_EVERY_STEPS, display="histograms", first_step=True,
       help="how many of the batch's images each prototype or cluster took (the sign of a collapse)")
def batch_histograms(context: ProbeContext) -> Histograms | None:
    histograms = context.method.histograms(context.output)
    return Histograms(_numpy(histograms)) if histograms else None
