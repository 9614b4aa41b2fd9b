"""SwAV: the swapped-prediction loss against the reference code's loops, prototype
normalisation and freezing, the queue joining Sinkhorn, and a run with its queue that resumes
exactly. What every method keeps (an exact resume without the queue, training on a ViT) is in
test_method_contract.py."""

import math

import pytest
import torch
from torch import nn

from ssl_engine import losses
from ssl_engine.methods.swav import SwAV, SwAVParams, swapped_prediction_loss
from ssl_engine.train import Trainer
from ssl_engine.checkpoint import load_checkpoint
from tests.helpers import assert_same_state, stopped_run, tiny_config

SMALL = ["method.hidden_dim=64", "method.projection_dim=16", "method.num_prototypes=12"]


class TinyBackbone(nn.Sequential):
    """Conv + global pool: any image size in, 8 features out."""

    def __init__(self):
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 8


def make_swav(**overrides):
    torch.manual_seed(0)
    params = SwAVParams(**{"hidden_dim": 32, "projection_dim": 8, "num_prototypes": 5, **overrides})
    return SwAV(TinyBackbone(), params, total_steps=100)


def multi_crop(batch=8, local=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return ([torch.randn(batch, 3, 16, 16, generator=generator) for _ in range(2)]
            + [torch.randn(batch, 3, 8, 8, generator=generator) for _ in range(local)])


def test_swapped_prediction_loss_matches_the_reference_loops():
    generator = torch.Generator().manual_seed(0)
    codes = [torch.softmax(torch.randn(4, 6, generator=generator) * 3, dim=1) for _ in range(2)]
    codes[0][0] = torch.tensor([1.0, 0, 0, 0, 0, 0])  # exact zeros in a code are fine
    scores = [torch.randn(4, 6, generator=generator) for _ in range(4)]  # 2 global + 2 local views
    temperature = 0.1
    expected = 0.0
    for i, q in enumerate(codes):  # main_swav.py: subloss over the other views, / (views - 1), / codes
        subloss = 0.0
        for v in range(len(scores)):
            if v != i:
                p = torch.softmax(scores[v].double() / temperature, dim=1)
                subloss -= torch.mean(torch.sum(q.double() * torch.log(p), dim=1))
        expected += subloss / (len(scores) - 1)
    expected /= len(codes)
    assert swapped_prediction_loss(codes, scores, temperature).item() == pytest.approx(expected.item(), rel=1e-5)


def test_forward_normalises_prototypes_and_reports_usage_and_embeddings():
    method = make_swav()
    with torch.no_grad():
        method.prototypes.weight.mul_(3.0)
    output = method(multi_crop(batch=8, local=2), step=0)
    assert torch.allclose(method.prototypes.weight.norm(dim=1), torch.ones(5), atol=1e-6)
    assert torch.isfinite(output.loss) and output.loss.requires_grad
    assert set(output.terms) == {"swapped prediction", "queue fill"} and output.terms["queue fill"] == 0
    z1, z2 = output.embeddings
    assert z1.shape == z2.shape == (8, 8) and torch.allclose(z1.norm(dim=1), torch.ones(8), atol=1e-5)
    usage = method.histograms(output)["prototype usage"]
    assert usage.shape == (5,) and usage.sum() == 16  # each global view of each image once
    with pytest.raises(ValueError, match="at least 2 views"):
        method(multi_crop()[:1], step=0)


def test_prototypes_get_a_zero_gradient_while_frozen_and_a_real_one_after():
    method = make_swav(freeze_prototypes_iters=2)
    for step, frozen in ((1, True), (2, False)):
        method.zero_grad()
        method(multi_crop(), step=step).loss.backward()
        prototypes = method.prototypes.weight.grad
        assert prototypes is not None and (prototypes.abs().sum() == 0) == frozen, step
        assert method.projector[0].weight.grad.abs().sum() > 0


def test_queue_fills_from_its_epoch_then_joins_sinkhorn_and_only_the_batch_codes_are_kept(monkeypatch):
    batch, length = 8, 12
    method = make_swav(queue_length=length, epoch_queue_starts=1)
    calls = []
    real_sinkhorn = losses.sinkhorn

    def recording_sinkhorn(scores, epsilon, iterations):
        codes = real_sinkhorn(scores, epsilon, iterations)
        calls.append((scores.clone(), codes))
        return codes

    monkeypatch.setattr(losses, "sinkhorn", recording_sinkhorn)
    method.before_epoch(0, None)
    assert method(multi_crop(batch, seed=1), step=0).terms["queue fill"] == 0  # not started yet
    method.before_epoch(1, None)
    fills = [method(multi_crop(batch, seed=s), step=s).terms["queue fill"].item() for s in (2, 3)]
    assert fills == [pytest.approx(8 / 12), 1.0]
    assert [len(scores) for scores, _ in calls] == [batch] * 6  # the queue is used once full
    assert torch.allclose(method.queue.norm(dim=2), torch.ones(2, length), atol=1e-5)

    calls.clear()
    queue = method.queue.clone()
    views = multi_crop(batch, seed=4)
    output = method(views, step=4)
    assert [len(scores) for scores, _ in calls] == [length + batch] * 2
    for i, (scores, _) in enumerate(calls):  # the queued projections' scores come first
        assert torch.allclose(scores[:length], queue[i] @ method.prototypes.weight.T, atol=1e-6)
    # the loss uses the batch's rows of the codes: recompute it from them (BatchNorm in train
    # mode gives the same projections for the same batch)
    with torch.no_grad():
        scores = list((method._project(views) @ method.prototypes.weight.T).split(batch))
        expected = swapped_prediction_loss([codes[-batch:] for _, codes in calls], scores, method.params.temperature)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_small_cnn_run_with_queue_resumes_to_the_same_state_as_an_uninterrupted_one(tmp_path):
    overrides = [*SMALL, "method.queue_length=40", "method.epoch_queue_starts=1", "method.freeze_prototypes_iters=3"]
    straight = Trainer(tiny_config(tmp_path / "a", "swav", *overrides, epochs=2, count=100, batch=16))
    assert math.isfinite(straight.run()["final_loss"])

    first, summary = stopped_run(tiny_config(tmp_path / "b", "swav", *overrides, epochs=2, count=100, batch=16),
                                 at_step=7)
    assert summary["steps"] == 7  # stopped inside epoch 1, the queue 32/40 full
    assert load_checkpoint(first.run_dir)["method"]["queue_filled"] == 32
    resumed = Trainer(tiny_config(tmp_path / "b", "swav", *overrides, epochs=2, count=100, batch=16),
                      resume=first.run_dir)
    assert resumed.run()["steps"] == 10
    a, b = load_checkpoint(straight.run_dir)["method"], load_checkpoint(first.run_dir)["method"]
    assert a["queue_filled"] == 40  # full from the third step of epoch 1, used in its last two
    assert "prototypes.weight" in a
    assert_same_state(a, b)
