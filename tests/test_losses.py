"""Each loss against an independent hand computation (numpy, explicit loops, float64) and
against the limits the papers' reasoning predicts."""

import math

import numpy as np
import pytest
import torch

from ssl_engine import losses

from tests.helpers import reference_sinkhorn


def random_pair(batch_size=3, dimension=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(batch_size, dimension, generator=generator)
    z2 = torch.randn(batch_size, dimension, generator=generator)
    return z1, z2


def unit_rows(array):
    return array / np.linalg.norm(array, axis=1, keepdims=True)


# ---------------------------------------------------------------- hand computations


def hand_nt_xent(z1, z2, temperature):
    views = unit_rows(np.concatenate([z1.numpy(), z2.numpy()]).astype(np.float64))
    count = len(views)
    half = count // 2
    total = 0.0
    for anchor in range(count):
        positive = (anchor + half) % count
        numerator = math.exp(views[anchor] @ views[positive] / temperature)
        denominator = sum(
            math.exp(views[anchor] @ views[other] / temperature)
            for other in range(count)
            if other != anchor
        )
        total += -math.log(numerator / denominator)
    return total / count


def hand_moco(q, k, queue, temperature):
    q = unit_rows(q.numpy().astype(np.float64))
    k = unit_rows(k.numpy().astype(np.float64))
    queue = queue.numpy().astype(np.float64)
    total = 0.0
    for n in range(len(q)):
        logits = [q[n] @ k[n] / temperature] + [q[n] @ key / temperature for key in queue]
        total += -logits[0] + math.log(sum(math.exp(logit) for logit in logits))
    return total / len(q)


def hand_barlow_terms(z1, z2):
    def standardize(z):
        z = z.numpy().astype(np.float64)
        return (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + 1e-5)  # numpy var is biased

    a, b = standardize(z1), standardize(z2)
    batch_size, dimension = a.shape
    correlation = np.zeros((dimension, dimension))
    for i in range(dimension):
        for j in range(dimension):
            correlation[i, j] = sum(a[n, i] * b[n, j] for n in range(batch_size)) / batch_size
    on_diagonal = sum((1 - correlation[i, i]) ** 2 for i in range(dimension))
    off_diagonal = sum(
        correlation[i, j] ** 2 for i in range(dimension) for j in range(dimension) if i != j
    )
    return on_diagonal, off_diagonal, correlation


def hand_vicreg_terms(z1, z2):
    a = z1.numpy().astype(np.float64)
    b = z2.numpy().astype(np.float64)
    batch_size, dimension = a.shape
    invariance = ((a - b) ** 2).mean()

    def variance_hinge(z):
        stds = np.sqrt(z.var(axis=0, ddof=1) + 1e-4)
        return np.mean([max(0.0, 1 - s) for s in stds])

    def covariance_penalty(z):
        centered = z - z.mean(axis=0)
        total = 0.0
        for i in range(dimension):
            for j in range(dimension):
                if i != j:
                    covariance = sum(centered[n, i] * centered[n, j] for n in range(batch_size))
                    total += (covariance / (batch_size - 1)) ** 2
        return total / dimension

    variance = (variance_hinge(a) + variance_hinge(b)) / 2
    covariance = covariance_penalty(a) + covariance_penalty(b)
    return invariance, variance, covariance


# ---------------------------------------------------------------- info_nce


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_info_nce_matches_hand_computation(temperature):
    z1, z2 = random_pair(batch_size=3, dimension=2)
    loss = losses.info_nce(z1, z2, temperature)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(hand_nt_xent(z1, z2, temperature), rel=1e-5)


def test_info_nce_normalises_its_inputs():
    z1, z2 = random_pair(batch_size=4, dimension=5)
    scaled = losses.info_nce(3.0 * z1, 0.2 * z2, 0.5)
    assert scaled.item() == pytest.approx(losses.info_nce(z1, z2, 0.5).item(), rel=1e-5)


def test_info_nce_is_lower_for_aligned_pairs_than_for_random_pairs():
    z1, z2 = random_pair(batch_size=16, dimension=8)
    assert losses.info_nce(z1, z1.clone(), 0.5) < losses.info_nce(z1, z2, 0.5)


def test_info_nce_tends_to_zero_for_aligned_orthogonal_samples_at_low_temperature():
    batch_size = 4
    z = torch.eye(batch_size)
    previous = math.inf
    for temperature in (1.0, 0.5, 0.2, 0.1, 0.05):
        loss = losses.info_nce(z, z.clone(), temperature).item()
        # the positive scores 1 / T, the 2N - 2 negatives 0
        expected = math.log(1 + (2 * batch_size - 2) * math.exp(-1 / temperature))
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-6)
        assert loss < previous
        previous = loss
    assert previous < 1e-6


