"""MaskFeat: the loss against a hand computation of HOG regression on the masked patches, the
masks (block-wise 40%, per step, resumable), gradients, pictures, the paper's recipe, and a
short ViT training run that resumes to the same weights."""

import dataclasses
import math

import pytest
import torch

from ssl_engine.config import ExperimentConfig
from ssl_engine.errors import ConfigError
from ssl_engine.hog import hog_patch_targets
from ssl_engine.methods.maskfeat import MaskFeat, MaskFeatParams
from ssl_engine.models.backbones import build_backbone
from ssl_engine.models.vit import VisionTransformer
from ssl_engine.train import Trainer
from ssl_engine.checkpoint import load_checkpoint
from tests.helpers import assert_same_state, stopped_run, tiny_config


def small_maskfeat(**changes):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=4, dim=24, depth=1, heads=2, name="vit_tiny")
    return MaskFeat(vit, dataclasses.replace(MaskFeatParams(), **changes), total_steps=100)


def images(n=6, size=16):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_maskfeat_needs_a_vision_transformer():
    with pytest.raises(ConfigError, match="maskfeat masks ViT patches: backbone.name must be vit_tiny or vit_small"):
        MaskFeat(build_backbone("small_cnn", image_size=16), MaskFeatParams(), total_steps=10)


def test_a_hog_cell_that_does_not_divide_the_patch_is_a_config_problem():
    with pytest.raises(ConfigError, match=r"method.hog_cell_size \(3\) must divide backbone.patch_size \(4\)"):
        small_maskfeat(hog_cell_size=3)


@pytest.mark.parametrize("masking", ["block", "random"])
def test_loss_is_the_mse_of_predicted_hog_on_the_masked_patches(masking):
    method = small_maskfeat(masking=masking)
    x = images()
    output = method([x], step=3)
    mask = method.step_masks(x, 3)  # the step's masks: the same draw forward made
    assert mask.shape == (6, 16) and (mask.sum(dim=1) == 6).all()  # round(0.4 x 16) of each row
    with torch.no_grad():
        tokens = method.backbone.tokens(x, mask=mask)[:, 1:]
        prediction = tokens @ method.head.weight.T + method.head.bias            # (6, 16, 108)
        target = hog_patch_targets(x, 4, cell_size=2)                            # 2 x 2 cells of 2 px
        errors = [((prediction[i, j] - target[i, j]) ** 2).mean() for i in range(6) for j in range(16) if mask[i, j]]
        expected = torch.stack(errors).mean()
    assert prediction.shape[-1] == 3 * 9 * 2 * 2
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert output.terms["hog mse"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert output.embeddings is None and method.matrices(output) == {}
    # the masked patches' inputs are the mask token: their pixels do not reach the prediction
    changed = x.clone()
    i, j = [int(v) for v in mask.nonzero()[0]]
    changed[i, :, 4 * (j // 4):4 * (j // 4) + 4, 4 * (j % 4):4 * (j % 4) + 4] += 5.0
    with torch.no_grad():
        assert torch.equal(method.backbone.embed(changed, mask=mask), method.backbone.embed(x, mask=mask))


def test_block_masks_come_in_rectangles_and_random_ones_do_not_need_to():
    # over many images, block masks put masked patches next to each other far more often
    def neighbours(mask):
        grid = mask.reshape(-1, 4, 4)
        return (grid[:, :, 1:] & grid[:, :, :-1]).sum() + (grid[:, 1:] & grid[:, :-1]).sum()

    x = images(n=200)
    block, random = small_maskfeat(masking="block").step_masks(x, 0), small_maskfeat(masking="random").step_masks(x, 0)
    assert (block.sum(dim=1) == 6).all() and (random.sum(dim=1) == 6).all()
    assert neighbours(block) > 1.3 * neighbours(random)


def test_each_step_draws_its_own_masks_the_same_in_a_resumed_run():
    x = images()
    method = small_maskfeat()
    assert torch.equal(method.step_masks(x, 7), method.step_masks(x, 7))
    assert not torch.equal(method.step_masks(x, 7), method.step_masks(x, 8))
    again = small_maskfeat()  # built after the same torch seed: the same mask seed
    assert torch.equal(again.step_masks(x, 7), method.step_masks(x, 7))


def test_gradients_reach_the_mask_token_the_encoder_and_the_head():
    method = small_maskfeat()
    method([images()], step=0).loss.backward()
    for parameter in (method.backbone.mask_token, method.backbone.patch_embed.weight, method.head.weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_pictures_show_the_mask_and_the_target_and_predicted_hog():
    method = small_maskfeat()
    x = images(n=3)
    pictures = method.pictures(x)
    assert set(pictures) == {"mask", "target_hog", "predicted_hog"}
    assert all(p.shape == (3, 1, 16, 16) for p in pictures.values())
    mask = pictures["mask"]
    assert set(mask.unique().tolist()) == {0.0, 1.0} and mask.mean() == pytest.approx(6 / 16)
    assert torch.equal(method.pictures(x)["mask"], mask)  # a fixed seed: the same masks every call
    for name in ("target_hog", "predicted_hog"):
        assert 0 <= pictures[name].min() and pictures[name].max() <= 1
    assert pictures["target_hog"].sum() > 0
    assert (pictures["predicted_hog"] * (1 - mask)).sum() == 0  # visible patches are not predicted


def test_the_recipe_is_the_papers():
    config = ExperimentConfig.for_method("maskfeat")
    assert config.backbone.name == "vit_tiny" and config.method.params == MaskFeatParams()
    assert MaskFeatParams().mask_ratio == 0.4 and MaskFeatParams().masking == "block"
    (view,) = config.augment.views
    assert (view.crop_scale_min, view.crop_scale_max, view.flip_p) == (0.5, 1.0, 0.5)
    assert view.jitter_p == view.grayscale_p == view.blur_p == view.solarize_p == 0
    optim = config.optim
    assert (optim.name, optim.lr, optim.weight_decay, optim.warmup_epochs) == ("adamw", 2e-4, 0.05, 30.0)


def test_trains_on_vit_tiny_and_a_stopped_run_resumes_to_the_same_weights(tmp_path):
    # 20 training images in batches of 10: 2 steps an epoch, ViT-tiny with 8 px patches at 32 px
    def config(folder):
        return tiny_config(tmp_path / folder, "maskfeat", "train.eval_subset=16", "data.test_fraction=0.8",
                           epochs=2, count=100, batch=10)

    straight = Trainer(config("a"))
    summary = straight.run()
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    saved = load_checkpoint(straight.run_dir)["method"]
    assert saved["head.weight"].shape == (108, 192)  # 3 channels x 9 bins x 2 x 2 cells of 4 px

    first, summary = stopped_run(config("b"))
    assert summary["steps"] == 2
    resumed = Trainer(config("b"), resume=first.run_dir)
    assert resumed.run()["steps"] == 4
    assert_same_state(saved, load_checkpoint(first.run_dir)["method"])
