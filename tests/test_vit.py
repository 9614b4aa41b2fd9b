"""Vision Transformer backbones: shapes, tokens, masking, kept patches, attention, positions."""

import pytest
import torch

from ssl_engine.config import ExperimentConfig
from ssl_engine.models import build_backbone


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return build_backbone("vit_tiny", image_size=32, patch_size=4).eval()


def test_class_token_features_and_token_grid(vit):
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = vit.tokens(images)
        features = vit(images)
    assert tokens.shape == (2, 1 + 8 * 8, 192) and features.shape == (2, vit.feature_dim) == (2, 192)
    assert torch.allclose(features, tokens[:, 0])


def test_mask_token_replaces_exactly_the_masked_patches(vit):
    images = torch.randn(1, 3, 32, 32)
    mask = torch.zeros(1, 64, dtype=torch.bool)
    mask[0, [3, 10]] = True
    with torch.no_grad():
        plain, masked = vit.embed(images), vit.embed(images, mask=mask)
        other = vit.embed(torch.randn(1, 3, 32, 32), mask=mask)
    changed = (plain != masked).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == [4, 11]  # +1: the class token comes first
    assert torch.allclose(masked[0, 4], other[0, 4])  # a masked patch no longer depends on the image


def test_kept_patches_are_gathered_with_their_positions(vit):
    images = torch.randn(2, 3, 32, 32)
    keep = torch.tensor([[0, 5, 63], [7, 8, 9]])
    with torch.no_grad():
        kept, everything = vit.embed(images, keep=keep), vit.embed(images)
    assert kept.shape == (2, 4, 192)
    assert torch.allclose(kept[0, 1:], everything[0, 1 + keep[0]])
    assert torch.allclose(kept[1, 1:], everything[1, 1 + keep[1]])


def test_last_attention_rows_are_distributions(vit):
    attention = vit.last_attention(torch.randn(2, 3, 32, 32))
    assert attention.shape == (2, 3, 65, 65)
    assert torch.allclose(attention.sum(-1), torch.ones(2, 3, 65), atol=1e-5)


def test_smaller_crops_use_interpolated_positions(vit):
    with torch.no_grad():
        assert vit(torch.randn(2, 3, 16, 16)).shape == (2, 192)
        assert vit.position_embedding(8) is vit.pos_embed
        assert vit.position_embedding(4).shape == (1, 17, 192)


def test_patch_size_must_divide_every_view():
    config = ExperimentConfig.for_method("simclr").with_overrides(["backbone.name=vit_tiny", "backbone.patch_size=5"])
    assert config.problems() == ["backbone.patch_size (5) must divide every view's size for a ViT, and 32 px does not"]
    assert config.problems() == [("backbone.patch_size", "(5) must divide every view's size for a ViT, and 32 px does not")]
    fine = ExperimentConfig.for_method("simclr").with_overrides(["backbone.name=vit_tiny", "backbone.patch_size=8"])
    assert fine.problems() == []


