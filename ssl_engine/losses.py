"""Self-supervised losses as pure functions: tensors in, a scalar tensor out.

Every function here:
- holds no state and detaches nothing (a method decides what to stop gradients through);
- computes in float32 with autocast switched off, whatever dtype comes in, so that mixed
  precision training (which calls these under autocast) gets a full-precision loss;
- works on whatever batch it is given. Under DDP the method first passes its embeddings
  through `ssl_engine.distributed.gather_with_grad`, so that negatives and batch statistics
  cover the global batch and one process and N processes compute the same loss.

Shapes: embeddings are (N, D), one row per sample; the two arguments of a pair loss hold two
views of the same N samples, row i of one matching row i of the other.

Two helpers prepare a target rather than score it: `patch_mean_std` and `standardise_patches`,
MAE's per-patch normalisation, written once for MAE's loss and pictures and BEiT's tokenizer.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .distributed import all_reduce_max, all_reduce_sum

__all__ = [
    "info_nce",
    "info_nce_with_queue",
    "moco_v3_contrastive",
    "positive_alignment",
    "cross_correlation",
    "barlow_twins_terms",
    "barlow_twins",
    "covariance_matrix",
    "vicreg_terms",
    "vicreg",
    "negative_cosine",
    "dino_loss",
    "sinkhorn",
    "standardise_patches",
    "patch_mean_std",
    "masked_patch_mse",
    "masked_pixel_l1",
    "masked_token_cross_entropy",
    "ibot_patch_loss",
]

NORMALIZE_EPS = 1e-12
"""Floor on the norm in L2 normalisation, so that an all-zero embedding gives zeros, not NaN."""

BATCHNORM_EPS = 1e-5
"""Added to the variance in Barlow Twins' per-dimension standardisation (BatchNorm1d's default)."""

VICREG_VARIANCE_EPS = 1e-4
"""Added to the variance before the square root in VICReg's variance term (the paper's value)."""

NORM_PIX_EPS = 1e-6
"""Added to a patch's pixel variance before the square root in MAE's per-patch target
normalisation (`norm_pix_loss`, the value of the MAE code)."""

_LossFunction = TypeVar("_LossFunction", bound=Callable[..., object])


def _in_float32(loss_function: _LossFunction) -> _LossFunction:
    """Run `loss_function` with autocast off and every floating-point tensor argument in float32."""

    @functools.wraps(loss_function)
    def wrapper(*args, **kwargs):
        def to_float32(value):
            if isinstance(value, Tensor) and value.is_floating_point():
                return value.float()
            return value

        args = tuple(to_float32(value) for value in args)
        kwargs = {name: to_float32(value) for name, value in kwargs.items()}
        tensors = [value for value in (*args, *kwargs.values()) if isinstance(value, Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            return loss_function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _off_diagonal_square_sum(a: Tensor, b: Tensor) -> Tensor:
    """sum_{i != j} (a^T b)_ij^2 for (N, D) a and b, without the (D, D) product when N < D.

    ||a^T b||_F^2 = trace(a a^T b b^T) = sum((a a^T) * (b b^T)), so with fewer rows than
    dimensions (a batch of 256 against an 8192-wide projector) the two (N, N) Gram matrices
    give the whole sum at N/D of the cost; the diagonal, (a^T b)_ii = sum_n a_ni b_ni, is then
    taken off. The subtraction loses about float32's epsilon times the diagonal's sum."""
    diagonal = (a * b).sum(dim=0)
    if a.shape[0] < a.shape[1]:
        total = ((a @ a.T) * (b @ b.T)).sum()
    else:
        total = (a.T @ b).pow(2).sum()
    return total - diagonal.pow(2).sum()


def _require_same_shape(first: Tensor, second: Tensor) -> None:
    if first.dim() != 2 or first.shape != second.shape:
        raise ValueError(
            f"expected two (N, D) tensors of the same shape, got {tuple(first.shape)} "
            f"and {tuple(second.shape)}"
        )


@_in_float32
def info_nce(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

    Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
    Representations", ICML 2020.

    The N pairs give 2N views u_1..u_2N (rows of z1, then rows of z2), each L2-normalised.
    For each anchor i with positive p(i) (its other view):

        l_i = -log( exp(u_i . u_p(i) / T) / sum_{k != i} exp(u_i . u_k / T) )

    so the positive competes with the other 2N - 2 views as negatives, and the loss is the
    mean of l_i over all 2N anchors. When every view is the same vector, l_i = log(2N - 1).
    (SimCLR's code sums its two directions, each a mean over N anchors: twice this.)

    Args:
        z1, z2: (N, D) embeddings of the two views; need not be normalised.
        temperature: T > 0.
    """
    _require_same_shape(z1, z2)
    batch_size = z1.shape[0]
    views = F.normalize(torch.cat([z1, z2], dim=0), dim=1, eps=NORMALIZE_EPS)
    logits = views @ views.T / temperature
    self_mask = torch.eye(2 * batch_size, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    anchor_index = torch.arange(2 * batch_size, device=logits.device)
    positive_index = (anchor_index + batch_size) % (2 * batch_size)
    return F.cross_entropy(logits, positive_index)


@_in_float32
def info_nce_with_queue(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """InfoNCE against a queue of negative keys, as in MoCo.

    He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual Representation
    Learning", CVPR 2020; Chen, Fan, Girshick, He, "Improved Baselines with Momentum
    Contrastive Learning" (MoCo v2), 2020.

    With q and k L2-normalised here and the queue's keys already normalised:

        logits_n = [q_n . k_n, q_n . queue_1, ..., q_n . queue_K] / T
        loss = mean_n CrossEntropy(logits_n, target = 0)

    Nothing is detached here: the method passes a detached k (the momentum encoder's output).

    Args:
        q: (N, D) queries from the online encoder.
        k: (N, D) positive keys, row n matching q's row n.
        queue: (K, D) normalised negative keys; K may be 0.
        temperature: T > 0.
    """
    _require_same_shape(q, k)
    if queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"expected a (K, {q.shape[1]}) queue, got {tuple(queue.shape)}")
    q = F.normalize(q, dim=1, eps=NORMALIZE_EPS)
    k = F.normalize(k, dim=1, eps=NORMALIZE_EPS)
    positive_logits = (q * k).sum(dim=1, keepdim=True)
    negative_logits = q @ queue.T
    logits = torch.cat([positive_logits, negative_logits], dim=1) / temperature
    positive_index = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, positive_index)


