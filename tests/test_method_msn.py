"""MSN: the loss against the reference's formulas, patch dropping, prototypes, the target's
momentum, and what a short multi-crop run reports and keeps. What every method keeps (a ViT only,
an exact resume, masks per step and per process, no gradient into the target) is in
test_method_contract.py."""

import dataclasses
import math

import pytest
import torch

from ssl_engine.methods.msn import MSN, MSNParams, global_batch_mean
from ssl_engine.models.vit import VisionTransformer
from tests.helpers import reference_sinkhorn
from tests.method_runs import run_config

def small_msn(**changes):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=4, dim=24, depth=1, heads=2, name="vit_tiny")
    params = dataclasses.replace(MSNParams(hidden_dim=32, projection_dim=16, num_prototypes=8), **changes)
    return MSN(vit, params, total_steps=100)


def multi_crop(n=6):
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(n, 3, 16, 16, generator=generator) for _ in range(2)] + \
           [torch.randn(n, 3, 8, 8, generator=generator) for _ in range(3)]


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


def test_memax_weight_scales_the_regulariser_and_gradients_reach_the_prototypes():
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


def test_a_multi_crop_run_reports_its_terms_and_keeps_its_prototypes_and_target(tmp_path, method_runs):
    # tests.method_runs: 16 px images, two global and two local (8 px) views, 16 prototypes of 32 dimensions
    assert [v.output_size for v in run_config(tmp_path, "msn").augment.views][2:] == [8, 8]
    run = method_runs.resumed("msn")
    for terms in run.straight.terms.values():
        assert set(terms) == {"cross-entropy", "me-max entropy", "target entropy"}
        assert all(math.isfinite(v) for v in terms.values()) and 0 < terms["me-max entropy"] <= math.log(16) + 1e-6
    saved = run.stopped_state()["method"]
    assert saved["prototypes"].shape == (16, 32) and any(k.startswith("target_backbone.") for k in saved)
    assert not torch.equal(run.resumed_state()["method"]["prototypes"], saved["prototypes"])  # trained on


def test_a_weight_decay_schedule_leaves_the_prototypes_undecayed():
    from ssl_engine.config import OptimConfig
    from ssl_engine.train.optim import build_optimizer, set_weight_decay

    method = small_msn()
    optimizer = build_optimizer(method, method.parameter_groups(), OptimConfig(name="adamw", weight_decay=0.04), 1e-3)
    set_weight_decay(optimizer, 0.3)
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay_of[id(method.prototypes)] == 0.0
    assert 0.3 in decay_of.values()
