"""SimCLR as its reference code has it (both loss directions summed, a BatchNorm that scales but
does not shift the projector's output), and the similarity heatmap every method shows."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_engine import losses
from ssl_engine.methods.base import MATRIX_DIMS, StepOutput
from ssl_engine.methods.simclr import SimCLR, SimCLRParams
from ssl_engine.models.backbones import build_backbone
from ssl_engine.models.batch_norm import synchronise_batch_norm
from ssl_engine.models.heads import ScaledBatchNorm1d


def make_method(**params):
    torch.manual_seed(0)
    params = SimCLRParams(**{"hidden_dim": 32, "projection_dim": 16, **params})
    return SimCLR(build_backbone("small_cnn", image_size=32), params, total_steps=10)


def reference_loss(z1, z2, temperature):
    """google-research/simclr's add_contrastive_loss, written out: loss_a + loss_b, each the mean
    over the N anchors of one view of the cross-entropy against the other view's N embeddings and
    its own view's N - 1 others."""
    h1, h2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = len(h1)
    self_mask = torch.eye(n, dtype=torch.bool)
    logits_aa = (h1 @ h1.T / temperature).masked_fill(self_mask, -1e9)
    logits_bb = (h2 @ h2.T / temperature).masked_fill(self_mask, -1e9)
    logits_ab, logits_ba = h1 @ h2.T / temperature, h2 @ h1.T / temperature
    labels = torch.arange(n)
    loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], dim=1), labels)
    loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], dim=1), labels)
    return loss_a + loss_b


def test_loss_is_the_sum_of_both_directions_as_in_the_reference():
    method = make_method(temperature=0.5)
    views = [torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)]
    output = method(views, step=0)
    with torch.no_grad():
        z1, z2 = (method.projector(method.backbone(v)) for v in views)
    assert output.loss.item() == pytest.approx(reference_loss(z1, z2, 0.5).item(), rel=1e-5)
    assert output.loss.item() == pytest.approx(2 * losses.info_nce(z1, z2, 0.5).item(), rel=1e-5)


def test_projector_ends_in_a_batch_norm_that_scales_but_does_not_shift():
    method = make_method()
    projector = method.projector
    linears = [m for m in projector if isinstance(m, nn.Linear)]
    assert len(linears) == 2 and all(m.bias is None for m in linears)  # each Linear feeds a BatchNorm
    last = projector[-1]
    assert isinstance(last, ScaledBatchNorm1d) and not last.norm.affine
    assert [name for name, _ in last.named_parameters()] == ["weight"] and last.weight.shape == (16,)
    output = method([torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)], step=0)
    output.loss.backward()
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    # output = scale * standardised input, per feature
    x = torch.randn(8, 16)
    with torch.no_grad():
        last.weight.copy_(torch.linspace(0.5, 2.0, 16))
    expected = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5) * last.weight
    assert torch.allclose(last(x), expected, atol=1e-5)
    # synchronised over processes like any BatchNorm, keeping its scale
    scale = last.weight
    synchronise_batch_norm(method, torch.device("cpu"))
    assert type(method.projector[-1].norm) is not nn.BatchNorm1d and method.projector[-1].weight is scale


def test_similarity_is_the_cosine_of_the_whole_embeddings_when_they_are_wider_than_shown():
    torch.manual_seed(0)
    width = MATRIX_DIMS + 100
    z1, z2 = torch.randn(300, width), torch.randn(300, width)
    z2[:, MATRIX_DIMS:] *= 5  # the dimensions past those drawn weigh in each norm
    shown = make_method(projection_dim=width).matrices(StepOutput(torch.zeros(()), {}, (z1, z2)))
    n = MATRIX_DIMS
    cosine = F.cosine_similarity(z1[:n, None, :], z2[None, :n, :], dim=2)  # pair by pair, whole vectors
    assert shown["similarity"].shape == (n, n)
    assert torch.allclose(shown["similarity"], cosine, atol=1e-5)
    # the cross-correlation stays the exact top-left block of the full matrix
    full = losses.cross_correlation(z1, z2)
    assert shown["cross-correlation"].shape == (n, n)
    assert torch.allclose(shown["cross-correlation"], full[:n, :n], atol=1e-5)
