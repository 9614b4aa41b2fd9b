"""MSN: the loss against the reference's formulas, patch dropping, prototypes, the target's
momentum, ViT-only, and a short ViT training run that resumes with its state."""

import dataclasses
import math

import pytest
import torch

from ssl_engine.errors import ConfigError
from ssl_engine.methods.msn import MSN, MSNParams, global_batch_mean
from ssl_engine.models.backbones import build_backbone
from ssl_engine.models.vit import VisionTransformer
from ssl_engine.train import EventRates, Trainer, TrainingControl
from ssl_engine.checkpoint import load_checkpoint
from ssl_engine.train.events import RunStarted, StepMetrics
from tests.helpers import reference_sinkhorn, tiny_config

SMALL = ["backbone.name=vit_tiny", "data.image_size=16", "method.hidden_dim=32", "method.projection_dim=16", "method.num_prototypes=8"]


def small_msn(**changes):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=4, dim=24, depth=1, heads=2, name="vit_tiny")
    params = dataclasses.replace(MSNParams(hidden_dim=32, projection_dim=16, num_prototypes=8), **changes)
    return MSN(vit, params, total_steps=100)


def multi_crop(n=6):
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(n, 3, 16, 16, generator=generator) for _ in range(2)] + \
           [torch.randn(n, 3, 8, 8, generator=generator) for _ in range(3)]


def test_msn_needs_a_vision_transformer():
    with pytest.raises(ConfigError, match="msn masks ViT patches: backbone.name must be vit_tiny or vit_small, got small_cnn"):
        MSN(build_backbone("small_cnn", image_size=16), MSNParams(), total_steps=10)


def test_a_cnn_backbone_is_a_config_problem_at_the_field(tmp_path):
    with pytest.raises(ConfigError) as error:
        tiny_config(tmp_path, "msn", "backbone.name=small_cnn", count=100, batch=40)
    assert error.value.problems == ["backbone.name must be vit_tiny or vit_small for msn, got 'small_cnn'"]


@pytest.mark.parametrize("sinkhorn_iterations", [0, 3])
def test_loss_matches_the_reference_formulas(sinkhorn_iterations):
    method = small_msn(mask_ratio=0.0, sinkhorn_iterations=sinkhorn_iterations)
    method.eval()  # per-sample BatchNorm, so that the hand computation may encode views in any grouping
    views = multi_crop()
    output = method(views, 0)
    with torch.no_grad():
        prototypes = torch.nn.functional.normalize(method.prototypes, dim=1)

        def cosine(z):
            return torch.nn.functional.normalize(z, dim=1) @ prototypes.T

        anchors = [cosine(method.projector(method.backbone(v))) for v in views]  # nothing masked at ratio 0
        targets = []
        for v in views[:2]:
            # the reference: softmax at tau, sharpened by p^(1/T) with T = 0.25, then Sinkhorn
            p = torch.softmax(cosine(method.target_projector(method.target_backbone(v))) / 0.1, dim=1)
            p = p ** 4 / (p ** 4).sum(dim=1, keepdim=True)
            targets.append(reference_sinkhorn(p, sinkhorn_iterations) if sinkhorn_iterations else p)
        cross_entropy, pairs = 0.0, 0
        for i, target in enumerate(targets):
            for j, anchor in enumerate(anchors):
                if i != j:  # never a masked view against its own unmasked copy
                    cross_entropy += -(target * torch.log_softmax(anchor / 0.1, dim=1)).sum(dim=1).mean()
                    pairs += 1
        cross_entropy /= pairs
        mean_prediction = torch.softmax(torch.cat(anchors) / 0.1, dim=1).mean(dim=0)
        memax = (mean_prediction * mean_prediction.log()).sum() + math.log(8)  # the reference's rloss
        target_entropy = -(torch.cat(targets) * torch.cat(targets).log()).sum(dim=1).mean()
    assert pairs == 8
    assert output.loss.item() == pytest.approx((cross_entropy + memax).item(), rel=1e-4)
    assert output.terms["cross-entropy"].item() == pytest.approx(cross_entropy.item(), rel=1e-4)
    assert output.terms["me-max entropy"].item() == pytest.approx(math.log(8) - memax.item(), rel=1e-4)
    assert output.terms["target entropy"].item() == pytest.approx(target_entropy.item(), rel=1e-3)
    usage = method.histograms(output)["prototype usage"]
    assert usage.shape == (8,) and usage.sum() == 12  # argmax of each of the 2 x 6 targets
    assert torch.equal(usage, torch.bincount(torch.cat(targets).argmax(dim=1), minlength=8).float())
    assert output.embeddings[0].shape == (6, 16)


def test_memax_weight_scales_the_regulariser_and_gradients_reach_prototypes_and_encoder():
    views = multi_crop()
    plain = small_msn(memax_weight=0.0)(views, 0)
    weighted = small_msn(memax_weight=2.0)
    torch.manual_seed(5)
    output = weighted(views, 0)
    # the masks differ between the two calls: compare each loss with its own terms
    assert plain.loss.item() == pytest.approx(plain.terms["cross-entropy"].item(), rel=1e-6)
    expected = output.terms["cross-entropy"] + 2.0 * (math.log(8) - output.terms["me-max entropy"])
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    output.loss.backward()
    assert weighted.prototypes.grad is not None and weighted.prototypes.grad.abs().sum() > 0
    assert weighted.backbone.patch_embed.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in weighted.target_backbone.parameters())


