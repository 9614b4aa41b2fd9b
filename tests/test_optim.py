"""Optimisers and schedules: LARS against a hand computation, no decay or adaptation on biases
and norm layers, fixed-rate groups, warm-up then cosine."""

import math

import pytest
import torch
from torch import nn

from ssl_engine.config import OptimConfig
from ssl_engine.train.optim import LARS, build_optimizer, set_learning_rate, set_weight_decay, split_decay_groups
from ssl_engine.models.ema import cosine_momentum
from ssl_engine.train.schedules import warmup_cosine


def test_warmup_then_cosine():
    peak, total, warmup = 2.0, 110, 10
    assert warmup_cosine(0, total, warmup, peak) == pytest.approx(0.2)
    assert warmup_cosine(9, total, warmup, peak) == pytest.approx(2.0)
    assert warmup_cosine(10, total, warmup, peak) == pytest.approx(2.0)
    assert warmup_cosine(60, total, warmup, peak) == pytest.approx(1.0)  # half way down the cosine
    assert warmup_cosine(110, total, warmup, peak, floor=0.1) == pytest.approx(0.1)
    values = [warmup_cosine(s, total, warmup, peak) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert warmup_cosine(0, 10, 0, 1.0) == pytest.approx(1.0)


def test_lars_step_matches_a_hand_computation():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))        # ||w|| = 5
    w.grad = torch.tensor([0.6, 0.8])
    b = nn.Parameter(torch.tensor([1.0]))
    b.grad = torch.tensor([0.5])
    lr, wd, eta = 0.1, 0.01, 0.001
    opt = LARS([{"params": [w]}, {"params": [b], "lars_exclude": True, "weight_decay": 0.0}],
               lr=lr, weight_decay=wd, momentum=0.9, eta=eta)
    opt.step()
    update = torch.tensor([0.6, 0.8]) + wd * torch.tensor([3.0, 4.0])
    trust = eta * 5.0 / update.norm()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - lr * trust * update)
    assert torch.allclose(b.detach(), torch.tensor([1.0 - lr * 0.5]))  # plain SGD, no decay, no trust ratio
    # second step: momentum accumulates the scaled update
    w.grad = torch.tensor([0.6, 0.8])
    before = w.detach().clone()
    opt.step()
    update2 = torch.tensor([0.6, 0.8]) + wd * before
    trust2 = eta * before.norm() / update2.norm()
    buffer = 0.9 * trust * update + trust2 * update2
    assert torch.allclose(w.detach(), before - lr * buffer, atol=1e-7)


def test_biases_and_norm_layers_get_no_weight_decay():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    groups = split_decay_groups(model, [{"params": list(model.parameters())}])
    decayed = {id(p) for g in groups if g.get("weight_decay") is None for p in g["params"]}
    excluded = {id(p) for g in groups if g.get("weight_decay") == 0.0 for p in g["params"]}
    assert decayed == {id(model[0].weight), id(model[2].weight)}
    assert excluded == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[2].bias)}
    for name in ("sgd", "adamw", "lars"):
        opt = build_optimizer(model, [{"params": list(model.parameters())}], OptimConfig(name=name, weight_decay=0.1), 0.5)
        by_param = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
        assert by_param[id(model[1].weight)] == 0.0 and by_param[id(model[0].weight)] == 0.1


def test_fixed_rate_groups_keep_the_peak_rate():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    groups = [{"params": list(model[0].parameters())}, {"params": list(model[1].parameters()), "fixed_lr": True}]
    opt = build_optimizer(model, groups, OptimConfig(name="sgd"), 0.05)
    set_learning_rate(opt, 0.01, 0.05)
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rates[id(model[0].weight)] == 0.01 and rates[id(model[1].weight)] == 0.05
    assert not math.isnan(rates[id(model[1].bias)])


def test_bias_lr_ratio_scales_only_biases_and_norm_layers():
    # Barlow Twins' code: weights at 0.2, biases and BatchNorm at 0.0048 (ratio 0.024)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    opt = build_optimizer(model, [{"params": list(model.parameters())}], OptimConfig(name="lars", bias_lr_ratio=0.024), 0.2)
    set_learning_rate(opt, 0.1, 0.2)
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rates[id(model[0].weight)] == pytest.approx(0.1)
    for p in (model[0].bias, model[1].weight, model[1].bias):
        assert rates[id(p)] == pytest.approx(0.1 * 0.024)


def test_cosine_weight_decay_ramp_reaches_only_the_decayed_groups():
    assert cosine_momentum(0, 100, 0.04, 0.4) == pytest.approx(0.04)
    assert cosine_momentum(50, 100, 0.04, 0.4) == pytest.approx(0.22)
    assert cosine_momentum(100, 100, 0.04, 0.4) == pytest.approx(0.4)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
    for name in ("sgd", "adamw", "lars"):
        opt = build_optimizer(model, [{"params": list(model.parameters())}], OptimConfig(name=name, weight_decay=0.04), 0.1)
        set_weight_decay(opt, 0.3)
        by_param = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
        assert by_param[id(model[0].weight)] == 0.3
        assert by_param[id(model[0].bias)] == by_param[id(model[1].weight)] == 0.0


def test_adamw_takes_its_second_moment_decay_from_the_config():
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, [{"params": list(model.parameters())}], OptimConfig(name="adamw", beta2=0.95), 1e-3)
    assert all(group["betas"] == (0.9, 0.95) for group in opt.param_groups)