@_in_float32
def moco_v3_contrastive(q: Tensor, keys: Tensor, temperature: float, first_positive: int = 0) -> Tensor:
    """MoCo v3's contrastive loss, ctr (Chen, Xie, He, "An Empirical Study of Training
    Self-Supervised Vision Transformers", ICCV 2021, algorithm 1).

    With q and the keys L2-normalised here, the positive of query n being key
    `first_positive + n`:

        ctr(q, k) = CrossEntropy(q k^T / T, labels = first_positive + n) * 2T

    so the other keys of the batch are the negatives (no queue). The factor 2T is the reference
    code's; it makes the gradient's scale independent of T. The method symmetrises,
    loss = ctr(q1, k2) + ctr(q2, k1), and passes detached keys (the momentum encoder's).

    Args:
        q: (N, D) queries of this process.
        keys: (M, D) keys of the global batch (`first_positive` is this process's offset in the
            gather; 0 on one process).
        temperature: T > 0.
    """
    q = F.normalize(q, dim=1, eps=NORMALIZE_EPS)
    keys = F.normalize(keys, dim=1, eps=NORMALIZE_EPS)
    labels = torch.arange(len(q), device=q.device) + first_positive
    return F.cross_entropy(q @ keys.T / temperature, labels) * (2 * temperature)


