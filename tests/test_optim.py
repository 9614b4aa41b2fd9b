"""Optimisers and schedules: LARS against a hand computation, no decay or adaptation on biases
and norm layers, fixed-rate groups, warm-up then cosine."""

import math

import pytest
import torch
from torch import nn

from ssl_engine.config import OptimConfig
from ssl_engine.train.optim import (LARS, build_optimizer, clip_gradients, set_learning_rate, set_weight_decay,
                                   split_decay_groups)
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


def _parameters_with_gradients():
    big = nn.Parameter(torch.zeros(2))
    big.grad = torch.tensor([3.0, 4.0])           # norm 5
    small = nn.Parameter(torch.zeros(2))
    small.grad = torch.tensor([0.6, 0.8])         # norm 1
    unused = nn.Parameter(torch.zeros(3))         # no gradient: left alone
    return big, small, unused


def test_per_parameter_clipping_matches_a_hand_computation():
    # DINO's and iBOT's clip_gradients: each gradient on its own, scaled by clip / (norm + 1e-6) below 1
    big, small, unused = _parameters_with_gradients()
    clip_gradients([big, small, unused], 3.0, "per_parameter")
    assert torch.allclose(big.grad, torch.tensor([3.0, 4.0]) * 3.0 / (5.0 + 1e-6))
    assert torch.equal(small.grad, torch.tensor([0.6, 0.8]))  # its norm is under the clip
    assert unused.grad is None
    # the global norm sqrt(26) passes 3 as well, so the global clip shortens both
    big, small, _ = _parameters_with_gradients()
    clip_gradients([big, small], 3.0, "global")
    scale = 3.0 / math.sqrt(26.0)
    assert torch.allclose(big.grad, torch.tensor([3.0, 4.0]) * scale, atol=1e-6)
    assert torch.allclose(small.grad, torch.tensor([0.6, 0.8]) * scale, atol=1e-6)
    # 0 turns clipping off in either mode
    big, _, _ = _parameters_with_gradients()
    clip_gradients([big], 0.0, "per_parameter")
    assert torch.equal(big.grad, torch.tensor([3.0, 4.0]))
    with pytest.raises(ValueError, match="per_parameter"):
        clip_gradients([big], 1.0, "elementwise")


def test_the_trainer_clips_in_the_configured_mode(tmp_path, monkeypatch):
    from ssl_engine.train import Trainer, trainer as trainer_module
    from tests.helpers import tiny_config

    calls = []

    def recording_clip(parameters, max_norm, mode="global"):
        parameters = list(parameters)
        calls.append((max_norm, mode, all(p.grad is None or torch.isfinite(p.grad).all() for p in parameters)))
        clip_gradients(parameters, max_norm, mode)

    monkeypatch.setattr(trainer_module, "clip_gradients", recording_clip)
    config = tiny_config(tmp_path, "simclr", "optim.grad_clip=0.5", "optim.grad_clip_mode=per_parameter")
    Trainer(config).run()
    assert calls and all(call == (0.5, "per_parameter", True) for call in calls)


def test_decay_exclusions_none_decays_and_adapts_every_parameter():
    # SwAV's LARC, and the SGD of MoCo v2, SimSiam, DeepCluster and SeLa, reach biases and norm layers too
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    parameters = [{"params": list(model.parameters())}]
    for name in ("sgd", "adamw", "lars"):
        kept = build_optimizer(model, parameters, OptimConfig(name=name, weight_decay=0.1), 0.5)
        every = build_optimizer(model, parameters, OptimConfig(name=name, weight_decay=0.1, decay_exclusions="none"), 0.5)
        assert len(every.param_groups) == len(kept.param_groups)  # the same groups: checkpoints load either way
        assert all(g["weight_decay"] == 0.1 and not g.get("lars_exclude") for g in every.param_groups)
        assert not any(g.get("fixed_weight_decay") for g in every.param_groups)
    # a bias under LARS then takes the trust ratio and the decay: a hand computation
    b = nn.Parameter(torch.tensor([3.0, 4.0]))
    b.grad = torch.tensor([0.6, 0.8])
    module = nn.Module()
    module.bias = b
    opt = build_optimizer(module, [{"params": [b]}], OptimConfig(name="lars", weight_decay=0.01, lars_eta=0.001,
                                                                 decay_exclusions="none", bias_lr_ratio=1.0), 0.1)
    opt.step()
    update = torch.tensor([0.6, 0.8]) + 0.01 * torch.tensor([3.0, 4.0])
    assert torch.allclose(b.detach(), torch.tensor([3.0, 4.0]) - 0.1 * (0.001 * 5.0 / update.norm()) * update)


def test_bias_lr_ratio_applies_whatever_the_exclusions():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    for exclusions in ("bias_and_norm", "none"):
        config = OptimConfig(name="lars", bias_lr_ratio=0.024, decay_exclusions=exclusions)
        opt = build_optimizer(model, [{"params": list(model.parameters())}], config, 0.2)
        set_learning_rate(opt, 0.1, 0.2)
        rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
        assert rates[id(model[0].weight)] == pytest.approx(0.1)
        assert rates[id(model[0].bias)] == rates[id(model[1].weight)] == pytest.approx(0.1 * 0.024)


def test_unknown_exclusions_are_refused():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="bias_and_norm or none"):
        split_decay_groups(model, [{"params": list(model.parameters())}], exclusions="weights")
