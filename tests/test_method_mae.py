"""MAE: the masked MSE against a hand computation, patchify, the encoder seeing only the visible
patches, the decoder putting them back in place, its mask token, pictures, and what a run keeps.
What every method keeps (a ViT only, the paper's recipe, an exact resume, masks per step and per
process, the ViT's own mask token frozen) is in test_method_contract.py."""

import dataclasses
import math

import pytest
import torch

from ssl_engine import losses
from ssl_engine.errors import ConfigError
from ssl_engine.masking import random_patch_mask
from ssl_engine.methods.mae import MAE, MAEParams
from ssl_engine.models.vit import sincos_position_embedding
from ssl_engine.methods.base import step_generator
from ssl_engine.models.vit import VisionTransformer, patchify, unpatchify


def small_mae(**changes):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=4, dim=24, depth=1, heads=2, name="vit_tiny")
    params = dataclasses.replace(MAEParams(decoder_dim=16, decoder_depth=1, decoder_heads=2), **changes)
    return MAE(vit, params, total_steps=10)


def images(n=3, seed=1):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


# -- the loss ------------------------------------------------------------------------------
def test_masked_patch_mse_matches_a_hand_computation():
    pred = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]]])
    target = torch.tensor([[[0.0, 0.0], [5.0, 5.0], [1.0, 3.0]]])
    mask = torch.tensor([[True, False, True]])
    # masked patches 0 and 2: ((1 + 4) / 2 + (4 + 4) / 2) / 2; patch 1 is visible and ignored
    assert losses.masked_patch_mse(pred, target, mask, normalize_target=False).item() == pytest.approx(3.25)
    # normalised targets: patch 0 = (0, 0) -> (0, 0); patch 2 = (1, 3): mean 2, unbiased var 2
    t2 = torch.tensor([-1.0, 1.0]) / math.sqrt(2 + 1e-6)
    expected = (((1 - 0) ** 2 + (2 - 0) ** 2) / 2 + ((3 - t2[0]) ** 2 + (1 - t2[1]) ** 2) / 2) / 2
    assert losses.masked_patch_mse(pred, target, mask).item() == pytest.approx(expected.item(), rel=1e-6)


def test_masked_patch_mse_is_zero_for_a_perfect_prediction_and_ignores_visible_patches():
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(4, 16, 12, generator=generator)
    mask = random_patch_mask(4, 16, 0.75, generator=generator)
    assert losses.masked_patch_mse(target, target, mask, normalize_target=False).item() == pytest.approx(0, abs=1e-12)
    normalised = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert losses.masked_patch_mse(normalised, target, mask).item() == pytest.approx(0, abs=1e-10)
    pred = torch.randn(4, 16, 12, generator=generator)
    changed = torch.where(mask.unsqueeze(-1), pred, pred + 10 * torch.randn(4, 16, 12, generator=generator))
    for normalise in (True, False):
        assert losses.masked_patch_mse(changed, target, mask, normalise).item() == \
            pytest.approx(losses.masked_patch_mse(pred, target, mask, normalise).item(), rel=1e-6)
    assert losses.masked_patch_mse(pred + mask.unsqueeze(-1), target, mask).item() != \
        pytest.approx(losses.masked_patch_mse(pred, target, mask).item())


def test_patchify_lays_out_patches_row_by_row_with_channels_last_and_unpatchify_inverts_it():
    x = torch.randn(2, 3, 16, 8)
    patches = patchify(x, 4)
    assert patches.shape == (2, 8, 48)
    # patch (row 2, column 1) of a 4 x 2 grid is index 5; pixels row by row, channels last
    assert torch.equal(patches[1, 5], x[1, :, 8:12, 4:8].permute(1, 2, 0).reshape(-1))
    square = torch.randn(2, 3, 16, 16)
    assert torch.equal(unpatchify(patchify(square, 4), 4), square)
    with pytest.raises(ValueError):
        unpatchify(torch.zeros(1, 8, 48), 4)


def test_sincos_position_embedding_encodes_column_then_row():
    position = sincos_position_embedding(8, 3)
    assert position.shape == (1, 10, 8) and position[0, 0].abs().sum() == 0  # the class token's
    # patch (row 1, column 2) is index 1 + 5; frequencies 1 and 1/100 for a width of 8
    expected = torch.tensor([math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02),
                             math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)])
    assert torch.allclose(position[0, 6], expected, atol=1e-6)