def positive_alignment(q: Tensor, k: Tensor, temperature: float) -> Tensor:
    """What InfoNCE keeps of a pair when its negatives are taken away: the positive logit alone,

        loss = -mean_n (q_n . k_n) / (||q_n|| ||k_n|| T)

    i.e. -log of InfoNCE's numerator, with nothing in its denominator; up to scale the alignment
    term of Wang & Isola ("Understanding Contrastive Representation Learning through Alignment
    and Uniformity on the Hypersphere", ICML 2020) without its uniformity term. Each pair's term
    depends on that pair alone, and every embedding being the same vector minimises it: the
    contrastive methods' collapse demo. Nothing is detached here (`negative_cosine`, over T).

    Args:
        q, k: (N, D) embeddings, row n of one the positive of row n of the other.
        temperature: T > 0, the temperature the InfoNCE loss had.
    """
    return negative_cosine(q, k) / temperature


def _standardize_per_dimension(z: Tensor) -> Tensor:
    """(z - mean) / sqrt(biased variance + eps) over the batch, per dimension: BatchNorm1d
    without affine parameters, in training mode."""
    centered = z - z.mean(dim=0)
    variance = centered.pow(2).mean(dim=0)
    return centered / torch.sqrt(variance + BATCHNORM_EPS)


@_in_float32
def cross_correlation(z1: Tensor, z2: Tensor) -> Tensor:
    """The (D, D) cross-correlation matrix of Barlow Twins.

    Each dimension of z1 and z2 is standardised over the batch (mean 0, biased variance 1,
    eps 1e-5, as the paper's BatchNorm1d without affine does), then

        C_ij = sum_n z1n_{n,i} z2n_{n,j} / N

    C_ij lies in about [-1, 1]; C is the identity when the two views agree and the
    dimensions are decorrelated.
    """
    _require_same_shape(z1, z2)
    batch_size = z1.shape[0]
    return _standardize_per_dimension(z1).T @ _standardize_per_dimension(z2) / batch_size


