"""The field's measures of a representation, as pure functions: tensors in, plain floats out.

Each takes embeddings as (N, D) tensors, one row per image (two arguments: two views of the same
N images, row i of one matching row i of the other), computes in float64 (the determinants and
spectra below lose too much in float32) and holds no state. A fully collapsed input (every row
the same) gives the collapse's values, never NaN: no information shared, rank about 1, no spread.

    infonce_bound(z1, z2, temperature)  # (log N - L_InfoNCE, log N): Oord et al. 2018
    gaussian_mi(z1, z2)                 # -1/2 log det(I - C C^T) of whitened views
    rankme(z)                           # effective rank: Garrido et al. 2023
    embedding_std(z)                    # (mean per-dimension std of z / |z|, 1 / sqrt(D))
    alignment(z1, z2), uniformity(z)    # Wang and Isola 2020

The live probe that measures a run with them is `probes.diagnostics`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

NORMALIZE_EPS = 1e-12       # a zero row stays zero when normalised (a collapse to the origin)
RANKME_EPSILON = 1e-7       # Garrido et al.'s epsilon, added to each normalised singular value
SAMPLES_PER_DIMENSION = 16  # gaussian_mi: at most N / 16 principal directions (see there)
RIDGE = 1e-3                # gaussian_mi: added to each view's covariance, as a share of its mean variance
# Eigenvalues below this share of the data's second moment are rounding (a constant column's
# centred values are ~1e-16, not 0): whitening them would make noise look like signal.
NEGLIGIBLE_VARIANCE = 1e-10


def _pairs(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"expected two (N, D) embeddings of the same shape, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    return z1.detach().double(), z2.detach().double()


def _rows(z: Tensor, least: int = 1) -> Tensor:
    if z.dim() != 2 or len(z) < least:
        raise ValueError(f"expected (N, D) embeddings with N >= {least}, got {tuple(z.shape)}")
    return z.detach().double()


def _unit(z: Tensor) -> Tensor:
    return F.normalize(z, dim=1, eps=NORMALIZE_EPS)


def infonce_bound(z1: Tensor, z2: Tensor, temperature: float) -> tuple[float, float]:
    """The InfoNCE lower bound on the mutual information of the two views, in nats, and its
    ceiling log N (van den Oord, Li, Vinyals, "Representation Learning with Contrastive
    Predictive Coding", 2018, section 2.3).

    With u_i, v_j the L2-normalised rows of z1 and z2 and s_ij = u_i . v_j / T,

        L = -1/N sum_i log( exp(s_ii) / sum_j exp(s_ij) )        (and the same with s transposed)
        I(view 1; view 2) >= log N - L

    Each view's row i has its partner in the other view as the one positive among N candidates.
    L is averaged over both directions (each is a bound; so is their mean). The bound can never
    exceed log N, whatever the true information: that is its ceiling. Perfectly aligned,
    well-separated pairs reach log N - log(1 + (N - 1) e^{-1/T}) (orthogonal rows); views whose
    similarities do not depend on the pairing (a collapse: every s_ij equal) give 0; pairs
    less similar than the others give a negative estimate.
    """
    a, b = _pairs(z1, z2)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = _unit(a) @ _unit(b).T / temperature
    positives = torch.arange(len(logits), device=logits.device)
    loss = (F.cross_entropy(logits, positives) + F.cross_entropy(logits.T, positives)) / 2
    ceiling = math.log(len(logits))
    return ceiling - float(loss), ceiling


def _whitening(x: Tensor, ridge: float, negligible: Tensor) -> Tensor | None:
    """(C + ridge (tr C / k) I)^{-1/2} for C the centred (N, k) `x`'s covariance; None when
    `x`'s variance is `negligible`."""
    covariance = x.T @ x / max(len(x) - 1, 1)
    mean_variance = covariance.diagonal().mean()
    if mean_variance <= negligible:
        return None
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    return eigenvectors @ torch.diag((eigenvalues.clamp_min(0) + ridge * mean_variance).rsqrt()) @ eigenvectors.T


def gaussian_mi(z1: Tensor, z2: Tensor, *, samples_per_dimension: int = SAMPLES_PER_DIMENSION,
                ridge: float = RIDGE) -> float:
    """The mutual information of the two views, in nats, were they jointly Gaussian:

        I = -1/2 log det(I - S12 S21) = -1/2 sum_k log(1 - rho_k^2)

    with S12 the cross-covariance of the whitened views (S21 its transpose) and rho_k its
    singular values, the canonical correlations (Hotelling 1936; the Gaussian formula: Cover and
    Thomas, "Elements of Information Theory", chapter 8). Independent views give 0; d dimensions each
    correlated rho with one partner give -(d/2) log(1 - rho^2).

    Computed stably from N samples:
    - on the k leading principal directions of the two views pooled (the same basis for
      both), k = min(D, N // `samples_per_dimension`): the plug-in estimate of two independent
      k-dimensional views is about k^2 / (2N) nats, not 0, so 16 samples per direction keep
      that bias below k / 32 nats, and a dimension above the sample count (a 512-d ResNet on 512
      images) is never whitened from a singular covariance; directions with no variance (a
      collapse) are dropped;
    - each view whitened with `ridge` times its mean variance added to its covariance
      (Tikhonov's regularisation), which keeps every canonical correlation below 1: identical
      views give a large but finite value (about 3 nats per direction at the mean variance).
    Fully collapsed views (no variance) share nothing measurable here: 0.
    """
    a, b = _pairs(z1, z2)
    n, dimensions = a.shape
    if n < 2:
        raise ValueError(f"gaussian_mi needs at least 2 samples, got {n}")
    a, b = a - a.mean(dim=0), b - b.mean(dim=0)
    pooled = (a.T @ a + b.T @ b) / (2 * (n - 1))
    eigenvalues, eigenvectors = torch.linalg.eigh(pooled)  # ascending
    negligible = NEGLIGIBLE_VARIANCE * (z1.double().pow(2).mean() + z2.double().pow(2).mean()) / 2
    kept = int((eigenvalues > negligible).sum())
    k = min(dimensions, max(1, n // samples_per_dimension), kept)
    if k == 0:
        return 0.0
    basis = eigenvectors[:, -k:]
    a, b = a @ basis, b @ basis
    whiten_a, whiten_b = _whitening(a, ridge, negligible), _whitening(b, ridge, negligible)
    if whiten_a is None or whiten_b is None:
        return 0.0
    cross = whiten_a @ (a.T @ b / (n - 1)) @ whiten_b
    correlations = torch.linalg.svdvals(cross).clamp(0.0, 1.0 - 1e-12)
    return float(-0.5 * torch.log1p(-correlations.pow(2)).sum())


def rankme(z: Tensor, epsilon: float = RANKME_EPSILON) -> float:
    """RankMe, the effective rank of the embeddings (Garrido, Balestriero, Najman, LeCun,
    "RankMe: Assessing the Downstream Performance of Pretrained Self-Supervised Representations
    by Their Rank", ICML 2023; the effective rank of Roy and Vetterli 2007):

        p_k = sigma_k / sum_j sigma_j + epsilon,     RankMe = exp(-sum_k p_k log p_k)

    over the singular values sigma_k of the (N, D) embedding matrix (not centred, as in the
    paper), with the paper's epsilon 1e-7. Between about 1 (a collapse to one direction) and
    min(N, D) (a flat spectrum). An all-zero matrix has no direction at all: 1, RankMe's floor.
    """
    singular_values = torch.linalg.svdvals(_rows(z))
    total = singular_values.sum()
    if total <= 0:
        return 1.0
    p = singular_values / total + epsilon
    return float(torch.exp(-(p * p.log()).sum()))


def embedding_std(z: Tensor) -> tuple[float, float]:
    """The mean over dimensions of the standard deviation over samples of the L2-normalised
    embeddings, and its reference 1 / sqrt(D) (Chen and He, "Exploring Simple Siamese
    Representation Learning", CVPR 2021, section 4.1): a collapse gives 0; embeddings spread
    like a uniform distribution on the unit sphere give about 1 / sqrt(D). The population
    standard deviation (divided by N)."""
    unit = _unit(_rows(z))
    return float(unit.std(dim=0, correction=0).mean()), 1.0 / math.sqrt(unit.shape[1])


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> float:
    """Alignment of positive pairs (Wang and Isola, "Understanding Contrastive Representation
    Learning through Alignment and Uniformity on the Hypersphere", ICML 2020):

        L_align = mean_i || u_i - v_i ||_2^alpha

    over the L2-normalised rows u_i of z1 and v_i of z2. 0 when each pair coincides (as in a
    collapse), 4 (alpha = 2) when each is antipodal; lower is better."""
    a, b = _pairs(z1, z2)
    return float((_unit(a) - _unit(b)).norm(dim=1).pow(alpha).mean())


def uniformity(z: Tensor, t: float = 2.0) -> float:
    """Uniformity (Wang and Isola 2020): the log of the mean Gaussian potential over the
    pairs of L2-normalised rows,

        L_uniform = log mean_{i < j} exp(-t || u_i - u_j ||_2^2)

    (a log-sum-exp, stable however spread the points are). 0, its maximum, for a collapse;
    lower is more uniform."""
    unit = _unit(_rows(z, least=2))
    potentials = -t * torch.pdist(unit).pow(2)
    return float(torch.logsumexp(potentials, dim=0) - math.log(len(potentials)))
