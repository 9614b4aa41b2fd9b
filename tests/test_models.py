"""Backbones by name, projection/prediction heads, EMA helpers."""

import math

import pytest
import torch
from torch import nn

from ssl_engine.errors import ConfigError
from ssl_engine.models import (BACKBONES, backbone_names, build_backbone, copy_as_frozen,
                               cosine_momentum, ema_update, prediction_mlp, projection_mlp)

EXPECTED_DIMS = {"small_cnn": 256, "resnet18": 512, "resnet34": 512, "resnet50": 2048, "vit_tiny": 192,
                 "vit_small": 384}


def test_registry_names():
    assert backbone_names() == list(EXPECTED_DIMS)
    assert set(BACKBONES) == set(EXPECTED_DIMS)


@pytest.mark.parametrize("name", list(EXPECTED_DIMS))
@pytest.mark.parametrize("size", [32, 64])
def test_feature_dim_matches_output(name, size):
    torch.manual_seed(0)
    backbone = build_backbone(name, image_size=size).eval()
    assert backbone.feature_dim == EXPECTED_DIMS[name]
    assert backbone.name == name
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, size, size))
    assert features.shape == (2, backbone.feature_dim)


def test_resnet_small_stem_replaces_conv1_and_maxpool():
    small = build_backbone("resnet18", small_stem=True).net
    assert small.conv1.kernel_size == (3, 3)
    assert small.conv1.stride == (1, 1)
    assert small.conv1.padding == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    assert isinstance(small.fc, nn.Identity)

    standard = build_backbone("resnet18", small_stem=False).net
    assert standard.conv1.kernel_size == (7, 7)
    assert standard.conv1.stride == (2, 2)
    assert isinstance(standard.maxpool, nn.MaxPool2d)


def test_small_stem_keeps_resolution_to_the_last_stage():
    sizes = {}
    for small_stem in (True, False):
        net = build_backbone("resnet18", small_stem=small_stem).net.eval()
        handle = net.layer4.register_forward_hook(
            lambda module, inputs, output, key=small_stem: sizes.__setitem__(key, output.shape[-1]))
        with torch.no_grad():
            net(torch.randn(1, 3, 32, 32))
        handle.remove()
    assert sizes == {True: 4, False: 1}


@pytest.mark.parametrize("image_size, expected", [(32, True), (64, True), (65, False), (96, False)])
def test_small_stem_automatic_at_64_px_and_below(image_size, expected):
    resnet = build_backbone("resnet18", image_size=image_size)
    assert resnet.small_stem is expected
    assert (resnet.net.conv1.stride == (1, 1)) is expected
    small_cnn = build_backbone("small_cnn", image_size=image_size)
    assert small_cnn.small_stem is expected
    assert (small_cnn.net[0][0].stride == (1, 1)) is expected


def test_explicit_small_stem_overrides_image_size():
    assert build_backbone("resnet18", small_stem=False, image_size=32).small_stem is False
    assert build_backbone("resnet18", small_stem=True, image_size=224).small_stem is True


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError) as error:
        build_backbone("vgg")
    assert error.value.problems == [
        "backbone.name must be one of small_cnn, resnet18, resnet34, resnet50, vit_tiny, vit_small, got 'vgg'"]
    assert error.value.problems[0].address == "backbone.name"


def _types(sequential):
    return [type(layer) for layer in sequential]


def test_projection_mlp_structure_and_shape():
    head = projection_mlp(8, 16, 4, num_layers=3)
    assert _types(head) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d,
                            nn.ReLU, nn.Linear]
    assert [(layer.in_features, layer.out_features) for layer in head if isinstance(layer, nn.Linear)] \
        == [(8, 16), (16, 16), (16, 4)]
    assert head(torch.randn(5, 8)).shape == (5, 4)


def test_projection_mlp_options():
    simsiam = projection_mlp(8, 16, 4, num_layers=3, last_batch_norm=True, last_bn_affine=False)
    assert isinstance(simsiam[-1], nn.BatchNorm1d)
    assert simsiam[-1].affine is False
    assert simsiam[-2].bias is None
    assert projection_mlp(8, 16, 4, last_batch_norm=True)[-1].affine is True
    assert _types(projection_mlp(8, 16, 4, num_layers=2, batch_norm=False)) == [nn.Linear, nn.ReLU, nn.Linear]
    single = projection_mlp(8, 16, 4, num_layers=1)
    assert _types(single) == [nn.Linear]
    assert (single[0].in_features, single[0].out_features) == (8, 4)
    with pytest.raises(ValueError):
        projection_mlp(8, 16, 4, num_layers=0)


def test_prediction_mlp_structure_and_shape():
    head = prediction_mlp(4, 32, 4)
    assert _types(head) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (head[0].in_features, head[0].out_features, head[3].out_features) == (4, 32, 4)
    assert head(torch.randn(3, 4)).shape == (3, 4)


def _tiny(weight, bias, running_mean):
    module = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        module[0].weight.copy_(torch.tensor([weight]))
        module[0].bias.fill_(bias)
        module[1].running_mean.fill_(running_mean)
    return module


def test_ema_update_math_and_buffers():
    target = _tiny([1.0, -2.0], 0.5, running_mean=0.0)
    online = _tiny([3.0, 2.0], -0.5, running_mean=7.0)
    online[1].num_batches_tracked.fill_(11)
    ema_update(target, online, momentum=0.9)
    # 0.9 * target + 0.1 * online, by hand
    assert torch.allclose(target[0].weight, torch.tensor([[1.2, -1.6]]))
    assert torch.allclose(target[0].bias, torch.tensor([0.4]))
    assert target[1].running_mean.item() == 7.0
    assert target[1].num_batches_tracked.item() == 11
    assert torch.equal(online[0].weight, torch.tensor([[3.0, 2.0]]))   # online untouched

    ema_update(target, online, momentum=1.0)
    assert torch.allclose(target[0].weight, torch.tensor([[1.2, -1.6]]))
    ema_update(target, online, momentum=0.0)
    assert torch.equal(target[0].weight, online[0].weight)


def test_ema_update_rejects_different_structures():
    with pytest.raises(ValueError):
        ema_update(nn.Linear(2, 1), nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 1)), 0.9)


def test_copy_as_frozen():
    online = _tiny([1.0, 2.0], 0.0, running_mean=0.0)
    frozen = copy_as_frozen(online)
    assert all(not p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in online.parameters())
    assert torch.equal(frozen[0].weight, online[0].weight)
    assert frozen[0].weight.data_ptr() != online[0].weight.data_ptr()


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100) == pytest.approx(0.996)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    assert cosine_momentum(50, 100) == pytest.approx(0.998)
    assert cosine_momentum(25, 100) == pytest.approx(1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2)
    assert cosine_momentum(500, 100) == pytest.approx(1.0)
    assert cosine_momentum(0, 10, base=0.99, final=0.999) == pytest.approx(0.99)
    assert cosine_momentum(10, 10, base=0.99, final=0.999) == pytest.approx(0.999)
    values = [cosine_momentum(step, 20) for step in range(21)]
    assert values == sorted(values)