def test_info_nce_equals_log_2n_minus_1_when_every_embedding_is_the_same():
    batch_size = 5
    z = torch.tensor([[0.3, -1.2, 2.0]]).repeat(batch_size, 1)
    loss = losses.info_nce(z, z.clone(), 0.2)
    assert loss.item() == pytest.approx(math.log(2 * batch_size - 1), rel=1e-5)


# ---------------------------------------------------------------- info_nce_with_queue


def test_info_nce_with_queue_matches_hand_cross_entropy():
    q, k = random_pair(batch_size=3, dimension=2, seed=1)
    negatives = torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    queue = torch.nn.functional.normalize(negatives, dim=1)
    loss = losses.info_nce_with_queue(q, k, queue, 0.2)
    assert loss.item() == pytest.approx(hand_moco(q, k, queue, 0.2), rel=1e-5)


def test_info_nce_with_queue_tends_to_zero_with_aligned_keys_and_an_orthogonal_queue():
    # queries live in the first four dimensions, the queue's keys in the last four
    queries = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    q = torch.cat([queries, torch.zeros(6, 4)], dim=1)
    queue = torch.cat([torch.zeros(4, 4), torch.eye(4)], dim=1)
    for temperature in (0.5, 0.2, 0.05):
        loss = losses.info_nce_with_queue(q, 2.0 * q, queue, temperature).item()
        expected = math.log(1 + len(queue) * math.exp(-1 / temperature))
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert loss < 1e-6


def test_info_nce_with_queue_is_zero_with_an_empty_queue():
    q, k = random_pair(batch_size=3, dimension=4)
    assert losses.info_nce_with_queue(q, k, torch.empty(0, 4), 0.2).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- barlow_twins


