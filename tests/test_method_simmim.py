"""SimMIM: the masked L1 against a hand computation, mask tokens in the encoder's input, mask
squares larger than a patch, pictures, and the head a run keeps. What every method keeps (a ViT
only, the paper's recipe, an exact resume, masks per step and per process, a mask token that
learns) is in test_method_contract.py."""

import dataclasses

import pytest
import torch

from ssl_engine import losses
from ssl_engine.errors import ConfigError
from ssl_engine.masking import random_patch_mask
from ssl_engine.methods.simmim import SimMIM, SimMIMParams
from ssl_engine.methods.base import step_generator
from ssl_engine.models.vit import VisionTransformer, patchify


def small_simmim(**changes):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=4, dim=24, depth=1, heads=2, name="vit_tiny")
    return SimMIM(vit, dataclasses.replace(SimMIMParams(), **changes), total_steps=10)


def images(n=3, seed=1):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_masked_pixel_l1_matches_a_hand_computation_and_ignores_visible_patches():
    pred = torch.tensor([[[1.0, -2.0, 0.0], [9.0, 9.0, 9.0]], [[0.5, 0.5, 0.5], [1.0, 1.0, 4.0]]])
    target = torch.zeros(2, 2, 3)
    mask = torch.tensor([[True, False], [False, True]])
    # masked: row 0 patch 0, mean |.| = 1; row 1 patch 1, mean |.| = 2; the mean over the two
    assert losses.masked_pixel_l1(pred, target, mask).item() == pytest.approx(1.5)
    changed = pred.clone()
    changed[0, 1] = -100.0
    changed[1, 0] = 7.0
    assert losses.masked_pixel_l1(changed, target, mask).item() == pytest.approx(1.5)
    assert losses.masked_pixel_l1(target, target, mask).item() == pytest.approx(0, abs=1e-12)
    nothing_masked = torch.zeros(2, 2, dtype=torch.bool)
    assert losses.masked_pixel_l1(pred, target, nothing_masked).item() == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError):
        losses.masked_pixel_l1(pred, target[:, :1], mask)


def test_mask_squares_that_do_not_fit_are_a_config_problem():
    with pytest.raises(ConfigError, match="mask_patch_size"):
        small_simmim(mask_patch_size=6)
    with pytest.raises(ConfigError, match="mask_patch_size"):
        small_simmim(mask_patch_size=12)   # a multiple of 4 that does not divide 16


def test_mask_tokens_replace_the_hidden_patches_and_the_loss_is_the_heads_l1(monkeypatch):
    method = small_simmim()
    given = []
    real_tokens = method.backbone.tokens
    monkeypatch.setattr(method.backbone, "tokens",
                        lambda x, mask=None, keep=None: given.append((mask, keep)) or real_tokens(x, mask=mask, keep=keep))
    x = images()
    output = method([x], 2)
    (mask, keep), = given
    assert keep is None and mask.shape == (3, 16) and (mask.sum(dim=1) == 10).all()  # round(0.6 x 16)
    expected_mask = random_patch_mask(3, 16, 0.6, generator=step_generator(method.mask_seed, 2))
    assert torch.equal(mask, expected_mask)
    with torch.no_grad():
        tokens = real_tokens(x, mask=mask)[:, 1:]
        expected = losses.masked_pixel_l1(method.head(tokens), patchify(x, 4), mask)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(output.terms) == {"reconstruction"}

    # a hidden patch's pixels reach nothing: the mask token stands in its place
    hidden, visible = int(mask[0].nonzero()[0]), int((~mask[0]).nonzero()[0])

    def predicted(index):
        changed = x.clone()
        row, column = divmod(index, 4)
        changed[0, :, 4 * row:4 * row + 4, 4 * column:4 * column + 4] += 5.0
        with torch.no_grad():
            return method.predict_masked(changed, mask)

    with torch.no_grad():
        before = method.predict_masked(x, mask)
    assert torch.equal(predicted(hidden), before)
    assert not torch.allclose(predicted(visible)[0], before[0])
    output.loss.backward()
    assert method.head.weight.grad.abs().sum() > 0


def test_mask_squares_cover_whole_blocks_of_patches():
    method = small_simmim(mask_patch_size=8)          # 2 x 2 patches per square, a 2 x 2 grid of squares
    mask = method.mask_strategy().draw(8, 4, torch.Generator().manual_seed(0)).reshape(8, 4, 4)
    assert (mask.sum(dim=(1, 2)) == 4 * round(0.6 * 4)).all()
    squares = mask.reshape(8, 2, 2, 2, 2)                # (image, square row, patch row, square column, patch column)
    assert (squares.all(dim=(2, 4)) == squares.any(dim=(2, 4))).all()


def test_pictures_show_a_seeded_mask_and_the_input_where_visible():
    method = small_simmim()
    x = images(n=4)
    pictures = method.pictures(x)
    assert pictures["mask"].shape == (4, 1, 16, 16) and pictures["reconstruction"].shape == (4, 3, 16, 16)
    assert torch.allclose(pictures["mask"].mean(dim=(1, 2, 3)), torch.full((4,), 10 / 16))
    visible = pictures["mask"].expand(-1, 3, -1, -1) == 0
    assert torch.equal(pictures["reconstruction"][visible], x[visible])
    mask = pictures["mask"][:, 0, ::4, ::4].reshape(4, 16).bool()
    assert torch.allclose(patchify(pictures["reconstruction"], 4)[mask], method.predict_masked(x, mask)[mask])


def test_window_statistics_by_hand_and_the_standardised_target():
    """norm_target_window: each target pixel minus the mean of its window, over the window's
    (unbiased) standard deviation; windows are cut by the image's edges."""
    from ssl_engine.methods.simmim import window_statistics
    x = images(n=2)
    mean, std = window_statistics(x, 5)
    for (n, c, row, column) in ((0, 0, 7, 9), (1, 2, 0, 0), (1, 1, 15, 3)):
        window = x[n, c, max(row - 2, 0):row + 3, max(column - 2, 0):column + 3]
        assert mean[n, c, row, column].item() == pytest.approx(window.mean().item(), abs=1e-5)
        assert std[n, c, row, column].item() == pytest.approx((window.var() + 1e-6).sqrt().item(), rel=1e-4)

    method = small_simmim(norm_target_window=5)
    output = method([x], 2)
    mask = random_patch_mask(2, 16, 0.6, generator=step_generator(method.mask_seed, 2))
    with torch.no_grad():
        expected = losses.masked_pixel_l1(method.predict_masked(x, mask), patchify((x - mean) / std, 4), mask)
        raw = losses.masked_pixel_l1(method.predict_masked(x, mask), patchify(x, 4), mask)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6) and abs(expected - raw) > 1e-3
    # pictures bring the prediction back to pixels with the true windows' statistics
    pictures = method.pictures(x)
    hidden = pictures["mask"][:, 0, ::4, ::4].reshape(2, 16).bool()
    back = method.predict_masked(x, hidden) * patchify(std, 4) + patchify(mean, 4)
    assert torch.allclose(patchify(pictures["reconstruction"], 4)[hidden], back[hidden], atol=1e-5)
    for bad in (4, 1):
        with pytest.raises(ConfigError, match="norm_target_window"):
            small_simmim(norm_target_window=bad)


def test_a_run_keeps_its_head_in_its_checkpoints(method_runs):
    assert "head.weight" in method_runs.resumed("simmim").straight_state()["method"]
