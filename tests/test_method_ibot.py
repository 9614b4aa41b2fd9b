"""iBOT: the patch loss against a hand computation (masked patches only, no teacher gradient), the
whole loss against DINO's class-token loss plus the patch loss, the two centres, the masks (half
the views, ratios 0.1-0.5, in blocks), the head, the temperatures, the pictures, and the patch
centre a run keeps. What every method keeps (a ViT only, the paper's recipe, an exact resume,
masks per step and per process) is in test_method_contract.py."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from ssl_engine import losses
from ssl_engine.errors import ConfigError
from ssl_engine.methods.dino import DINOHead
from ssl_engine.methods.ibot import IBOT, IBOTHead, IBOTParams
from ssl_engine.models.vit import VisionTransformer

SMALL = {"out_dim": 32, "patch_out_dim": 24, "hidden_dim": 16, "bottleneck_dim": 8}


def small_ibot(image_size=16, total_steps=10, **changes):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=image_size, patch_size=4, dim=24, depth=1, heads=2, name="vit_tiny")
    return IBOT(vit, dataclasses.replace(IBOTParams(), **{**SMALL, **changes}), total_steps)


def multi_crop_views(batch=4, local=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 16, 16, generator=generator) for _ in range(2)] + \
        [torch.randn(batch, 3, 8, 8, generator=generator) for _ in range(local)]


def test_an_inverted_mask_ratio_range_is_a_config_problem():
    with pytest.raises(ConfigError, match=r"method.mask_ratio_min \(0.4\) must be at most method.mask_ratio_max \(0.2\)"):
        small_ibot(mask_ratio_min=0.4, mask_ratio_max=0.2)


def test_patch_loss_matches_a_hand_computation_on_masked_patches_only():
    generator = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 4, 5, generator=generator, requires_grad=True) for _ in range(2)]
    teacher = [torch.randn(3, 4, 5, generator=generator, requires_grad=True) for _ in range(2)]
    center = torch.randn(1, 5, generator=generator)
    masks = [torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.bool),
             torch.tensor([[0, 0, 0, 1], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)]
    loss = losses.ibot_patch_loss(student, teacher, center, masks, student_temp=0.1, teacher_temp=0.05)

    def cross_entropy(s, t):  # -sum_k P_t log P_s, written out
        exp_t = [math.exp((t[k] - center[0, k]) / 0.05) for k in range(5)]
        exp_s = [math.exp(s[k] / 0.1) for k in range(5)]
        return -sum(exp_t[k] / sum(exp_t) * math.log(exp_s[k] / sum(exp_s)) for k in range(5))

    per_view = []
    for s, t, m in zip(student, teacher, masks):
        per_image = []
        for n in range(3):
            masked = [p for p in range(4) if m[n, p]]
            # an image with no masked patch adds 0 (the code's clamp(min=1))
            per_image.append(sum(cross_entropy(s[n, p].tolist(), t[n, p].tolist()) for p in masked) / max(1, len(masked)))
        per_view.append(sum(per_image) / 3)
    assert loss.item() == pytest.approx(sum(per_view) / 2, rel=1e-5)

    loss.backward()
    assert all(t.grad is None for t in teacher)  # no gradient into the teacher
    for s, m in zip(student, masks):  # none into visible patches either
        assert (s.grad[~m] == 0).all() and (s.grad[m].abs().sum(dim=-1) > 0).all()
    # visible patches of either side do not count
    changed = [s.detach().clone() for s in student]
    changed_teacher = [t.detach().clone() for t in teacher]
    for s, t, m in zip(changed, changed_teacher, masks):
        s[~m] += 3.0
        t[~m] -= 2.0
    again = losses.ibot_patch_loss(changed, changed_teacher, center, masks, student_temp=0.1, teacher_temp=0.05)
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)


def test_loss_is_dino_on_class_tokens_plus_the_patch_loss_with_two_centres():
    method = small_ibot(lambda2=0.5, teacher_temp=0.06, warmup_teacher_temp=0.06)
    views = multi_crop_views()
    with torch.no_grad():
        method.center.copy_(torch.randn(1, 32))
        method.patch_center.copy_(torch.randn(1, 32))
        for p in method.teacher_head.parameters():  # a teacher distinct from the student
            p.add_(0.01 * torch.randn_like(p))
    old_center, old_patch_center = method.center.clone(), method.patch_center.clone()
    masks = method.step_masks(views[0], 5, views=2)
    assert masks.shape == (8, 16) and masks.any() and not masks.all(dim=1).any()
    with torch.no_grad():
        global_views = torch.cat(views[:2])
        # the student sees the global views masked, the teacher sees them whole
        student_cls, student_patches = method.head(method.backbone.tokens(global_views, mask=masks))
        local = method.head(method.backbone(torch.cat(views[2:])))
        teacher_cls, teacher_patches = method.teacher_head(method.teacher_backbone.tokens(global_views))
    assert student_patches.shape == teacher_patches.shape == (8, 16, 32)
    output = method(views, step=5)
    class_loss = losses.dino_loss(list(student_cls.chunk(2)) + list(local.chunk(2)), list(teacher_cls.chunk(2)),
                                  old_center, student_temp=0.1, teacher_temp=0.06)
    patch_loss = losses.ibot_patch_loss(list(student_patches.chunk(2)), list(teacher_patches.chunk(2)),
                                        old_patch_center, list(masks.chunk(2)), student_temp=0.1, teacher_temp=0.04)
    assert output.loss.item() == pytest.approx(class_loss.item() + 0.5 * patch_loss.item(), rel=1e-5)
    assert output.terms["class loss"].item() == pytest.approx(class_loss.item(), rel=1e-5)
    assert output.terms["patch loss"].item() == pytest.approx(patch_loss.item(), rel=1e-5)
    assert output.terms["patch teacher temperature"].item() == pytest.approx(0.04)  # epoch 0 of the warm-up
    assert output.terms["masked share"].item() == pytest.approx(masks.float().mean().item())
    # each centre follows its own teacher outputs: the class tokens, and the patches of every image
    assert torch.allclose(method.center, 0.9 * old_center + 0.1 * teacher_cls.mean(dim=0, keepdim=True), atol=1e-6)
    new_patch_center = 0.9 * old_patch_center + 0.1 * teacher_patches.mean(dim=(0, 1)).unsqueeze(0)
    assert torch.allclose(method.patch_center, new_patch_center, atol=1e-6)
    assert output.terms["patch center norm"].item() == pytest.approx(new_patch_center.norm().item(), rel=1e-5)
    usage = method.histograms(output)["teacher prototype usage"]
    assert usage.shape == (32,) and usage.sum().item() == 8  # one per global view of each image


def test_gradients_reach_the_head():
    method = small_ibot()
    method(multi_crop_views(), step=5).loss.backward()
    assert method.head.mlp[0].weight.grad is not None and method.head.mlp[0].weight.grad.abs().sum() > 0


def test_masks_hide_half_the_views_in_blocks_of_ten_to_fifty_percent():
    method = small_ibot(image_size=32)  # an 8 x 8 grid
    x = torch.zeros(200, 3, 32, 32)
    masks = method.step_masks(x, 0, views=2)
    assert masks.shape == (400, 64)
    counts = masks.sum(dim=1)
    masked = counts > 0
    assert 0.4 < masked.float().mean() < 0.6  # each view of each image masked with probability 0.5
    assert counts[masked].min() >= round(0.1 * 64) and counts[masked].max() <= round(0.5 * 64)
    assert counts[masked].float().std() > 3  # a ratio per view, not one per batch
    grid = masks[masked].reshape(-1, 8, 8)   # in blocks: masked patches lie next to each other
    neighbours = (grid[:, :, 1:] & grid[:, :, :-1]).sum() + (grid[:, 1:] & grid[:, :-1]).sum()
    assert neighbours > 1.4 * 2 * 56 * (grid.float().mean() ** 2) * len(grid)  # far above random placement
    never = small_ibot(image_size=32, mask_probability=0.0).step_masks(x, 0, views=2)
    assert not never.any()


@pytest.mark.parametrize("shared", [True, False])
def test_the_head_runs_every_token_through_dinos_head(shared):
    torch.manual_seed(0)
    head = IBOTHead(6, 10, 7, hidden_dim=16, bottleneck_dim=4, norm_last_layer=True, shared=shared)
    tokens = torch.randn(3, 5, 6)
    cls, patches = head(tokens)
    bottleneck = F.normalize(head.mlp(tokens), dim=-1)
    assert torch.allclose(cls, head.last_layer(bottleneck[:, 0]), atol=1e-6)
    patch_layer = head.last_layer if shared else head.patch_last_layer
    assert patches.shape == (3, 4, 10 if shared else 7)
    assert torch.allclose(patches, patch_layer(bottleneck[:, 1:]), atol=1e-6)
    assert torch.allclose(head(tokens[:, 0]), cls, atol=1e-6)  # features alone: DINO's head
    assert isinstance(head, DINOHead) and (head.patch_last_layer is None) == shared


def test_both_last_layers_are_frozen_in_the_first_epoch():
    method = small_ibot(shared_head=False)
    views = multi_crop_views()
    for epoch, frozen in ((0, True), (1, False)):
        method.zero_grad()
        method.before_epoch(epoch, dataset_features=None)
        method(views, step=5).loss.backward()
        for layer in (method.head.last_layer, method.head.patch_last_layer):
            grads = [p.grad for p in layer.parameters() if p.requires_grad]
            assert len(grads) == 2 and all((g.abs().sum() == 0) == frozen for g in grads)
    assert method.patch_center.shape == (1, 24)  # the unshared patch head's outputs


def test_both_teacher_temperatures_warm_up_by_epoch():
    method = small_ibot(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_patch_temp=0.04,
                        teacher_patch_temp=0.07, warmup_teacher_temp_epochs=31)
    for epoch, expected in ((0, 0.04), (15, 0.055), (30, 0.07), (100, 0.07)):
        method.before_epoch(epoch, dataset_features=None)
        assert method.teacher_temperature() == pytest.approx(expected)
        assert method.teacher_patch_temperature() == pytest.approx(expected)


def test_pictures_show_the_first_global_views_mask():
    method = small_ibot()
    x = torch.randn(16, 3, 16, 16)
    (name, mask), = method.pictures(x).items()
    assert name == "mask" and mask.shape == (16, 1, 16, 16) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mask[:, :, ::4, ::4].reshape(16, 16).bool(),
                       method.mask_strategy().draw(16, 4, torch.Generator().manual_seed(0)))
    assert 0 < mask.amax(dim=(1, 2, 3)).sum() < 16  # some images masked, some left whole


def test_a_run_keeps_its_patch_centre_in_its_checkpoints(method_runs):
    saved = method_runs.resumed("ibot").straight_state()["method"]
    assert saved["patch_center"].shape == (1, 64) and saved["patch_center"].abs().sum() > 0  # patch_out_dim 64
