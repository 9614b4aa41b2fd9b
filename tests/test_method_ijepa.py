"""I-JEPA: the loss against a hand computation (predictor run block by block, smooth L1 on
layer-normalised target tokens), what each encoder sees, the predictor's gradients, the target's
momentum, pictures, and the target encoder a run keeps. What every method keeps (a ViT only, the
paper's recipe, an exact resume, blocks per step and per process, gradients into the encoder and
none into the target) is in test_method_contract.py."""

import dataclasses

import pytest
import torch

from ssl_engine.errors import ConfigError
from ssl_engine.methods.ijepa import IJEPA, IJEPAParams
from ssl_engine.models.vit import sincos_position_embedding
from ssl_engine.models.vit import VisionTransformer


def small_ijepa(image_size=16, **changes):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=image_size, patch_size=4, dim=24, depth=2, heads=2, name="vit_tiny",
                            position="sincos")
    params = dataclasses.replace(IJEPAParams(predictor_dim=16, predictor_depth=2), **changes)
    return IJEPA(vit, params, total_steps=100)


def images(n=4, size=16):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def patch_pixels(index, grid=4, patch=4):
    """Row and column slices of patch `index` in the image."""
    row, column = divmod(int(index), grid)
    return slice(row * patch, (row + 1) * patch), slice(column * patch, (column + 1) * patch)


def test_inconsistent_settings_are_config_problems():
    with pytest.raises(ConfigError) as error:
        small_ijepa(target_scale_min=0.3, predictor_dim=18)
    assert error.value.problems == [
        "method.target_scale_min (0.3) must be <= method.target_scale_max (0.2)",
        "method.predictor_dim (18) must be divisible by 4 and by the encoder's 2 heads"]


def test_loss_is_smooth_l1_between_predicted_and_layer_normalised_target_blocks():
    method = small_ijepa()
    with torch.no_grad():  # a target encoder that differs from the context encoder
        for p in method.target_backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = images()
    output = method([x], step=2)
    context, targets = method.step_masks(x, 2)  # the step's blocks: the same draw forward made
    n, num_targets, kt = targets.shape
    assert num_targets == 4 and context.shape[0] == n
    with torch.no_grad():
        whole = method.target_backbone.tokens(x)[:, 1:]
        normalised = (whole - whole.mean(-1, keepdim=True)) / (whole.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
        seen = method.backbone.tokens(x, keep=context)[:, 1:]
        predictor = method.predictor
        position = sincos_position_embedding(16, 4)[0, 1:]
        differences = []
        for i in range(n):
            for k in range(num_targets):
                sequence = torch.cat([predictor.embed(seen[i]) + position[context[i]],
                                      predictor.mask_token[0] + position[targets[i, k]]]).unsqueeze(0)
                for block in predictor.blocks:
                    sequence = block(sequence)
                predicted = predictor.project(predictor.norm(sequence)[0, -kt:])
                differences.append(predicted - normalised[i, targets[i, k]])
        d = torch.stack(differences)
        expected = torch.where(d.abs() < 1, 0.5 * d ** 2, d.abs() - 0.5).mean()
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert output.terms["smooth l1"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert (d.abs() > 1).any() and (d.abs() < 1).any()  # both branches of smooth L1 are exercised


def test_the_context_encoder_never_sees_a_target_patch():
    method = small_ijepa()
    x = images()
    context, targets = method.step_masks(x, 0)
    for i in range(len(x)):
        assert not set(context[i].tolist()) & set(targets[i].flatten().tolist())
    with torch.no_grad():
        before = method.context_tokens(x, context)
        changed = x.clone()
        for i in range(len(x)):
            for index in targets[i].flatten().unique():
                rows, columns = patch_pixels(index)
                changed[i, :, rows, columns] = torch.randn(3, 4, 4)
        assert torch.equal(method.context_tokens(changed, context), before)
        rows, columns = patch_pixels(context[0, 0])  # a context patch, in contrast, changes them
        changed[0, :, rows, columns] += 1.0
        assert not torch.equal(method.context_tokens(changed, context), before)


def test_gradients_reach_the_predictor():
    method = small_ijepa()
    method([images()], step=0).loss.backward()
    for parameter in (method.predictor.mask_token, method.predictor.embed.weight, method.predictor.project.weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_target_momentum_rises_linearly_from_0996_to_one_over_the_run():
    method = small_ijepa()
    online = [p.detach().clone() + 1.0 for p in method.backbone.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    before = [p.clone() for p in method.target_backbone.parameters()]
    method.after_optimizer_step(0)
    assert method.momentum == pytest.approx(0.996)
    for target, old, new in zip(method.target_backbone.parameters(), before, online):
        assert torch.allclose(target, 0.996 * old + 0.004 * new, atol=1e-6)
    method.after_optimizer_step(50)
    assert method.momentum == pytest.approx(0.998)
    frozen = [p.clone() for p in method.target_backbone.parameters()]
    method.after_optimizer_step(100)
    assert method.momentum == 1.0
    assert all(torch.equal(a, b) for a, b in zip(method.target_backbone.parameters(), frozen))


def test_pictures_show_the_context_and_each_target_block_in_its_own_value():
    method = small_ijepa(image_size=32)  # an 8 x 8 grid
    x = images(n=3, size=32)
    pictures = method.pictures(x)
    assert set(pictures) == {"context", "targets"}
    context, targets = pictures["context"], pictures["targets"]
    assert context.shape == targets.shape == (3, 1, 32, 32)
    assert set(context.unique().tolist()) <= {0.0, 1.0} and context.sum() > 0
    assert set(targets.unique().tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0} and 1.0 in targets.unique().tolist()
    assert ((context > 0) & (targets > 0)).sum() == 0  # the context holds no target patch


def test_a_run_keeps_its_predictor_and_a_target_encoder_of_its_own(method_runs):
    saved = method_runs.resumed("ijepa").straight_state()["method"]
    assert saved["predictor.mask_token"].shape == (1, 1, 48)  # predictor_dim 48
    assert not torch.equal(saved["target_backbone.blocks.0.attn.qkv.weight"], saved["backbone.blocks.0.attn.qkv.weight"])