def test_barlow_twins_terms_and_cross_correlation_match_hand_computation():
    z1, z2 = random_pair(batch_size=3, dimension=2, seed=4)
    on_diagonal, off_diagonal = losses.barlow_twins_terms(z1, z2)
    hand_on, hand_off, hand_correlation = hand_barlow_terms(z1, z2)
    np.testing.assert_allclose(
        losses.cross_correlation(z1, z2).numpy(), hand_correlation, rtol=1e-5, atol=1e-6
    )
    assert on_diagonal.item() == pytest.approx(hand_on, rel=1e-5, abs=1e-6)
    assert off_diagonal.item() == pytest.approx(hand_off, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("batch_size,dimension", [(3, 5), (6, 2)])
def test_barlow_and_vicreg_terms_match_hand_computation_with_fewer_rows_than_dimensions(batch_size, dimension):
    # fewer rows than dimensions take the (N, N) Gram matrices instead of the (D, D) matrix
    z1, z2 = random_pair(batch_size=batch_size, dimension=dimension, seed=11)
    hand_on, hand_off, _ = hand_barlow_terms(z1, z2)
    on_diagonal, off_diagonal = losses.barlow_twins_terms(z1, z2)
    assert on_diagonal.item() == pytest.approx(hand_on, rel=1e-5, abs=1e-6)
    assert off_diagonal.item() == pytest.approx(hand_off, rel=1e-4, abs=1e-5)
    for term, hand_term in zip(losses.vicreg_terms(z1, z2), hand_vicreg_terms(z1, z2)):
        assert term.item() == pytest.approx(hand_term, rel=1e-4, abs=1e-5)


def test_off_diagonal_sums_give_the_full_matrix_gradients():
    # the Gram form's gradient is the (D, D) form's: both against autograd through the matrix
    z1, z2 = (z.double().requires_grad_() for z in random_pair(batch_size=4, dimension=9, seed=12))
    off_mask = ~torch.eye(9, dtype=torch.bool)
    correlation = losses.cross_correlation(z1, z2)
    covariances = losses.covariance_matrix(z1), losses.covariance_matrix(z2)
    full_barlow = correlation[off_mask].pow(2).sum()
    full_covariance = sum(c[off_mask].pow(2).sum() for c in covariances) / 9
    for ours, full in ((losses.barlow_twins_terms(z1, z2)[1], full_barlow),
                       (losses.vicreg_terms(z1, z2)[2], full_covariance)):
        ours_grads = torch.autograd.grad(ours, (z1, z2))
        full_grads = torch.autograd.grad(full, (z1, z2))
        assert ours.item() == pytest.approx(full.item(), rel=1e-5)
        for mine, reference in zip(ours_grads, full_grads):
            np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lambd", [0.0, 5e-3, 1.0])
def test_barlow_twins_weights_the_off_diagonal_term_by_lambda(lambd):
    z1, z2 = random_pair(batch_size=8, dimension=4, seed=5)
    hand_on, hand_off, _ = hand_barlow_terms(z1, z2)
    loss = losses.barlow_twins(z1, z2, lambd)
    assert loss.item() == pytest.approx(hand_on + lambd * hand_off, rel=1e-5)


def test_barlow_twins_gives_the_dimension_for_constant_inputs():
    dimension = 4
    z = torch.full((8, dimension), 3.0)
    assert losses.barlow_twins(z, z.clone(), 5e-3).item() == pytest.approx(dimension, rel=1e-6)


def test_barlow_twins_on_diagonal_vanishes_for_identical_decorrelated_views():
    z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    on_diagonal, off_diagonal = losses.barlow_twins_terms(z, z.clone())
    assert on_diagonal.item() < 1e-8
    # zero in exact arithmetic; the sum of all squares less the diagonal's (2) leaves float32's
    # rounding of that sum
    assert off_diagonal.item() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(losses.cross_correlation(z, z.clone()).numpy(), np.eye(2), atol=1e-4)


# ---------------------------------------------------------------- vicreg


def test_vicreg_terms_match_hand_computation():
    z1, z2 = random_pair(batch_size=3, dimension=2, seed=6)
    for term, hand_term in zip(losses.vicreg_terms(z1, z2), hand_vicreg_terms(z1, z2)):
        assert term.item() == pytest.approx(hand_term, rel=1e-5, abs=1e-6)


def test_vicreg_is_the_weighted_sum_of_its_terms_with_paper_defaults():
    z1, z2 = random_pair(batch_size=8, dimension=4, seed=7)
    invariance, variance, covariance = hand_vicreg_terms(z1, z2)
    assert losses.vicreg(z1, z2).item() == pytest.approx(
        25.0 * invariance + 25.0 * variance + 1.0 * covariance, rel=1e-5
    )
    assert losses.vicreg(z1, z2, 1.0, 2.0, 3.0).item() == pytest.approx(
        invariance + 2.0 * variance + 3.0 * covariance, rel=1e-5
    )


def test_vicreg_invariance_is_zero_for_identical_branches():
    z1, _ = random_pair(batch_size=8, dimension=4)
    invariance, _, _ = losses.vicreg_terms(z1, z1.clone())
    assert invariance.item() == pytest.approx(0.0, abs=1e-12)


def test_vicreg_variance_is_0_99_for_collapsed_branches():
    z = torch.full((6, 3), -0.5)
    invariance, variance, covariance = losses.vicreg_terms(z, z.clone())
    assert variance.item() == pytest.approx(1 - math.sqrt(1e-4), abs=1e-6)
    assert invariance.item() == pytest.approx(0.0, abs=1e-12)
    assert covariance.item() == pytest.approx(0.0, abs=1e-12)


def test_covariance_matrix_and_penalty_on_a_tiny_example():
    # centred rows: (-2, 0), (0, -2), (2, 2) -> covariance [[8, 4], [4, 8]] / (3 - 1)
    z = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0]])
    np.testing.assert_allclose(
        losses.covariance_matrix(z).numpy(), [[4.0, 2.0], [2.0, 4.0]], atol=1e-6
    )
    # each branch: (2^2 + 2^2) / dimension 2 = 4; two branches: 8
    _, _, covariance = losses.vicreg_terms(z, z.clone())
    assert covariance.item() == pytest.approx(8.0, abs=1e-5)


def test_covariance_matrix_rejects_a_batch_of_one():
    with pytest.raises(ValueError):
        losses.covariance_matrix(torch.ones(1, 3))


# ---------------------------------------------------------------- negative_cosine


def test_negative_cosine_limits():
    p = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    assert losses.negative_cosine(p, 2.5 * p).item() == pytest.approx(-1.0, abs=1e-6)
    assert losses.negative_cosine(p, -p).item() == pytest.approx(1.0, abs=1e-6)
    orthogonal = torch.tensor([[2.0, -1.0, 0.0], [0.0, 1.0, 0.0]])
    assert losses.negative_cosine(p, orthogonal).item() == pytest.approx(0.0, abs=1e-6)


def test_negative_cosine_matches_hand_computation():
    p, z = random_pair(batch_size=3, dimension=2, seed=8)
    a, b = p.numpy().astype(np.float64), z.numpy().astype(np.float64)
    cosines = [a[n] @ b[n] / (np.linalg.norm(a[n]) * np.linalg.norm(b[n])) for n in range(3)]
    assert losses.negative_cosine(p, z).item() == pytest.approx(-np.mean(cosines), rel=1e-5)


