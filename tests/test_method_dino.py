"""DINO: the head, multi-crop (teacher on global views only), the centre, the teacher temperature,
the frozen last layer, the teacher's EMA, what the app sees, and a run's weight decay ramp. What
every method keeps (an exact resume, training on a ViT, the multi-crop preset) is in
test_method_contract.py."""

import pytest
import torch
import torch.nn.functional as F

from ssl_engine import losses
from ssl_engine.methods.dino import DINO, DINOHead, DINOParams
from ssl_engine.models.backbones import build_backbone
from ssl_engine.models.ema import cosine_momentum
from tests.method_runs import EPOCHS, STEPS_PER_EPOCH

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


def test_the_diagnostics_measure_the_normalised_bottleneck_not_the_logits():
    method = make_method().eval()
    images = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        embedding = method.embedding(images)
        expected = F.normalize(method.head.mlp(method.backbone(images)), dim=-1)
    assert embedding.shape == (6, SMALL["bottleneck_dim"])
    torch.testing.assert_close(embedding, expected)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(6))


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


def test_a_run_ramps_the_weight_decay_and_keeps_the_centre_in_its_checkpoints(method_runs):
    run = method_runs.resumed("dino")
    # the paper's weight decay ramp: 0.04 at the start, up a half cosine towards 0.4 at the run's
    # end (the checkpoint holds the value of its last step, total - 1); norms and biases stay at 0
    total = EPOCHS * STEPS_PER_EPOCH
    decays = sorted({group["weight_decay"] for group in run.straight_state()["optimizer"]["param_groups"]})
    assert decays[0] == pytest.approx(0.0, abs=1e-12) and decays[-1] == pytest.approx(cosine_momentum(total - 1, total, 0.04, 0.4))
    assert run.stopped_state()["method"]["center"].abs().sum() > 0
