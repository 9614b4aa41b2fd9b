"""MaskFeat: the loss against a hand computation of HOG regression on the masked patches, the
masks (block-wise 40%), the head's gradients, pictures, and the head a run keeps. What every
method keeps (a ViT only, the paper's recipe, an exact resume, masks per step and per process,
a mask token that learns) is in test_method_contract.py."""

import dataclasses

import pytest
import torch

from ssl_engine.errors import ConfigError
from ssl_engine.hog import hog_patch_targets
from ssl_engine.methods.maskfeat import MaskFeat, MaskFeatParams
from ssl_engine.models.vit import VisionTransformer


def small_maskfeat(**changes):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=4, dim=24, depth=1, heads=2, name="vit_tiny")
    return MaskFeat(vit, dataclasses.replace(MaskFeatParams(), **changes), total_steps=100)


def images(n=6, size=16):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


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


def test_gradients_reach_the_head():
    method = small_maskfeat()
    method([images()], step=0).loss.backward()
    assert method.head.weight.grad is not None and method.head.weight.grad.abs().sum() > 0


def test_pictures_show_the_mask_and_the_target_and_predicted_hog():
    method = small_maskfeat()
    x = images(n=3)
    pictures = method.pictures(x)
    assert set(pictures) == {"mask", "target_hog", "predicted_hog"}
    assert all(p.shape == (3, 1, 16, 16) for p in pictures.values())
    mask = pictures["mask"]
    assert set(mask.unique().tolist()) == {0.0, 1.0} and mask.mean() == pytest.approx(6 / 16)
    for name in ("target_hog", "predicted_hog"):
        assert 0 <= pictures[name].min() and pictures[name].max() <= 1
    assert pictures["target_hog"].sum() > 0
    assert (pictures["predicted_hog"] * (1 - mask)).sum() == 0  # visible patches are not predicted


def test_a_run_keeps_its_hog_head_in_its_checkpoints(method_runs):
    saved = method_runs.resumed("maskfeat").straight_state()["method"]
    assert saved["head.weight"].shape == (108, 192)  # 3 channels x 9 bins x 2 x 2 cells of a 4 px patch