# ---------------------------------------------------------------- all losses


def all_losses(a, b):
    queue = torch.nn.functional.normalize(torch.randn(5, a.shape[1]), dim=1)
    return {
        "info_nce": losses.info_nce(a, b, 0.2),
        "info_nce_with_queue": losses.info_nce_with_queue(a, b, queue, 0.2),
        "barlow_twins": losses.barlow_twins(a, b, 5e-3),
        "vicreg": losses.vicreg(a, b),
        "negative_cosine": losses.negative_cosine(a, b),
    }


def test_gradients_flow_to_both_inputs():
    z1, z2 = random_pair(batch_size=6, dimension=4)
    for name in all_losses(z1, z2):
        a = z1.clone().requires_grad_()
        b = z2.clone().requires_grad_()
        all_losses(a, b)[name].backward()
        for tensor in (a, b):
            assert tensor.grad is not None, name
            assert torch.isfinite(tensor.grad).all(), name
            assert tensor.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_a_float32_loss(dtype):
    z1, z2 = random_pair(batch_size=6, dimension=4)
    torch.manual_seed(0)
    reference = all_losses(z1.to(dtype).float(), z2.to(dtype).float())
    torch.manual_seed(0)
    for name, loss in all_losses(z1.to(dtype), z2.to(dtype)).items():
        assert loss.dtype == torch.float32, name
        assert loss.item() == pytest.approx(reference[name].item(), rel=1e-5, abs=1e-6), name


def test_losses_stay_float32_under_autocast():
    z1, z2 = random_pair(batch_size=6, dimension=4)
    torch.manual_seed(0)
    reference = all_losses(z1, z2)
    torch.manual_seed(0)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_autocast = all_losses(z1, z2)
    for name, loss in under_autocast.items():
        assert loss.dtype == torch.float32, name
        assert loss.item() == pytest.approx(reference[name].item(), rel=1e-5, abs=1e-6), name


def test_all_zero_embeddings_give_finite_losses_and_gradients():
    for name in all_losses(torch.zeros(4, 3), torch.zeros(4, 3)):
        a = torch.zeros(4, 3, requires_grad=True)
        b = torch.zeros(4, 3, requires_grad=True)
        loss = all_losses(a, b)[name]
        loss.backward()
        assert torch.isfinite(loss), name
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), name


# ---------------------------------------------------------------- DINO and Sinkhorn


def hand_dino(student, teacher, center, student_temp, teacher_temp):
    """Explicit loops in float64: cross-entropy of each teacher view against every other student view."""
    def softmax(row):
        e = np.exp(row - row.max())
        return e / e.sum()

    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        for j, s in enumerate(student):
            if i == j:
                continue
            loss = 0.0
            for n in range(len(t)):
                p_t = softmax((t[n] - center) / teacher_temp)
                log_p_s = np.log(softmax(s[n] / student_temp))
                loss += -(p_t * log_p_s).sum()
            total += loss / len(t)
            pairs += 1
    return total / pairs


def test_dino_loss_against_hand_computation():
    generator = torch.Generator().manual_seed(3)
    student = [torch.randn(4, 6, generator=generator, dtype=torch.float64) for _ in range(5)]
    teacher = [torch.randn(4, 6, generator=generator, dtype=torch.float64) for _ in range(2)]
    center = torch.randn(1, 6, generator=generator, dtype=torch.float64)
    got = losses.dino_loss(student, teacher, center, 0.1, 0.04)
    want = hand_dino([s.numpy() for s in student], [t.numpy() for t in teacher], center.numpy()[0], 0.1, 0.04)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_dino_loss_limits_and_gradients():
    # a student that copies a one-hot teacher exactly, at low temperature, has almost no loss
    target = torch.eye(4) * 10
    views = [target.clone().requires_grad_(True) for _ in range(3)]
    loss = losses.dino_loss(views, [target, target], torch.zeros(4), student_temp=0.01, teacher_temp=0.01)
    assert loss.item() < 1e-3
    # the teacher side gets no gradient; every student view does, even one never paired with itself
    teacher = [torch.randn(4, 4, requires_grad=True) for _ in range(2)]
    student = [torch.randn(4, 4, requires_grad=True) for _ in range(3)]
    losses.dino_loss(student, teacher, torch.zeros(4), 0.1, 0.04).backward()
    assert all(t.grad is None for t in teacher) and all(s.grad is not None for s in student)
    with pytest.raises(ValueError, match="two views"):
        losses.dino_loss([torch.randn(2, 3)], [torch.randn(2, 3)], torch.zeros(3), 0.1, 0.04)


