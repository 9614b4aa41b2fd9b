"""DINO: the head, multi-crop (teacher on global views only), the centre, the teacher temperature,
the frozen last layer, the teacher's EMA, what the app sees, and training with resume."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_engine import losses
from ssl_engine.methods.dino import DINO, DINOHead, DINOParams
from ssl_engine.models.backbones import build_backbone
from ssl_engine.train import Trainer
from ssl_engine.checkpoint import load_checkpoint
from ssl_engine.models.ema import cosine_momentum
from tests.helpers import assert_same_state, stopped_run, tiny_config

SMALL = {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}


def make_method(backbone="small_cnn", total_steps=10, **params):
    torch.manual_seed(0)
    return DINO(build_backbone(backbone, image_size=32, patch_size=4), DINOParams(**{**SMALL, **params}), total_steps)


def multi_crop_views(batch=4, local=3):
    return [torch.randn(batch, 3, 32, 32) for _ in range(2)] + [torch.randn(batch, 3, 16, 16) for _ in range(local)]


def last_weight(head):
    return head.last_layer.weight.detach().clone()


def test_head_normalises_the_bottleneck_and_the_last_layers_weights():
    head = DINOHead(8, 20, hidden_dim=16, bottleneck_dim=4)
    assert head(torch.randn(5, 8)).shape == (5, 20)
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(20))  # weight_g fixed at 1
    g, v = head.last_layer.parametrizations.weight.original0, head.last_layer.parametrizations.weight.original1
    assert not g.requires_grad and v.requires_grad
    assert DINOHead(8, 20, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad
    # the output is the last layer applied to the unit-normalised bottleneck
    x = torch.randn(3, 8)
    bottleneck = F.normalize(head.mlp(x), dim=-1)
    assert torch.allclose(head(x), bottleneck @ head.last_layer.weight.T, atol=1e-6)


def test_loss_centre_and_entropy_match_a_hand_computation():
    method = make_method(center_momentum=0.9, teacher_temp=0.05, warmup_teacher_temp=0.05)
    views = multi_crop_views()
    with torch.no_grad():
        method.center.copy_(torch.randn(1, 64))
        for p in method.teacher_head.parameters():  # a teacher distinct from the student
            p.add_(0.01 * torch.randn_like(p))
    old_center = method.center.clone()
    with torch.no_grad():
        # global views through each backbone together (their BatchNorm sees both), local views together
        student_features = torch.cat([method.backbone(torch.cat(views[:2])), method.backbone(torch.cat(views[2:]))])
        student = list(method.head(student_features).chunk(5))
        teacher = list(method.teacher_head(method.teacher_backbone(torch.cat(views[:2]))).chunk(2))
    output = method(views, step=0)
    expected = losses.dino_loss(student, teacher, old_center, student_temp=0.1, teacher_temp=0.05)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)

    teacher_outputs = torch.cat(teacher)
    new_center = 0.9 * old_center + 0.1 * teacher_outputs.mean(dim=0, keepdim=True)
    assert torch.allclose(method.center, new_center, atol=1e-6)
    targets = F.softmax((teacher_outputs - old_center) / 0.05, dim=-1)
    entropy = -(targets * torch.log(targets.clamp_min(1e-30))).sum(dim=-1).mean()
    assert output.terms["teacher entropy"].item() == pytest.approx(entropy.item(), rel=1e-4, abs=1e-6)
    assert output.terms["center norm"].item() == pytest.approx(new_center.norm().item(), rel=1e-6)
    assert output.terms["teacher temperature"].item() == pytest.approx(0.05)

    usage = method.histograms(output)["teacher prototype usage"]
    assert usage.shape == (64,) and usage.sum().item() == 8  # one count per global view of each image
    assert torch.equal(usage, torch.bincount(targets.argmax(dim=-1), minlength=64).float())


def test_teacher_sees_only_the_global_views_and_the_student_all():
    method = make_method()
    seen = {"student": [], "teacher": []}
    method.backbone.register_forward_hook(lambda m, i, o: seen["student"].append(tuple(i[0].shape)))
    method.teacher_backbone.register_forward_hook(lambda m, i, o: seen["teacher"].append(tuple(i[0].shape)))
    output = method(multi_crop_views(batch=4, local=3), step=0)
    assert seen["teacher"] == [(8, 3, 32, 32)]
    assert seen["student"] == [(8, 3, 32, 32), (12, 3, 16, 16)]
    assert [tuple(z.shape) for z in output.embeddings] == [(4, 64), (4, 64)]
    output.loss.backward()
    assert method.head.mlp[0].weight.grad is not None
    assert all(p.grad is None for p in method.teacher_head.parameters())
    # two same-sized views only (no multi-crop): both are global and the loss still works
    seen["teacher"].clear()
    assert torch.isfinite(method(multi_crop_views(batch=4, local=0), step=0).loss)
    assert seen["teacher"] == [(8, 3, 32, 32)]


def test_teacher_temperature_warms_up_linearly_by_epoch():
    method = make_method(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=31)
    temperatures = {}
    for epoch in (0, 15, 30, 31, 100):
        method.before_epoch(epoch, dataset_features=None)
        temperatures[epoch] = method.teacher_temperature()
    assert temperatures == pytest.approx({0: 0.04, 15: 0.055, 30: 0.07, 31: 0.07, 100: 0.07})
    method.before_epoch(15, dataset_features=None)
    assert method(multi_crop_views(local=1), step=0).terms["teacher temperature"].item() == pytest.approx(0.055)
    assert make_method(warmup_teacher_temp_epochs=0, teacher_temp=0.06).teacher_temperature() == 0.06


def test_the_last_layer_is_frozen_in_the_first_epoch_only():
    method = make_method(freeze_last_layer=1)
    optimizer = torch.optim.AdamW(method.parameter_groups()[0]["params"], lr=0.1, weight_decay=0.04)
    views = multi_crop_views(local=1)

    def step():
        before, mlp_before = last_weight(method.head), method.head.mlp[0].weight.detach().clone()
        optimizer.zero_grad()
        method(views, step=0).loss.backward()
        optimizer.step()
        return not torch.allclose(last_weight(method.head), before), not torch.equal(method.head.mlp[0].weight, mlp_before)

    method.before_epoch(0, dataset_features=None)
    assert step() == (False, True)  # weight decay scales v, which the weight normalisation undoes
    method.before_epoch(1, dataset_features=None)
    assert step() == (True, True)


def test_a_learnt_weight_norm_gets_a_zero_gradient_while_frozen():
    method = make_method(freeze_last_layer=2, norm_last_layer=False)
    views = multi_crop_views(local=1)
    for epoch, frozen in ((1, True), (2, False)):
        method.zero_grad()
        method.before_epoch(epoch, dataset_features=None)
        method(views, step=0).loss.backward()
        grads = [p.grad for p in method.head.last_layer.parameters()]
        assert len(grads) == 2 and all(g is not None for g in grads)
        assert all((g.abs().sum() == 0) == frozen for g in grads)


def test_teacher_follows_the_student_with_a_cosine_momentum():
    method = make_method(total_steps=10, base_momentum=0.996)
    with torch.no_grad():
        for p in method.head.parameters():
            p.add_(1.0)
    teacher, student = [p.clone() for p in method.teacher_head.parameters()], [p.clone() for p in method.head.parameters()]
    method.after_optimizer_step(step=0)
    for new, old, online in zip(method.teacher_head.parameters(), teacher, student):
        assert torch.allclose(new, 0.996 * old + 0.004 * online)
    method.after_optimizer_step(step=10)  # momentum 1 at the end: the teacher stays put
    frozen = [p.clone() for p in method.teacher_head.parameters()]
    method.after_optimizer_step(step=10)
    assert all(torch.equal(a, b) for a, b in zip(method.teacher_head.parameters(), frozen))


def test_a_stopped_run_resumes_to_the_same_weights_and_centre(tmp_path):
    # the centre is a buffer and the epoch comes back through before_epoch, so the resumed epoch
    # (the last layer no longer frozen) matches the uninterrupted run exactly
    overrides = ["method.out_dim=64", "method.hidden_dim=32", "method.bottleneck_dim=16", "train.eval_subset=16"]
    straight = Trainer(tiny_config(tmp_path / "a", "dino", *overrides, epochs=2, count=100, batch=16))
    straight.run()
    # the paper's weight decay ramp: 0.04 at the start, near 0.4 at the last of 10 steps; norms and biases stay at 0
    decays = sorted({group["weight_decay"] for group in straight.optimizer.param_groups})
    assert decays[0] == 0.0 and decays[-1] == pytest.approx(cosine_momentum(9, 10, 0.04, 0.4)) and decays[-1] > 0.39
    first, summary = stopped_run(tiny_config(tmp_path / "b", "dino", *overrides, epochs=2, count=100, batch=16))
    assert summary["steps"] == 5 and math.isfinite(summary["final_loss"])
    assert load_checkpoint(first.run_dir)["method"]["center"].abs().sum() > 0
    resumed = Trainer(tiny_config(tmp_path / "b", "dino", *overrides, epochs=2, count=100, batch=16),
                      resume=first.run_dir)
    assert resumed.run()["steps"] == 10
    a, b = load_checkpoint(straight.run_dir)["method"], load_checkpoint(first.run_dir)["method"]
    assert_same_state(a, b)


def test_vit_tiny_trains_on_global_and_local_views_and_resumes(tmp_path):
    # ViT-tiny keeps its 12 blocks: 8 px patches (16 per global view, 4 per 16 px local view),
    # 2 local views and 20 training images (2 steps an epoch) keep it quick.
    config = tiny_config(tmp_path, "dino", "method.out_dim=64", "method.hidden_dim=32", "method.bottleneck_dim=16",
                         "backbone.name=vit_tiny", "backbone.patch_size=8", "train.eval_subset=16",
                         "data.test_fraction=0.8", count=100, batch=10)
    views = config.augment.views
    assert [v.output_size for v in views] == [0, 0] + [16] * 8  # the preset: 2 global (full size) + 8 local
    config.augment.views = views[:4]
    summary = Trainer(config).run()
    assert summary["steps"] == 2 and math.isfinite(summary["final_loss"])
    longer = config.with_overrides(["train.epochs=2"])
    trainer = Trainer(longer, resume=next((tmp_path / "runs").iterdir()))
    summary = trainer.run()
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert load_checkpoint(trainer.run_dir)["step"] == 4
