"""The diagnostics against hand computations: RankMe of a known spectrum, the Gaussian MI of
correlated Gaussians (closed form), the InfoNCE bound at perfect, no and wrong alignment,
alignment, uniformity and the spread on a few points by hand, and a collapse without NaN."""

import math

import pytest
import torch

from ssl_engine import diagnostics


def with_spectrum(singular_values, rows=50, seed=0) -> torch.Tensor:
    """(rows, D) U diag(s) V^T with U's columns and V orthonormal: exactly the singular values s."""
    generator = torch.Generator().manual_seed(seed)
    d = len(singular_values)
    u, _ = torch.linalg.qr(torch.randn(rows, d, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ v.T


def test_rankme_of_a_known_spectrum_is_the_exponential_of_its_entropy():
    # s = (4, 2, 1, 1): p = (1/2, 1/4, 1/8, 1/8), entropy 1.75 log 2, so RankMe = 2^1.75
    assert diagnostics.rankme(with_spectrum([4.0, 2.0, 1.0, 1.0])) == pytest.approx(2 ** 1.75, rel=1e-5)
    assert diagnostics.rankme(with_spectrum([3.0] * 6)) == pytest.approx(6.0, rel=1e-5)
    # two directions only: the zero singular values add only their epsilon's share
    assert diagnostics.rankme(with_spectrum([5.0, 5.0, 0.0, 0.0, 0.0])) == pytest.approx(2.0, rel=1e-4)
    # the epsilon itself, as the paper adds it: p = (3/4 + e, 1/4 + e)
    p = torch.tensor([0.75, 0.25], dtype=torch.float64) + 1e-7
    assert diagnostics.rankme(with_spectrum([3.0, 1.0])) == pytest.approx(float(torch.exp(-(p * p.log()).sum())),
                                                                          rel=1e-9)


def correlated_gaussians(n, d, rho, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(0, I) and y = rho x + sqrt(1 - rho^2) e: dimension k of y correlated rho with x's."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    noise = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return x, rho * x + math.sqrt(1 - rho ** 2) * noise


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.95])
def test_gaussian_mi_of_correlated_gaussians_is_the_closed_form(rho):
    x, y = correlated_gaussians(20000, 4, rho)
    assert diagnostics.gaussian_mi(x, y) == pytest.approx(-(4 / 2) * math.log(1 - rho ** 2), rel=0.03)


def test_gaussian_mi_ignores_how_each_view_is_scaled_and_mixed():
    # mutual information is invariant to an invertible map of each view; whitening must undo it
    x, y = correlated_gaussians(20000, 4, 0.8)
    generator = torch.Generator().manual_seed(1)
    mix_x = torch.randn(4, 4, generator=generator, dtype=torch.float64) + 2 * torch.eye(4, dtype=torch.float64)
    mix_y = torch.diag(torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64))
    assert diagnostics.gaussian_mi(x @ mix_x + 5.0, y @ mix_y) == pytest.approx(diagnostics.gaussian_mi(x, y), rel=0.02)


def test_gaussian_mi_of_independent_views_is_near_zero_even_above_the_sample_count():
    x, y = correlated_gaussians(20000, 4, 0.0)
    assert 0.0 <= diagnostics.gaussian_mi(x, y) < 0.01
    # 300 dimensions from 200 samples: singular covariances, yet a small, finite value (at most
    # k^2 / (2N) nats on its k = 200 // 16 = 12 directions: 0.36), where whitening all 300 would
    # make any two views look perfectly correlated
    generator = torch.Generator().manual_seed(2)
    wide_x, wide_y = (torch.randn(200, 300, generator=generator) for _ in range(2))
    assert 0.0 <= diagnostics.gaussian_mi(wide_x, wide_y) < 0.6
    same = diagnostics.gaussian_mi(wide_x, wide_x)
    assert math.isfinite(same) and same > 10 * diagnostics.gaussian_mi(wide_x, wide_y)


def test_infonce_bound_reaches_log_n_at_perfect_alignment_of_separated_pairs():
    n, temperature = 8, 0.1
    z = torch.eye(n)  # every pair the same vector, orthogonal to every other pair
    bound, ceiling = diagnostics.infonce_bound(z, 2.0 * z, temperature)
    assert ceiling == pytest.approx(math.log(n), rel=1e-12)
    # each row: positive logit 1/T, the n - 1 others 0, so L = log(1 + (n - 1) e^{-1/T})
    assert bound == pytest.approx(math.log(n) - math.log(1 + (n - 1) * math.exp(-1 / temperature)), rel=1e-9)
    assert math.log(n) - bound < 1e-3