def test_global_views_lose_mask_ratio_of_their_patches_and_local_views_none(monkeypatch):
    method = small_msn(mask_ratio=0.3)
    calls = []
    real_tokens = method.backbone.tokens

    def spy(images, mask=None, keep=None):
        calls.append((images.shape, keep))
        return real_tokens(images, mask=mask, keep=keep)

    monkeypatch.setattr(method.backbone, "tokens", spy)
    method(multi_crop(), 0)
    masked = [(shape, keep) for shape, keep in calls if keep is not None]
    assert len(masked) == 1
    shape, keep = masked[0]
    assert shape == (12, 3, 16, 16) and keep.shape == (12, 11)  # floor(16 x 0.7) of 16 patches kept
    assert all(len(row.unique()) == 11 and row.max() < 16 for row in keep)
    assert len({tuple(row.sort().values.tolist()) for row in keep}) > 1  # a mask per image
    assert any(shape[-1] == 8 and keep is None for shape, keep in calls)  # local views whole


def test_target_momentum_rises_linearly_to_one_at_one_and_a_quarter_runs():
    method = small_msn()
    online = [p.detach().clone() for p in method.backbone.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    before = [p.clone() for p in method.target_backbone.parameters()]
    method.after_optimizer_step(0)
    assert method.momentum == pytest.approx(0.996)
    for target, old, new in zip(method.target_backbone.parameters(), before, online):
        assert torch.allclose(target, 0.996 * old + 0.004 * (new + 1.0), atol=1e-6)
    method.after_optimizer_step(50)
    assert method.momentum == pytest.approx(0.996 + 0.004 * 50 / 125)
    method.after_optimizer_step(100)
    assert method.momentum == pytest.approx(0.996 + 0.004 * 0.8)


def test_global_batch_mean_is_the_mean_with_its_gradient_in_one_process():
    x = torch.randn(5, 3, requires_grad=True)
    mean = global_batch_mean(x)
    assert torch.allclose(mean, x.mean(dim=0))
    mean.sum().backward()
    assert torch.allclose(x.grad, torch.full((5, 3), 0.2))


def test_prototypes_have_no_weight_decay():
    method = small_msn()
    groups = method.parameter_groups()
    undecayed = [g for g in groups if g.get("weight_decay") == 0.0]
    assert len(undecayed) == 1 and undecayed[0]["params"] == [method.prototypes]
    assert method.prototypes.shape == (8, 16) and not any(p is method.prototypes for p in groups[0]["params"])


def test_trains_on_vit_tiny_with_multi_crop_and_resumes_with_its_prototypes_and_target(tmp_path):
    def config():
        base = tiny_config(tmp_path, "msn", *SMALL, count=100, batch=40)
        # 16 px images, two global and two local views keep the CPU step short
        return dataclasses.replace(base, augment=dataclasses.replace(base.augment, views=base.augment.views[:4]))

    assert [v.output_size for v in config().augment.views][2:] == [8, 8]
    control = TrainingControl()
    first = Trainer(config(), control=control)
    seen = []
    first.subscribe(lambda e: seen.append(e) or (control.stop() if isinstance(e, StepMetrics) else None),
                    EventRates(metrics_every_steps=1))
    assert first.run()["steps"] == 1
    terms = [e.terms for e in seen if isinstance(e, StepMetrics)][0]
    assert set(terms) == {"cross-entropy", "me-max entropy", "target entropy"}
    assert all(math.isfinite(v) for v in terms.values()) and 0 < terms["me-max entropy"] <= math.log(8) + 1e-6
    saved = load_checkpoint(first.run_dir)["method"]
    assert saved["prototypes"].shape == (8, 16) and any(k.startswith("target_backbone.") for k in saved)

    resumed = Trainer(config(), resume=first.run_dir)
    restored = {}
    resumed.subscribe(lambda e: restored.update({k: v.clone() for k, v in resumed.method.state_dict().items()})
                      if isinstance(e, RunStarted) else None)
    summary = resumed.run()
    assert summary["steps"] == 2 and math.isfinite(summary["final_loss"])
    for key in ("prototypes", "target_backbone.pos_embed", "target_projector.6.weight"):
        assert torch.equal(restored[key], saved[key]), key
    assert not torch.equal(load_checkpoint(first.run_dir)["method"]["prototypes"], saved["prototypes"])


def test_a_weight_decay_schedule_leaves_the_prototypes_undecayed():
    from ssl_engine.config import OptimConfig
    from ssl_engine.train.optim import build_optimizer, set_weight_decay

    method = small_msn()
    optimizer = build_optimizer(method, method.parameter_groups(), OptimConfig(name="adamw", weight_decay=0.04), 1e-3)
    set_weight_decay(optimizer, 0.3)
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay_of[id(method.prototypes)] == 0.0
    assert 0.3 in decay_of.values()


def test_each_process_keeps_its_rows_of_every_views_masks(monkeypatch):
    """MaskedMethod.step_masks with two views: the masks are drawn view by view for the global
    batch, and each of 2 processes of 3 images keeps its rows of each view, (views * 3, kept)."""
    import ssl_engine.methods.masked as masked

    method = small_msn()
    x = multi_crop(6)[0]
    whole = method.step_masks(x, 4, views=2)                    # (2 views x 6 images, kept)
    assert whole.shape == (12, 13) and torch.equal(whole, method.step_masks(x, 4, views=2))
    first, second = whole[:6], whole[6:]
    assert not torch.equal(first, second)                       # each view gets its own draw
    monkeypatch.setattr(masked, "world_size", lambda: 2)
    for rank in (0, 1):
        monkeypatch.setattr(masked, "rank", lambda rank=rank: rank)
        mine = method.step_masks(x[3 * rank:3 * rank + 3], 4, views=2)
        assert torch.equal(mine, torch.cat([first[3 * rank:3 * rank + 3], second[3 * rank:3 * rank + 3]]))