# -- the method ----------------------------------------------------------------------------
def test_a_mask_ratio_that_hides_every_patch_is_a_config_problem():
    with pytest.raises(ConfigError, match="hides all 16 patches"):
        small_mae(mask_ratio=0.99)


def test_the_encoder_sees_only_the_visible_patches(monkeypatch):
    method = small_mae()
    kept = []
    real_tokens = method.backbone.tokens
    monkeypatch.setattr(method.backbone, "tokens",
                        lambda x, mask=None, keep=None: kept.append((mask, keep)) or real_tokens(x, mask=mask, keep=keep))
    x = images()
    output = method([x], 5)
    (mask_given, keep), = kept
    assert mask_given is None and keep.shape == (3, 4)                  # 4 of 16 patches visible
    # the step's masks come from a generator seeded by the method's seed and the step
    mask = random_patch_mask(3, 16, 0.75, generator=step_generator(method.mask_seed, 5))
    assert torch.equal(keep, (~mask).nonzero()[:, 1].reshape(3, 4))
    expected = losses.masked_patch_mse(method._reconstruct(x, mask), patchify(x, 4), mask)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(output.terms) == {"reconstruction"}

    # pixels of a hidden patch reach neither the encoder nor the prediction; a visible one's do
    hidden, visible = int(mask[0].nonzero()[0]), int((~mask[0]).nonzero()[0])
    before = method._reconstruct(x, mask)

    def change_patch(index):
        changed = x.clone()
        row, column = divmod(index, 4)
        changed[0, :, 4 * row:4 * row + 4, 4 * column:4 * column + 4] += 5.0
        return method._reconstruct(changed, mask)

    assert torch.equal(change_patch(hidden), before)
    assert not torch.allclose(change_patch(visible)[0], before[0])


def test_the_decoder_puts_the_visible_tokens_back_in_place_among_mask_tokens():
    method = small_mae()
    decoder = method.decoder
    decoder.blocks = torch.nn.ModuleList()  # no attention: each output is its own token's
    encoded = torch.randn(2, 1 + 3, 24)
    visible = torch.tensor([[0, 5, 9], [2, 3, 15]])
    out = decoder(encoded, visible, 16)
    assert out.shape == (2, 16, 48)
    position = sincos_position_embedding(16, 4)[0]
    for n in range(2):
        for i in range(16):
            if i in visible[n].tolist():
                token = decoder.embed(encoded[n, 1 + visible[n].tolist().index(i)])
            else:
                token = decoder.mask_token[0, 0]
            assert torch.allclose(out[n, i], decoder.predict(decoder.norm(token + position[1 + i])), atol=1e-5)


def test_the_decoders_mask_token_learns():
    method = small_mae()
    method([images()], 0).loss.backward()
    assert method.decoder.mask_token.grad.abs().sum() > 0


def test_pictures_show_a_seeded_mask_and_the_input_where_visible():
    method = small_mae()
    x = images(n=4)
    pictures = method.pictures(x)
    assert set(pictures) == {"mask", "reconstruction"}
    assert pictures["mask"].shape == (4, 1, 16, 16) and pictures["reconstruction"].shape == (4, 3, 16, 16)
    assert (pictures["mask"].mean(dim=(1, 2, 3)) == 0.75).all()
    visible = pictures["mask"].expand(-1, 3, -1, -1) == 0
    assert torch.equal(pictures["reconstruction"][visible], x[visible])
    assert not torch.allclose(pictures["reconstruction"][~visible], x[~visible])
    # hidden patches: the prediction, taken out of per-patch normalisation with the true patch's statistics
    mask = pictures["mask"][:, 0, ::4, ::4].reshape(4, 16).bool()
    target = patchify(x, 4)
    predicted = method._reconstruct(x, mask)
    expected = predicted * (target.var(-1, keepdim=True) + 1e-6).sqrt() + target.mean(-1, keepdim=True)
    assert torch.allclose(patchify(pictures["reconstruction"], 4)[mask], expected[mask], atol=1e-5)
    assert method.held_out_loss(x) == pytest.approx(method.held_out_loss(x), rel=1e-9)
    assert method.held_out_loss(x) == pytest.approx(losses.masked_patch_mse(predicted, target, mask).item(), rel=1e-6)


def test_a_run_keeps_the_decoder_in_its_checkpoints(method_runs):
    assert "decoder.mask_token" in method_runs.resumed("mae").straight_state()["method"]