def test_infonce_bound_is_zero_without_alignment_and_negative_when_pairs_are_wrong():
    n, temperature = 8, 0.1
    first = torch.eye(2 * n)[:n]
    unrelated = torch.eye(2 * n)[n:]  # orthogonal to every row of first: every logit 0, L = log n
    assert diagnostics.infonce_bound(first, unrelated, temperature)[0] == pytest.approx(0.0, abs=1e-12)
    # each row's partner is another's: the positive logit 0, one negative 1/T, n - 2 others 0
    shifted = torch.roll(first, 1, dims=0)
    expected = math.log(n) - math.log(math.exp(1 / temperature) + n - 1)
    assert diagnostics.infonce_bound(first, shifted, temperature)[0] == pytest.approx(expected, rel=1e-9)


def test_alignment_by_hand():
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    second = torch.tensor([[3.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])  # normalised: same, a right angle, antipodal
    # squared distances of the unit vectors: 0, 2, 4
    assert diagnostics.alignment(first, second) == pytest.approx(2.0, rel=1e-12)
    assert diagnostics.alignment(first, second, alpha=1) == pytest.approx((math.sqrt(2) + 2) / 3, rel=1e-12)


def test_uniformity_by_hand():
    # a square on the unit circle (one corner given at length 2: rows are normalised first):
    # 4 sides (d^2 = 2), 2 diagonals (d^2 = 4)
    square = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -2.0]])
    expected = math.log((4 * math.exp(-2 * 2) + 2 * math.exp(-2 * 4)) / 6)
    assert diagnostics.uniformity(square) == pytest.approx(expected, rel=1e-12)
    # an equilateral triangle: every d^2 = 3, so log e^{-t 3}
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
    triangle = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert diagnostics.uniformity(triangle, t=1.5) == pytest.approx(-4.5, rel=1e-9)


def test_embedding_std_by_hand():
    # the four unit vectors +-e1, +-e2: each dimension takes 1, -1, 0, 0: std sqrt(1/2) = 1 / sqrt(2)
    cross = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    spread, reference = diagnostics.embedding_std(cross)
    assert spread == pytest.approx(math.sqrt(0.5), rel=1e-12) and reference == pytest.approx(1 / math.sqrt(2))
    # e1 and e2 (scaled): each dimension takes 1 and 0, std 1/2
    assert diagnostics.embedding_std(torch.tensor([[2.0, 0.0], [0.0, 5.0]]))[0] == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("row", [[0.5, -2.0, 1.0, 3.0, 0.25, 1.5], [0.0] * 6])
def test_a_collapse_gives_the_collapse_values_without_nan(row):
    collapsed = torch.tensor([row] * 64)
    bound, ceiling = diagnostics.infonce_bound(collapsed, collapsed, 0.1)
    values = {"infonce_bound": bound, "gaussian_mi": diagnostics.gaussian_mi(collapsed, collapsed),
              "rankme": diagnostics.rankme(collapsed), "embedding_std": diagnostics.embedding_std(collapsed)[0],
              "alignment": diagnostics.alignment(collapsed, collapsed), "uniformity": diagnostics.uniformity(collapsed)}
    assert all(math.isfinite(v) for v in values.values()), values
    assert values["infonce_bound"] == pytest.approx(0.0, abs=1e-9) and ceiling == pytest.approx(math.log(64))
    assert values["gaussian_mi"] == pytest.approx(0.0, abs=1e-12)
    assert values["rankme"] == pytest.approx(1.0, abs=1e-3)
    assert values["embedding_std"] == pytest.approx(0.0, abs=1e-9)
    assert values["alignment"] == pytest.approx(0.0, abs=1e-12)
    assert values["uniformity"] == pytest.approx(0.0, abs=1e-12)


def test_one_collapsed_view_shares_nothing_with_the_other():
    x, _ = correlated_gaussians(500, 4, 0.0)
    assert diagnostics.gaussian_mi(x, torch.ones_like(x)) == pytest.approx(0.0, abs=1e-12)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        diagnostics.alignment(torch.ones(4, 3), torch.ones(5, 3))
    with pytest.raises(ValueError, match="N >= 2"):
        diagnostics.uniformity(torch.ones(1, 3))
