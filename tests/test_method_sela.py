"""SeLa: the cross-entropy against the pseudo-labels by hand, balanced labels from optimal
transport, the relabelling schedule, the lazily sized label buffer, and the labels a run keeps.
What every method keeps (an exact resume, training on a ViT) is in test_method_contract.py."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ssl_engine.methods.sela import SeLa, SeLaParams, random_balanced_labels


class TinyBackbone(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 8


def make_sela(**overrides):
    torch.manual_seed(0)
    params = SeLaParams(**{"num_clusters": 4, **overrides})
    return SeLa(TinyBackbone(), params, total_steps=100)


def features(count=200, seed=0):
    return torch.randn(count, 8, generator=torch.Generator().manual_seed(seed))


def test_random_balanced_labels_are_an_equipartition_and_seeded():
    labels = random_balanced_labels(103, 10, torch.Generator().manual_seed(3))
    counts = torch.bincount(labels, minlength=10)
    assert counts.sum() == 103 and counts.max() - counts.min() <= 1
    assert torch.equal(labels, random_balanced_labels(103, 10, torch.Generator().manual_seed(3)))
    assert not torch.equal(labels, random_balanced_labels(103, 10, torch.Generator().manual_seed(4)))


def test_loss_is_the_mean_cross_entropy_of_every_view_and_head_against_the_image_label():
    method = make_sela(num_heads=2)
    method.relabel(features(20))
    assert method.pseudo_labels.shape == (2, 20)
    generator = torch.Generator().manual_seed(1)
    views = [torch.randn(5, 3, 8, 8, generator=generator) for _ in range(3)]
    indices = torch.tensor([3, 0, 17, 9, 9])
    output = method(views, step=0, indices=indices)
    expected = []
    with torch.no_grad():
        for view in views:
            for h, head in enumerate(method.heads):
                log_p = F.log_softmax(head(method.backbone(view)).double(), dim=1)
                expected.append(-log_p[torch.arange(5), method.pseudo_labels[h, indices]].mean())
    assert output.loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    assert set(output.terms) == {"cross-entropy", "labels changed"}
    assert output.embeddings[0].shape == (5, 4)
    with pytest.raises(RuntimeError, match="indices"):
        make_sela()(views, step=0, indices=indices)  # no labels yet


def test_optimal_transport_spreads_labels_a_collapsed_head_would_put_in_one_cluster():
    method = make_sela(num_clusters=4)
    with torch.no_grad():
        method.heads[0][-1].bias.copy_(torch.tensor([8.0, 0, 0, 0]))
    data = features(200)
    assert (method.heads[0](data).argmax(dim=1) == 0).all()  # plain argmax: a single cluster
    method.relabel(data)
    counts = torch.bincount(method.pseudo_labels[0], minlength=4)
    assert counts.min() >= 40 and counts.max() <= 60, counts  # about N / K = 50 each


def test_labels_follow_the_schedule_and_report_how_many_changed():
    method = make_sela(relabel_every_epochs=2)
    calls = []

    def dataset_features():
        calls.append(1)
        return features(60, seed=len(calls))

    method.before_epoch(0, dataset_features)
    first = method.pseudo_labels.clone()
    method.before_epoch(1, dataset_features)
    assert len(calls) == 1 and torch.equal(method.pseudo_labels, first)
    method.before_epoch(2, dataset_features)
    method.before_epoch(2, dataset_features)  # a run resumed within epoch 2 keeps its labels
    assert len(calls) == 2 and int(method.labelled_epoch) == 2
    changed = (method.pseudo_labels != first).float().mean()
    assert 0 < changed < 1 and method.labels_changed.item() == pytest.approx(changed.item())


def test_histograms_count_all_training_labels_and_the_batch_predictions():
    method = make_sela()
    method.relabel(features(50))
    views = [torch.randn(6, 3, 8, 8) for _ in range(2)]
    histograms = method.histograms(method(views, step=0, indices=torch.arange(6)))
    assert histograms["cluster sizes"].shape == (4,) and histograms["cluster sizes"].sum() == 50
    assert torch.equal(histograms["cluster sizes"], torch.bincount(method.pseudo_labels[0], minlength=4).float())
    assert histograms["batch predictions"].shape == (4,) and histograms["batch predictions"].sum() == 12


def test_labels_load_into_a_method_that_has_not_seen_the_data_yet():
    method = make_sela(num_heads=3)
    method.before_epoch(0, lambda: features(30))
    fresh = make_sela(num_heads=3)
    fresh.load_state_dict(method.state_dict())
    assert torch.equal(fresh.pseudo_labels, method.pseudo_labels) and int(fresh.labelled_epoch) == 0


def test_a_run_relabels_every_epoch_and_a_resumed_run_keeps_the_epochs_labels(method_runs):
    # tests.method_runs: 2 epochs of 2 steps, stopped after step 3, in the second epoch
    run = method_runs.resumed("sela")
    final = run.resumed_state()["method"]
    assert final["pseudo_labels"].shape == (1, run.resumed.train_size) and int(final["labelled_epoch"]) == 1
    assert run.straight.dataset_passes == 2  # the reference's schedule: new labels every epoch
    assert run.resumed.dataset_passes == 0   # the second epoch's labels came back from the checkpoint
