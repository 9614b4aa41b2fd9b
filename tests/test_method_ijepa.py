"""I-JEPA: the loss against a hand computation (predictor run block by block, smooth L1 on
layer-normalised target tokens), what each encoder sees, where gradients go, the target's
momentum, pictures, the paper's recipe, and a short ViT training run that resumes exactly."""

import dataclasses
import math

import pytest
import torch

from ssl_engine.config import ExperimentConfig
from ssl_engine.errors import ConfigError
from ssl_engine.methods.ijepa import IJEPA, IJEPAParams
from ssl_engine.models.vit import sincos_position_embedding
from ssl_engine.models.backbones import build_backbone
from ssl_engine.models.vit import VisionTransformer
from ssl_engine.train import Trainer
from ssl_engine.checkpoint import load_checkpoint
from tests.helpers import assert_same_state, stopped_run, tiny_config


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


def test_ijepa_needs_a_vision_transformer():
    with pytest.raises(ConfigError, match="ijepa predicts ViT patch tokens: backbone.name must be vit_tiny or vit_small"):
        IJEPA(build_backbone("small_cnn", image_size=16), IJEPAParams(), total_steps=10)


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


def test_only_the_context_encoder_and_predictor_get_gradients():
    method = small_ijepa()
    method([images()], step=0).loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in method.target_backbone.parameters())
    assert method.backbone.mask_token.grad is None and not method.backbone.mask_token.requires_grad
    assert method.backbone.pos_embed.grad is None  # fixed sin-cos, as in the I-JEPA code
    for parameter in (method.backbone.patch_embed.weight, method.backbone.blocks[0].attn.qkv.weight,
                      method.predictor.mask_token, method.predictor.embed.weight, method.predictor.project.weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    trained = {id(p) for group in method.parameter_groups() for p in group["params"]}
    assert not trained & {id(p) for p in method.target_backbone.parameters()}


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


def test_each_step_draws_its_own_blocks_the_same_in_a_resumed_run():
    x = images()
    method = small_ijepa()
    first = method.step_masks(x, 5)
    assert all(torch.equal(a, b) for a, b in zip(first, method.step_masks(x, 5)))
    assert not all(torch.equal(a, b) for a, b in zip(first, method.step_masks(x, 6)))
    assert all(torch.equal(a, b) for a, b in zip(first, small_ijepa().step_masks(x, 5)))


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
    assert torch.equal(method.pictures(x)["targets"], targets)  # a fixed seed: the same blocks every call


def test_the_recipe_is_the_papers():
    config = ExperimentConfig.for_method("ijepa")
    assert config.backbone.name == "vit_tiny" and config.method.params == IJEPAParams()
    p = IJEPAParams()
    assert (p.num_targets, p.target_scale_min, p.target_scale_max, p.context_scale_min) == (4, 0.15, 0.2, 0.85)
    assert (p.target_aspect_min, p.target_aspect_max, p.base_momentum) == (0.75, 1.5, 0.996)
    (view,) = config.augment.views
    assert (view.crop_scale_min, view.crop_scale_max, view.flip_p) == (0.3, 1.0, 0.0)
    assert view.jitter_p == view.grayscale_p == view.blur_p == view.solarize_p == 0
    optim = config.optim
    assert (optim.name, optim.lr, optim.weight_decay, optim.warmup_epochs) == ("adamw", 1.25e-4, 0.04, 40.0)


def test_trains_on_vit_tiny_and_a_stopped_run_resumes_to_the_same_weights(tmp_path):
    # 20 training images in batches of 10: 2 steps an epoch, ViT-tiny with 8 px patches at 32 px
    def config(folder):
        return tiny_config(tmp_path / folder, "ijepa", "train.eval_subset=16", "data.test_fraction=0.8",
                           epochs=2, count=100, batch=10)

    straight = Trainer(config("a"))
    summary = straight.run()
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    saved = load_checkpoint(straight.run_dir)["method"]
    assert saved["predictor.mask_token"].shape == (1, 1, 48)
    assert not torch.equal(saved["target_backbone.blocks.0.attn.qkv.weight"], saved["backbone.blocks.0.attn.qkv.weight"])

    first, summary = stopped_run(config("b"))
    assert summary["steps"] == 2
    resumed = Trainer(config("b"), resume=first.run_dir)
    assert resumed.run()["steps"] == 4
    assert_same_state(saved, load_checkpoint(first.run_dir)["method"])
