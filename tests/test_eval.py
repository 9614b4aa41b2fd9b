"""Frozen-feature evaluation: embed, weighted kNN, linear probe."""

import math

import pytest
import torch
from torch import nn

from ssl_engine.errors import UserError
from ssl_engine.eval import embed, knn_predict, knn_top1, linear_probe_top1
from ssl_engine.eval import knn as knn_module


def _unit(angle_degrees):
    angle = math.radians(angle_degrees)
    return [math.cos(angle), math.sin(angle)]


def test_knn_known_answer():
    train = torch.tensor([_unit(0), _unit(10), _unit(90), _unit(100)]) * torch.tensor([[1.0], [5.0], [2.0], [0.1]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([_unit(5), _unit(95), _unit(30), _unit(70)]) * 3
    assert knn_predict(train, labels, test, k=2).tolist() == [0, 1, 0, 1]
    assert knn_top1(train, labels, test, torch.tensor([0, 1, 1, 1]), k=2) == pytest.approx(0.75)


def test_knn_weighting_overturns_the_majority():
    # Two class-0 neighbours at cos 0.5, one class-1 neighbour at cos 1.
    train = torch.tensor([_unit(0), _unit(60), _unit(-60)])
    labels = torch.tensor([1, 0, 0])
    test = torch.tensor([_unit(0)])
    # exp(1/0.07) > 2 exp(0.5/0.07): the close neighbour wins
    assert knn_predict(train, labels, test, k=3, temperature=0.07).tolist() == [1]
    # nearly uniform weights: the majority wins
    assert knn_predict(train, labels, test, k=3, temperature=100.0).tolist() == [0]


def test_knn_ignores_unlabelled_train_rows():
    train = torch.tensor([_unit(0), _unit(90), _unit(80)])
    test = torch.tensor([_unit(0)])
    assert knn_predict(train, torch.tensor([-1, 1, 1]), test, k=1).tolist() == [1]
    assert knn_top1(train, torch.tensor([-1, 1, 1]), test, torch.tensor([1]), k=1) == 1.0
    with pytest.raises(UserError):
        knn_predict(train, torch.tensor([-1, -1, -1]), test)


def test_knn_clamps_k_and_chunks(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(30, 8, generator=generator)
    labels = torch.randint(0, 3, (30,), generator=generator)
    test = torch.randn(50, 8, generator=generator)
    whole = knn_predict(train, labels, test, k=100)
    assert whole.shape == (50,) and whole.dtype == torch.long
    monkeypatch.setattr(knn_module, "_SIMILARITY_BUDGET", 30 * 7)   # 7 test rows per chunk
    assert torch.equal(knn_predict(train, labels, test, k=100), whole)
    # k = all 30 rows at a high temperature is the plain majority class
    majority = torch.bincount(labels).argmax().item()
    assert (knn_predict(train, labels, test, k=1000, temperature=1e6) == majority).all()


def _blobs(num_classes, per_class, dim, spread, generator):
    centres = torch.randn(num_classes, dim, generator=generator) * 3
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=generator), labels


def test_linear_probe_separable_blobs():
    generator = torch.Generator().manual_seed(0)
    train_x, train_y = _blobs(5, 100, 16, 1.0, generator)
    test_x, test_y = _blobs(5, 100, 16, 1.0, torch.Generator().manual_seed(0))
    test_x = test_x + 0.1 * torch.randn(test_x.shape, generator=generator)
    train_x = train_x * 50 + 1000   # standardisation must undo an arbitrary scale and offset
    test_x = test_x * 50 + 1000
    accuracy = linear_probe_top1(train_x, train_y, test_x, test_y, seed=0)
    assert accuracy > 0.97
    assert linear_probe_top1(train_x, train_y, test_x, test_y, seed=0) == accuracy


def test_linear_probe_random_labels_is_chance():
    generator = torch.Generator().manual_seed(1)
    train_x, test_x = torch.randn(1000, 20, generator=generator), torch.randn(1000, 20, generator=generator)
    train_y = torch.randint(0, 5, (1000,), generator=generator)
    test_y = torch.randint(0, 5, (1000,), generator=generator)
    assert 0.12 < linear_probe_top1(train_x, train_y, test_x, test_y) < 0.28


def test_linear_probe_ignores_unlabelled_rows():
    generator = torch.Generator().manual_seed(2)
    train_x, train_y = _blobs(3, 50, 8, 0.5, generator)
    test_x, test_y = _blobs(3, 20, 8, 0.5, torch.Generator().manual_seed(2))
    # unlabelled rows with features of class 0 and test rows without labels change nothing
    noisy_x = torch.cat([train_x, train_x[:50] + 100])
    noisy_y = torch.cat([train_y, torch.full((50,), -1)])
    clean = linear_probe_top1(train_x, train_y, test_x, test_y)
    assert clean > 0.95
    assert linear_probe_top1(noisy_x, noisy_y, torch.cat([test_x, test_x]),
                             torch.cat([test_y, torch.full_like(test_y, -1)])) == clean


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.frozen_norm = nn.BatchNorm2d(4)

    def forward(self, images):
        return self.frozen_norm(self.norm(self.conv(images))).mean(dim=(2, 3))


def test_embed_matches_direct_forward_and_restores_modes():
    torch.manual_seed(0)
    net = _TinyNet()
    with torch.no_grad():   # running stats differ from batch stats: eval mode is visible
        net.norm.running_mean.fill_(0.3)
        net.norm.running_var.fill_(2.0)
    net.train()
    net.frozen_norm.eval()
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)

    features = embed(net, images, mean=mean, std=std, batch_size=4, device="cpu")

    assert net.training and net.norm.training and not net.frozen_norm.training
    assert net.norm.running_mean[0].item() == pytest.approx(0.3)   # no statistics updated
    assert features.dtype == torch.float32 and features.device.type == "cpu"
    net.eval()
    normalised = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = net(normalised)
    assert features.shape == (10, 4)
    assert torch.allclose(features, expected, atol=1e-5)
    assert not features.requires_grad


def test_embed_transforms_each_batch_before_normalising():
    torch.manual_seed(0)
    net = _TinyNet().eval()
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    inverted = embed(net, images, mean=mean, std=std, batch_size=2, transform=lambda x: 1 - x)
    assert torch.allclose(inverted, embed(net, 255 - images, mean=mean, std=std), atol=1e-5)
    assert not torch.allclose(inverted, embed(net, images, mean=mean, std=std), atol=1e-3)


def test_embed_rejects_float_images():
    with pytest.raises(ValueError):
        embed(_TinyNet(), torch.rand(2, 3, 8, 8), mean=(0, 0, 0), std=(1, 1, 1))


def test_unlabelled_training_rows_take_no_part_and_none_labelled_is_one_message():
    from ssl_engine.eval.knn import knn_scores
    from ssl_engine.eval.linear_probe import linear_probe_logits

    generator = torch.Generator().manual_seed(0)
    train = torch.randn(40, 8, generator=generator)
    labels = torch.arange(40) % 2
    test = train[:10] + 0.01 * torch.randn(10, 8, generator=generator)
    # rows 20.. unlabelled and their features wild: the scores must not change
    wild = train.clone()
    wild[20:] = 1000 * torch.randn(20, 8, generator=generator)
    hidden = labels.clone()
    hidden[20:] = -1
    torch.testing.assert_close(knn_scores(wild, hidden, test, k=5), knn_scores(train[:20], labels[:20], test, k=5))
    torch.testing.assert_close(linear_probe_logits(wild, hidden, test, epochs=20),
                               linear_probe_logits(train[:20], labels[:20], test, epochs=20))
    nobody = torch.full((40,), -1)
    for classify, name in ((knn_scores, "kNN evaluation"), (linear_probe_logits, "the linear probe")):
        with pytest.raises(UserError, match=f"{name} needs labelled training images"):
            classify(train, nobody, test)
