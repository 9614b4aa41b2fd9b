"""MoCo v3: the symmetric in-batch contrastive loss, its heads, the momentum encoder, the random
patch projection on a ViT. What every method keeps (an exact resume, training on a ViT, no
gradient into the momentum encoder) is in test_method_contract.py."""

import pytest
import torch
from torch import nn

from ssl_engine import losses
from ssl_engine.methods.moco_v3 import MoCoV3, MoCoV3Params
from ssl_engine.models.backbones import build_backbone


def make_method(backbone="small_cnn", total_steps=10, **params):
    torch.manual_seed(0)
    params = MoCoV3Params(**{"hidden_dim": 32, "projection_dim": 16, **params})
    return MoCoV3(build_backbone(backbone, image_size=32, patch_size=4), params, total_steps)


def test_loss_is_the_sum_of_both_directions_with_the_momentum_encoders_keys():
    method = make_method(temperature=0.2)
    views = [torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)]
    # make the momentum encoder differ from the base encoder, so that mixing them up would show
    with torch.no_grad():
        for p in method.momentum_projector.parameters():
            p.add_(0.5)
    output = method(views, step=0)
    with torch.no_grad():
        q1, q2 = (method.predictor(method.projector(method.backbone(v))) for v in views)
        k1, k2 = (method.momentum_projector(method.momentum_backbone(v)) for v in views)
        expected = losses.moco_v3_contrastive(q1, k2, 0.2) + losses.moco_v3_contrastive(q2, k1, 0.2)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(output.terms) == {"contrastive", "momentum"}
    z1, z2 = output.embeddings
    assert z1.shape == z2.shape == (6, 16) and not z1.requires_grad


@pytest.mark.parametrize("backbone, projector_layers, predictor_last_bn", [
    ("vit_tiny", 3, True),    # builder.py's MoCo_ViT
    ("small_cnn", 2, False),  # MoCo_ResNet: a 2-layer projector, no BatchNorm at the predictor's end
    ("resnet18", 2, False),
])
def test_heads_follow_the_reference_code(backbone, projector_layers, predictor_last_bn):
    method = make_method(backbone)
    projector, predictor = method.projector, method.predictor
    linears = [m for m in [*projector, *predictor] if isinstance(m, nn.Linear)]
    assert len([m for m in projector if isinstance(m, nn.Linear)]) == projector_layers
    assert len([m for m in predictor if isinstance(m, nn.Linear)]) == 2
    assert all(m.bias is None for m in linears)
    assert isinstance(projector[-1], nn.BatchNorm1d) and not projector[-1].affine
    assert projector[-1].num_features == 16
    if predictor_last_bn:
        assert isinstance(predictor[-1], nn.BatchNorm1d) and not predictor[-1].affine
    else:
        assert isinstance(predictor[-1], nn.Linear) and predictor[-1].out_features == 16
    # an explicit depth wins over the backbone's
    assert len([m for m in make_method(backbone, projector_layers=4).projector if isinstance(m, nn.Linear)]) == 4


def test_momentum_rises_from_its_base_to_one_on_a_cosine_and_drives_the_ema():
    method = make_method(total_steps=10, base_momentum=0.99)
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    momenta = [method(views, step=s).terms["momentum"].item() for s in (0, 5, 10)]
    assert momenta == pytest.approx([0.99, 0.995, 1.0])
    with torch.no_grad():
        for p in method.projector.parameters():
            p.add_(1.0)
    before = [p.clone() for p in method.momentum_projector.parameters()]
    online = [p.clone() for p in method.projector.parameters()]
    method.after_optimizer_step(step=0)
    for target, old, new in zip(method.momentum_projector.parameters(), before, online):
        assert torch.allclose(target, 0.99 * old + 0.01 * new)


def test_vit_patch_projection_stays_random_and_other_weights_train():
    method = make_method("vit_tiny")
    trained = {id(p) for group in method.parameter_groups() for p in group["params"]}
    patch = list(method.backbone.patch_embed.parameters())
    assert patch and not any(id(p) in trained for p in patch)
    assert id(method.backbone.cls_token) in trained and id(method.predictor[0].weight) in trained
    learnt = make_method("vit_tiny", random_patch_projection=False)
    assert all(p.requires_grad for p in learnt.backbone.patch_embed.parameters())
    cnn = make_method("small_cnn")
    assert len(cnn.parameter_groups()[0]["params"]) == len([p for p in cnn.parameters() if p.requires_grad])


def test_a_run_keeps_the_momentum_encoder_as_state_of_its_own(method_runs):
    saved = method_runs.resumed("moco_v3").straight_state()["method"]
    assert not torch.equal(saved["momentum_projector.0.weight"], saved["projector.0.weight"])
