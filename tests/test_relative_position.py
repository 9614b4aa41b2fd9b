"""The relative position bias shared by a ViT's blocks (BEiT, SimMIM): its index, the attention
it biases, kept subsets, other grids, training, mixed precision."""

import torch

from ssl_engine.config import ExperimentConfig
from ssl_engine.models.relative_position import relative_position_index
from ssl_engine.models.vit import build_vit


def relative_vit(depth: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    vit = build_vit("vit_tiny", image_size=32, patch_size=8, depth=depth, position="relative").eval()
    with torch.no_grad():  # a trained-looking table: the fresh one is all zeros
        vit.relative_position.table.normal_()
    return vit


def test_index_by_hand_on_a_two_by_two_grid():
    """Tokens: class, then patches (0,0) (0,1) (1,0) (1,1). Offsets (down, across) in [-1, 1]
    map to (down + 1) * 3 + (across + 1); then class -> patch 9, patch -> class 10, class -> class 11."""
    index = relative_position_index(2, 2)
    expected = torch.tensor([
        [11, 9, 9, 9, 9],
        [10, 4, 3, 1, 0],
        [10, 5, 4, 2, 1],
        [10, 7, 6, 4, 3],
        [10, 8, 7, 5, 4],
    ])
    assert torch.equal(index, expected)


def test_attention_adds_the_tables_entry_for_each_pair_in_every_block():
    vit = relative_vit()
    images = torch.randn(2, 3, 32, 32)
    x = vit.embed(images)
    attention = vit.blocks[0].attn
    n, t, d = x.shape
    heads = attention.heads
    q, k, _ = attention.qkv(vit.blocks[0].norm1(x)).reshape(n, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    index = relative_position_index(4, 4)
    bias = torch.stack([vit.relative_position.table[index, h] for h in range(heads)])   # (heads, T, T)
    by_hand = (q @ k.transpose(-2, -1) / (d // heads) ** 0.5 + bias).softmax(-1)
    _, weights = vit.blocks[0](x, vit.attention_bias(images), return_attention=True)
    torch.testing.assert_close(weights, by_hand)
    # the fused kernel (training) and the explicit softmax (attention maps) agree
    with torch.no_grad():
        fused = vit.blocks[0](x, vit.attention_bias(images))
        explicit, _ = vit.blocks[0](x, vit.attention_bias(images), return_attention=True)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    # one table for all blocks: the last block's maps change with it too
    before = vit.last_attention(images)
    with torch.no_grad():
        vit.relative_position.table.zero_()
    assert not torch.allclose(vit.last_attention(images), before, atol=1e-3)


def test_positions_reach_the_tokens_only_through_the_bias():
    """No absolute embeddings: with the table at zero a ViT cannot tell where a patch is (swapping
    two patches swaps their output tokens); with a trained table it can."""
    vit = relative_vit()
    assert not vit.pos_embed.requires_grad and not vit.pos_embed.any()
    images = torch.randn(1, 3, 32, 32)
    swapped = images.clone()
    swapped[..., 0:8, 0:8], swapped[..., 24:32, 24:32] = images[..., 24:32, 24:32], images[..., 0:8, 0:8]
    with torch.no_grad():
        trained, trained_swapped = vit.tokens(images), vit.tokens(swapped)
        vit.relative_position.table.zero_()
        blind, blind_swapped = vit.tokens(images), vit.tokens(swapped)
    torch.testing.assert_close(blind_swapped[:, 1], blind[:, 16], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(trained_swapped[:, 1], trained[:, 16], atol=1e-3)


def test_kept_patches_get_the_bias_of_their_own_positions():
    """MAE and MSN encode a subset: its bias is the full image's, restricted to the kept tokens."""
    vit = relative_vit()
    keep = torch.tensor([[0, 5, 15], [3, 2, 9]])
    full = vit.relative_position(4)[0]
    subset = vit.relative_position(4, keep)
    for n in range(2):
        tokens = torch.cat([torch.zeros(1, dtype=torch.long), keep[n] + 1])
        assert torch.equal(subset[n], full[:, tokens][:, :, tokens])
    images = torch.randn(2, 3, 32, 32)
    assert vit.tokens(images, keep=keep).shape == (2, 4, 192)


def test_other_grids_use_the_same_offsets_and_clamp_beyond_the_table():
    vit = relative_vit()
    small, full = vit.relative_position(2)[0], vit.relative_position(4)[0]
    # patches (0,0) (0,1) (1,0) (1,1) of the 4 x 4 grid are tokens 1, 2, 5, 6
    corner = torch.tensor([0, 1, 2, 5, 6])
    assert torch.equal(small, full[:, corner][:, :, corner])
    large = relative_position_index(6, 4)
    assert large.max() == (2 * 4 - 1) ** 2 + 2
    assert large[1, 36] == relative_position_index(4, 4)[1, 16]   # offset (-5, -5) clamps to (-3, -3)
    assert vit.tokens(torch.randn(1, 3, 48, 48)).shape == (1, 37, 192)


def test_the_table_trains_from_zero_and_mixed_precision_runs():
    from ssl_engine.models.build import build_backbone_for
    config = ExperimentConfig.for_method("simclr").with_overrides(
        ["backbone.name=vit_tiny", "backbone.patch_size=8", "backbone.vit_depth=2",
         "backbone.position_embedding=relative"]).validate()
    torch.manual_seed(0)
    vit = build_backbone_for(config)
    assert not vit.relative_position.table.any()   # zeros, as in the BEiT and SimMIM codes
    optimiser = torch.optim.AdamW([p for p in vit.parameters() if p.requires_grad], lr=1e-2)
    vit.tokens(torch.randn(4, 3, 32, 32))[:, 1:].square().mean().backward()
    optimiser.step()
    assert vit.relative_position.table.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = vit(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 192) and torch.isfinite(features).all()


def test_the_table_and_layer_scales_get_no_weight_decay():
    from ssl_engine.train.optim import split_decay_groups
    torch.manual_seed(0)
    vit = build_vit("vit_tiny", image_size=32, patch_size=8, depth=2, position="relative", layer_scale=0.1)
    groups = split_decay_groups(vit, [{"params": [p for p in vit.parameters() if p.requires_grad]}])
    excluded = {id(p) for g in groups if g.get("weight_decay") == 0.0 for p in g["params"]}
    decayed = {id(p) for g in groups if g.get("weight_decay") is None for p in g["params"]}
    assert id(vit.relative_position.table) in excluded and id(vit.blocks[0].gamma1) in excluded
    assert id(vit.blocks[0].attn.qkv.weight) in decayed


def test_layer_scale_multiplies_each_branch_by_its_learnt_scale():
    """x + g1 * attention(norm1(x)), then + g2 * mlp(norm2(.)): with g = 0.1 each branch adds a
    tenth of what it adds without LayerScale; the methods that use it say so."""
    from ssl_engine.config import layer_scale_for
    from ssl_engine.models.vit import Block
    torch.manual_seed(0)
    plain = Block(192, 3)
    scaled = Block(192, 3, layer_scale=0.1)
    scaled.load_state_dict({**plain.state_dict(), "gamma1": torch.full((192,), 0.1),
                            "gamma2": torch.full((192,), 0.1)})
    x = torch.randn(2, 5, 192)
    with torch.no_grad():
        attention_branch = plain.attn(plain.norm1(x))
        after_attention = x + 0.1 * attention_branch
        expected = after_attention + 0.1 * plain.mlp(plain.norm2(after_attention))
        torch.testing.assert_close(scaled(x), expected)
        out, weights = scaled(x, return_attention=True)
        torch.testing.assert_close(out, expected)
        assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 5))

    def config(method, *extra):
        return ExperimentConfig.for_method(method).with_overrides(["backbone.name=vit_tiny", *extra]).validate()
    assert [layer_scale_for(config(m)) for m in ("simmim", "beit", "mae", "dino")] == [0.1, 0.1, 0.0, 0.0]
    assert layer_scale_for(config("dino", "backbone.layer_scale=on")) == 0.1
    assert layer_scale_for(config("beit", "backbone.layer_scale=off")) == 0.0
