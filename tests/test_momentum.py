"""The momentum-target helper every EMA method shares: frozen copies, the EMA update of parameters
and buffers, and the three momentum schedules."""

import math

import pytest
import torch
from torch import nn

from ssl_engine.models.ema import MomentumTargets, cosine_momentum, linear_momentum


def network(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_a_copy_is_frozen_equal_and_separate():
    online = network()
    targets = MomentumTargets(0.9)
    target = targets.copy(online)
    assert target is not online and all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    for (name, a), (_, b) in zip(online.state_dict().items(), target.state_dict().items()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name


def test_update_moves_every_target_parameter_towards_its_online_one_and_copies_buffers():
    online, other = network(0), nn.Linear(2, 2)
    targets = MomentumTargets(0.9, schedule="constant")
    target, other_target = targets.copy(online), targets.copy(other)
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in (*online.parameters(), *other.parameters()):
            p.add_(1.0)
    online.train()(torch.randn(8, 4))                   # new BatchNorm running statistics
    assert targets.update(step=3, total_steps=10) == pytest.approx(0.9, abs=1e-12)
    for old, new, now in zip(before, target.parameters(), online.parameters()):
        assert torch.allclose(new, 0.9 * old + 0.1 * now, atol=1e-6)
    for a, b in zip(target.buffers(), online.buffers()):
        assert torch.equal(a, b)
    assert torch.allclose(other_target.weight, other.weight - 0.9, atol=1e-6)  # every pair is updated


@pytest.mark.parametrize("base", [0.99, 0.996])
def test_the_cosine_schedule_rises_from_its_base_to_one(base):
    targets = MomentumTargets(base)
    assert targets.momentum(0, 100) == pytest.approx(base, abs=1e-12)
    assert targets.momentum(50, 100) == pytest.approx((base + 1) / 2, abs=1e-12)
    assert targets.momentum(25, 100) == pytest.approx(1 - (1 - base) * (math.cos(math.pi / 4) + 1) / 2, abs=1e-12)
    assert targets.momentum(100, 100) == pytest.approx(1.0, abs=1e-12)
    assert targets.momentum(200, 100) == pytest.approx(1.0, abs=1e-12)
    assert targets.momentum(30, 100) == pytest.approx(cosine_momentum(30, 100, base=base), abs=1e-12)
    # the run's length comes with each call: a time budget sets it after the method is built
    assert targets.momentum(50, 200) == pytest.approx(targets.momentum(25, 100), abs=1e-12)


def test_the_linear_schedule_reaches_one_at_its_horizon_and_stays():
    targets = MomentumTargets(0.996, schedule="linear")
    assert targets.momentum(0, 10) == pytest.approx(0.996, abs=1e-12)
    assert targets.momentum(5, 10) == pytest.approx(0.998, abs=1e-12)
    assert targets.momentum(10, 10) == pytest.approx(1.0, abs=1e-12)
    assert targets.momentum(12, 10) == pytest.approx(1.0, abs=1e-12)
    late = MomentumTargets(0.9, schedule="linear", horizon=1.25)   # MSN's: 1 at 1.25 x the run
    assert late.momentum(10, 10) == pytest.approx(0.9 + 0.1 * 10 / 12.5, abs=1e-12) and late.momentum(10, 10) < 1
    assert late.momentum(13, 10) == pytest.approx(1.0, abs=1e-12)
    assert late.momentum(7, 10) == pytest.approx(linear_momentum(7, 12.5, 0.9), abs=1e-12)


def test_the_constant_schedule_keeps_its_base_and_a_wrong_schedule_is_refused():
    targets = MomentumTargets(0.99, schedule="constant")
    assert [targets.momentum(step, 10) for step in (0, 5, 10, 20)] == pytest.approx([0.99] * 4, abs=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        MomentumTargets(0.99, schedule="exponential")


def test_at_momentum_one_the_targets_stay_put():
    online = network()
    targets = MomentumTargets(0.5)
    target = targets.copy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.mul_(3.0)
    before = [p.clone() for p in target.parameters()]
    assert targets.update(step=10, total_steps=10) == pytest.approx(1.0, abs=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))