def test_evaluation_features_follow_the_config_and_the_methods_choice():
    """A ViT's kNN / probe / map features: the class token by default, the mean patch token for
    the methods that evaluate it (I-JEPA, SimMIM, MaskFeat), and the user's explicit choice."""
    from ssl_engine.config import ExperimentConfig, vit_features_for
    from ssl_engine.eval.embed import embed
    from ssl_engine.models.build import build_backbone_for

    def config(method, *extra):
        return ExperimentConfig.for_method(method).with_overrides(
            ["backbone.name=vit_tiny", "backbone.patch_size=8", *extra]).validate()

    assert vit_features_for(config("dino")) == "class_token"
    assert vit_features_for(config("ijepa")) == "mean_patch"
    assert vit_features_for(config("dino", "backbone.vit_features=mean_patch")) == "mean_patch"
    assert vit_features_for(config("ijepa", "backbone.vit_features=class_token")) == "class_token"

    torch.manual_seed(0)
    backbone = build_backbone_for(config("ijepa"))
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    stats = dict(mean=[0.5] * 3, std=[0.25] * 3)
    normalised = (images.float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        tokens = backbone.eval().tokens(normalised)
    torch.testing.assert_close(embed(backbone, images, **stats), tokens[:, 1:].mean(dim=1))
    # what the method trains on (DeepCluster and SeLa cluster it) stays the class token
    torch.testing.assert_close(embed(backbone, images, **stats, for_evaluation=False), tokens[:, 0])
    backbone.evaluation_pooling = "class_token"
    torch.testing.assert_close(embed(backbone, images, **stats), tokens[:, 0])


def test_the_constructor_takes_the_evaluation_pooling_and_refuses_an_unknown_one():
    from ssl_engine.models.vit import VisionTransformer

    layout = dict(image_size=16, patch_size=8, dim=8, depth=1, heads=2, name="vit_tiny")
    assert VisionTransformer(**layout).evaluation_pooling == "class_token"
    assert VisionTransformer(**layout, evaluation_pooling="mean_patch").evaluation_pooling == "mean_patch"
    with pytest.raises(ValueError, match="evaluation pooling must be one of class_token, mean_patch"):
        VisionTransformer(**layout, evaluation_pooling="mean")


def test_vit_depth_from_the_config_sets_the_blocks_and_round_trips():
    from ssl_engine.models.build import build_backbone_for

    config = ExperimentConfig.for_method("mae").with_overrides(["backbone.vit_depth=4", "backbone.patch_size=8"])
    vit = build_backbone_for(config.validate())
    assert len(vit.blocks) == 4 and vit.grid == 4
    assert ExperimentConfig.from_dict(config.to_dict()).backbone.vit_depth == 4
    assert len(build_backbone("vit_tiny", image_size=32).blocks) == 12  # ViT-Tiny's own depth by default


def test_position_embeddings_are_learnt_or_fixed_sincos_as_the_method_chose():
    """MAE, I-JEPA and MoCo v3 fix a ViT's position embeddings to 2-D sin-cos, as their code
    does; SimMIM and BEiT use a relative position bias instead (tests/test_relative_position.py);
    the others learn them; the user may choose any. Fixed ones take no gradient and do not move
    when the backbone trains."""
    from ssl_engine.config import position_embedding_for
    from ssl_engine.models.vit import sincos_position_embedding
    from ssl_engine.models.build import build_backbone_for

    def config(method, *extra):
        return ExperimentConfig.for_method(method).with_overrides(
            ["backbone.name=vit_tiny", "backbone.patch_size=8", "backbone.vit_depth=2", *extra]).validate()

    assert [position_embedding_for(config(m)) for m in ("mae", "ijepa", "moco_v3", "simmim", "dino", "beit")] == \
        ["sincos", "sincos", "sincos", "relative", "learnt", "relative"]
    assert position_embedding_for(config("dino", "backbone.position_embedding=sincos")) == "sincos"
    assert position_embedding_for(config("mae", "backbone.position_embedding=learnt")) == "learnt"

    torch.manual_seed(0)
    fixed, learnt = build_backbone_for(config("mae")), build_backbone_for(config("dino"))
    torch.testing.assert_close(fixed.pos_embed.detach(), sincos_position_embedding(192, 4))
    assert not fixed.pos_embed.requires_grad and learnt.pos_embed.requires_grad
    assert learnt.pos_embed.std() < 0.05       # learnt: truncated normal, std 0.02
    before = {name: p.detach().clone() for name, p in (("fixed", fixed.pos_embed), ("learnt", learnt.pos_embed))}
    for name, vit in (("fixed", fixed), ("learnt", learnt)):
        optimiser = torch.optim.AdamW([p for p in vit.parameters() if p.requires_grad], lr=1e-2)
        vit(torch.randn(4, 3, 32, 32)).square().mean().backward()
        optimiser.step()
    assert torch.equal(fixed.pos_embed, before["fixed"])
    assert not torch.allclose(learnt.pos_embed, before["learnt"])
    with pytest.raises(Exception, match="backbone.position_embedding"):
        config("mae", "backbone.position_embedding=rope")