def test_sinkhorn_matches_the_plain_iteration_and_has_the_right_sums():
    scores = torch.randn(48, 6, generator=torch.Generator().manual_seed(0)) * 0.3
    codes = losses.sinkhorn(scores, epsilon=0.05, iterations=3)
    assert torch.allclose(codes.double(), reference_sinkhorn(torch.exp(scores.double() / 0.05), 3), atol=1e-5)
    assert torch.allclose(codes.sum(dim=1), torch.ones(48), atol=1e-5)  # a distribution per sample
    balanced = losses.sinkhorn(scores, epsilon=0.05, iterations=200)
    assert torch.allclose(balanced.sum(dim=0), torch.full((6,), 48 / 6), atol=1e-3)  # equal shares


def test_sinkhorn_survives_peaked_scores_and_has_no_gradient():
    scores = (torch.randn(32, 8, generator=torch.Generator().manual_seed(1)) * 100).requires_grad_(True)
    codes = losses.sinkhorn(scores, epsilon=0.05, iterations=10)
    assert torch.isfinite(codes).all() and not codes.requires_grad
    assert torch.allclose(codes.sum(dim=1), torch.ones(32), atol=1e-5)


def test_moco_v3_contrastive_matches_a_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    keys = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # positives at rows 1 and 2
    temperature = 0.5
    # cosines of q0 with the keys: 0.6, 1, 0, -1; of q1: 0.8, 0, 1, 0
    row0 = -math.log(math.exp(1 / 0.5) / sum(math.exp(c / 0.5) for c in (0.6, 1, 0, -1)))
    row1 = -math.log(math.exp(1 / 0.5) / sum(math.exp(c / 0.5) for c in (0.8, 0, 1, 0)))
    expected = (row0 + row1) / 2 * (2 * temperature)
    assert losses.moco_v3_contrastive(q, keys, temperature, first_positive=1).item() == pytest.approx(expected, rel=1e-6)
    # the positive's place matters: with the wrong offset the loss is another number
    assert losses.moco_v3_contrastive(q, keys, temperature, first_positive=0).item() != pytest.approx(expected, rel=1e-3)


def test_moco_v3_contrastive_is_float32_from_half_precision_inputs():
    q, keys = torch.randn(4, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    loss = losses.moco_v3_contrastive(q, keys, 0.2)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(losses.moco_v3_contrastive(q.float(), keys.float(), 0.2).item(), rel=1e-6)


def test_standardise_patches_matches_a_hand_computation():
    patches = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0]]])        # (1, 2, 4)
    std = math.sqrt(5 / 3 + 1e-6)                        # unbiased variance of 1..4 is 5/3
    expected = torch.tensor([[[-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std], [0.0, 0.0, 0.0, 0.0]]])
    assert torch.allclose(losses.standardise_patches(patches), expected, atol=1e-6)
    mean, deviation = losses.patch_mean_std(patches)
    assert mean.shape == deviation.shape == (1, 2, 1)
    assert torch.allclose(mean.flatten(), torch.tensor([2.5, 2.0]))
    assert torch.allclose(deviation.flatten(), torch.tensor([std, 1e-3]), rtol=1e-5)   # a flat patch: sqrt(1e-6)
    # the moments it leaves: mean 0 and unbiased variance var / (var + 1e-6) in each patch
    x = torch.randn(3, 5, 12, generator=torch.Generator().manual_seed(0)) * 4 + 2
    out = losses.standardise_patches(x)
    assert torch.allclose(out.mean(dim=-1), torch.zeros(3, 5), atol=1e-5)
    variance = x.var(dim=-1)
    assert torch.allclose(out.var(dim=-1), variance / (variance + 1e-6), atol=1e-5)
    # a patch's brightness and contrast do not change it, and it undoes with its mean and deviation
    assert torch.allclose(losses.standardise_patches(3 * x + 7), out, atol=1e-4)
    mean, deviation = losses.patch_mean_std(x)
    assert torch.allclose(out * deviation + mean, x, atol=1e-5)


def test_masked_patch_mse_normalises_its_target_with_standardise_patches():
    generator = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 6, 12, generator=generator), torch.randn(2, 6, 12, generator=generator) * 3 + 1
    mask = torch.rand(2, 6, generator=generator) < 0.5
    assert torch.allclose(losses.masked_patch_mse(pred, target, mask),
                          losses.masked_patch_mse(pred, losses.standardise_patches(target), mask, normalize_target=False))