@_in_float32
def barlow_twins_terms(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """The two unweighted terms of the Barlow Twins loss, (on_diagonal, off_diagonal), with
    C = `cross_correlation(z1, z2)`:

        on_diagonal  = sum_i (1 - C_ii)^2          (invariance)
        off_diagonal = sum_{i != j} C_ij^2          (redundancy reduction)

    C itself is not formed when the batch is smaller than the dimension
    (`_off_diagonal_square_sum`).
    """
    _require_same_shape(z1, z2)
    batch_size = z1.shape[0]
    a, b = _standardize_per_dimension(z1), _standardize_per_dimension(z2)
    on_diagonal = (1 - (a * b).sum(dim=0) / batch_size).pow(2).sum()
    off_diagonal = _off_diagonal_square_sum(a, b) / batch_size ** 2
    return on_diagonal, off_diagonal


def barlow_twins(z1: Tensor, z2: Tensor, lambd: float) -> Tensor:
    """Barlow Twins: drive the cross-correlation of the two views' embeddings to the identity.

    Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning via Redundancy
    Reduction", ICML 2021.

        loss = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2

    with C the cross-correlation matrix of `cross_correlation` (per-dimension standardised
    embeddings, C = z1n^T z2n / N). The paper uses lambd = 5e-3 for 8192 dimensions.
    """
    on_diagonal, off_diagonal = barlow_twins_terms(z1, z2)
    return on_diagonal + lambd * off_diagonal


@_in_float32
def covariance_matrix(z: Tensor) -> Tensor:
    """The (D, D) sample covariance of the rows of z: (z - mean)^T (z - mean) / (N - 1)."""
    centered = _centered(z)
    return centered.T @ centered / (z.shape[0] - 1)


def _centered(z: Tensor) -> Tensor:
    """z - its mean over the batch, for a covariance (which needs N >= 2)."""
    if z.dim() != 2 or z.shape[0] < 2:
        raise ValueError(f"a covariance needs an (N, D) tensor with N >= 2, got {tuple(z.shape)}")
    return z - z.mean(dim=0)


@_in_float32
def vicreg_terms(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The three unweighted terms of VICReg: (invariance, variance, covariance).

    For embeddings of dimension D, as in the paper's Algorithm 1:

        invariance = mean over all N x D elements of (z1 - z2)^2
        variance   = (v(z1) + v(z2)) / 2,  v(z) = mean_j max(0, 1 - sqrt(Var(z_:,j) + 1e-4))
        covariance = c(z1) + c(z2),        c(z) = sum_{i != j} Cov(z)_ij^2 / D

    with Var the unbiased variance over the batch and Cov = `covariance_matrix`. A collapsed
    branch (constant embeddings) has v = 1 - sqrt(1e-4) = 0.99.
    """
    _require_same_shape(z1, z2)
    dimension = z1.shape[1]
    invariance = F.mse_loss(z1, z2)

    def variance_hinge(z: Tensor) -> Tensor:
        standard_deviation = torch.sqrt(z.var(dim=0) + VICREG_VARIANCE_EPS)
        return F.relu(1 - standard_deviation).mean()

    def covariance_penalty(z: Tensor) -> Tensor:
        centered = _centered(z)  # the off-diagonal of `covariance_matrix(z)`, without forming it
        return _off_diagonal_square_sum(centered, centered) / (z.shape[0] - 1) ** 2 / dimension

    variance = (variance_hinge(z1) + variance_hinge(z2)) / 2
    covariance = covariance_penalty(z1) + covariance_penalty(z2)
    return invariance, variance, covariance


def vicreg(
    z1: Tensor,
    z2: Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
) -> Tensor:
    """VICReg: variance-invariance-covariance regularisation.

    Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
    Self-Supervised Learning", ICLR 2022.

        loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance

    with the terms of `vicreg_terms`; the defaults (25, 25, 1) are the paper's.
    """
    invariance, variance, covariance = vicreg_terms(z1, z2)
    return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance


@_in_float32
def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """Negative cosine similarity, the loss of SimSiam and BYOL's normalised MSE up to affine terms.

    Chen, He, "Exploring Simple Siamese Representation Learning", CVPR 2021 (SimSiam's D);
    Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020 (BYOL's loss is 2 + 2 * this).

        loss = -mean_n (p_n . z_n) / (||p_n|| ||z_n||)

    in [-1, 1]. Nothing is detached here: the method applies the stop-gradient to z.
    """
    _require_same_shape(p, z)
    return -F.cosine_similarity(p, z, dim=1).mean()


def _distillation_target(teacher: Tensor, center: Tensor, teacher_temp: float) -> Tensor:
    """DINO's and iBOT's teacher distribution: softmax((t - center) / teacher_temp) in float32, no
    gradient (centring and sharpening together keep the student from collapsing)."""
    return F.softmax((teacher.float().detach() - center.float()) / teacher_temp, dim=-1)


def dino_loss(student_logits: list[Tensor], teacher_logits: list[Tensor], center: Tensor,
              student_temp: float, teacher_temp: float) -> Tensor:
    """DINO's self-distillation loss (Caron et al., "Emerging Properties in Self-Supervised
    Vision Transformers", ICCV 2021, algorithm 1).

    `student_logits`: one (N, K) tensor per view, the global views first; `teacher_logits`: one
    (N, K) tensor per global view; `center`: (K,) or (1, K), the teacher's running centre.

        P_t^i = softmax((t_i - center) / teacher_temp),   log P_s^j = log_softmax(s_j / student_temp)
        loss = mean over pairs (i, j), i != j, of  mean_n  -sum_k P_t^i[n, k] log P_s^j[n, k]

    so each teacher view supervises every student view but its own. No gradient flows into the
    teacher's side; the centre's update (an EMA of the teacher's batch mean) is the method's.
    """
    with torch.autocast(device_type=center.device.type, enabled=False):
        targets = [_distillation_target(t, center, teacher_temp) for t in teacher_logits]
        log_predictions = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_logits]
        total, pairs = 0.0, 0
        for i, target in enumerate(targets):
            for j, log_prediction in enumerate(log_predictions):
                if i == j:
                    continue
                total = total + torch.sum(-target * log_prediction, dim=-1).mean()
                pairs += 1
        if pairs == 0:
            raise ValueError("dino_loss needs at least two views")
        return total / pairs


@torch.no_grad()
def sinkhorn(scores: Tensor, epsilon: float, iterations: int) -> Tensor:
    """Sinkhorn-Knopp equipartition (Caron et al., "Unsupervised Learning of Visual Features by
    Contrasting Cluster Assignments", NeurIPS 2020, SwAV; Cuturi 2013; Asano et al. 2020, SeLa).

    `scores`: (N, K) similarities of N features to K prototypes. Returns codes Q, (N, K), the
    solution of max_Q tr(Q^T scores) + epsilon H(Q) over the transportation polytope: each row
    sums to 1 (a soft assignment per sample) and each column to N / K (every prototype gets an
    equal share of the batch), approached as in SwAV's code by `iterations` alternate
    normalisations of exp(scores / epsilon), prototypes first and samples last, so rows sum to
    1 exactly and columns approach N / K. Under DDP the sums over samples run over the global
    batch. No gradient. Computed in the log domain in float32, so that a small epsilon neither
    overflows nor underflows (the same Q as the plain iteration).
    """
    with torch.autocast(device_type=scores.device.type, enabled=False):
        log_q = scores.float() / epsilon
        prototypes = log_q.shape[1]
        samples = all_reduce_sum(torch.tensor(float(log_q.shape[0]), device=log_q.device))
        for _ in range(iterations):
            log_q = log_q - _logsumexp_over_samples(log_q) - torch.log(torch.tensor(float(prototypes)))
            log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - torch.log(samples)
        return torch.exp(log_q) * samples


def _logsumexp_over_samples(log_q: Tensor) -> Tensor:
    """(1, K): log of each column's sum over the global batch (all ranks)."""
    peak = all_reduce_max(log_q.max(dim=0, keepdim=True).values)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    return torch.log(all_reduce_sum(torch.exp(log_q - peak).sum(dim=0, keepdim=True))) + peak


def _mean_over_masked(per_patch: Tensor, mask: Tensor) -> Tensor:
    """Mean of (N, P) per-patch values over the patches where the bool (N, P) `mask` is True
    (zero when none is)."""
    if per_patch.shape != mask.shape:
        raise ValueError(f"expected a (N, P) mask matching the predictions, got {tuple(mask.shape)} "
                         f"for {tuple(per_patch.shape)}")
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / weights.sum().clamp_min(1.0)


def patch_mean_std(patches: Tensor) -> tuple[Tensor, Tensor]:
    """Each patch's mean and standard deviation over its D values, both (..., 1), for (..., D)
    `patches`: mean_d t and sqrt(var_d t + 1e-6), with the unbiased variance, as the MAE code's
    `norm_pix_loss` computes them."""
    return patches.mean(dim=-1, keepdim=True), (patches.var(dim=-1, keepdim=True) + NORM_PIX_EPS).sqrt()


def standardise_patches(patches: Tensor) -> Tensor:
    """(..., D) `patches`, each standardised by its own values (MAE's per-patch target
    normalisation, `norm_pix_loss`): t = (t - mean_d t) / sqrt(var_d t + 1e-6), with
    `patch_mean_std`. Not a loss: a target's preparation, shared by MAE's loss and pictures and by
    BEiT's tokenizer; it keeps the input's dtype."""
    mean, std = patch_mean_std(patches)
    return (patches - mean) / std


@_in_float32
def masked_patch_mse(pred: Tensor, target: Tensor, mask: Tensor, normalize_target: bool = True) -> Tensor:
    """MAE's reconstruction loss (He et al., "Masked Autoencoders Are Scalable Vision Learners",
    CVPR 2022): the mean squared error of the predicted pixels, on the masked patches only,

        loss = sum_i m_i mean_d (pred_id - t_id)^2 / sum_i m_i

    with `pred`, `target` (N, P, D) patches of D pixel values (see `models.vit.patchify`) and
    `mask` (N, P) bool, True where a patch was hidden from the encoder. With `normalize_target`
    (the paper's `norm_pix_loss`, its default), each target patch is first standardised by its
    own pixels (`standardise_patches`). Every process masks the same share of patches, so under DDP the per-process mean
    averages to the global one.
    """
    _require_same_shape_3d(pred, target)
    if normalize_target:
        target = standardise_patches(target)
    return _mean_over_masked((pred - target).pow(2).mean(dim=-1), mask)


@_in_float32
def masked_pixel_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """SimMIM's reconstruction loss (Xie et al., "SimMIM: A Simple Framework for Masked Image
    Modeling", CVPR 2022): the L1 distance of the predicted raw pixels to the input's, averaged
    over the pixels (and channels) of the masked patches only,

        loss = sum_i m_i mean_d |pred_id - t_id| / sum_i m_i

    with `pred`, `target` (N, P, D) patches and `mask` (N, P) bool, True where masked. Every
    patch holds the same D values, so this is the code's sum over masked pixels divided by their
    count and the channels.
    """
    _require_same_shape_3d(pred, target)
    return _mean_over_masked((pred - target).abs().mean(dim=-1), mask)


@_in_float32
def masked_token_cross_entropy(logits: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """BEiT's masked image modelling loss (Bao, Dong, Piao, Wei, "BEiT: BERT Pre-Training of Image
    Transformers", ICLR 2022, eq. 1): the cross-entropy of the predicted visual token, on the
    masked patches only,

        loss = sum_i m_i (-log softmax(logits_i)[z_i]) / sum_i m_i

    with `logits` (N, P, K) scores over a codebook of K visual tokens, `tokens` (N, P) the
    tokenizer's token z_i of every patch and `mask` (N, P) bool, True where the patch was
    replaced by the mask token. The mean runs over all masked patches of the batch, as the BEiT
    code's cross-entropy over `x[bool_masked_pos]`.
    """
    if logits.dim() != 3 or logits.shape[:2] != tokens.shape:
        raise ValueError(f"expected (N, P, K) logits and (N, P) tokens, got {tuple(logits.shape)} "
                         f"and {tuple(tokens.shape)}")
    per_patch = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").reshape(tokens.shape)
    return _mean_over_masked(per_patch, mask)


def ibot_patch_loss(student_patch_logits: list[Tensor], teacher_patch_logits: list[Tensor], center: Tensor,
                    masks: list[Tensor], student_temp: float, teacher_temp: float) -> Tensor:
    """iBOT's masked image modelling loss (Zhou et al., "iBOT: Image BERT Pre-Training with Online
    Tokenizer", ICLR 2022, eq. 2 and the code's iBOTLoss): self-distillation of the patch tokens.

    One (N, P, K) tensor of head outputs per global view for the student (which saw the view with
    its masked patches replaced by the mask token) and for the teacher (which saw it whole), the
    teacher's patch centre (K,) or (1, K), and one (N, P) bool mask per view, True = masked:

        P_t = softmax((t_vnp - center) / teacher_temp),   log P_s = log_softmax(s_vnp / student_temp)
        l_vn = sum_p m_vnp (-sum_k P_t[k] log P_s[k]) / max(1, sum_p m_vnp)
        loss = mean over views v of mean over images n of l_vn

    Only the same view is compared (the student's patches of view v against the teacher's of
    view v), only masked patches count, and an image with no masked patch adds 0 to the mean
    over images, as in the code. No gradient flows into the teacher's side; the centre's update
    is the method's.
    """
    if not (len(student_patch_logits) == len(teacher_patch_logits) == len(masks)) or not masks:
        raise ValueError("ibot_patch_loss needs one student output, teacher output and mask per global view")
    with torch.autocast(device_type=center.device.type, enabled=False):
        total = 0.0
        for student, teacher, mask in zip(student_patch_logits, teacher_patch_logits, masks):
            if student.dim() != 3 or student.shape != teacher.shape or student.shape[:2] != mask.shape:
                raise ValueError(f"expected (N, P, K) outputs and an (N, P) mask, got {tuple(student.shape)}, "
                                 f"{tuple(teacher.shape)} and {tuple(mask.shape)}")
            target = _distillation_target(teacher, center, teacher_temp)
            per_patch = torch.sum(-target * F.log_softmax(student.float() / student_temp, dim=-1), dim=-1)
            weights = mask.float()
            per_image = (per_patch * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
            total = total + per_image.mean()
        return total / len(masks)


def _require_same_shape_3d(pred: Tensor, target: Tensor) -> None:
    if pred.dim() != 3 or pred.shape != target.shape:
        raise ValueError(f"expected two (N, P, D) tensors of the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
