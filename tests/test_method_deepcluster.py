"""DeepCluster: PCA whitening, k-means with empty-cluster splitting, pseudo-labels and their
weighting, the classifier's re-initialisation, and a run's clusterings, which a resumed run keeps.
What every method keeps (an exact resume, training on a ViT) is in test_method_contract.py."""

import json

import pytest
import torch
from torch.nn import functional as F

from ssl_engine.errors import ConfigError
from ssl_engine.kmeans import fill_empty_clusters, kmeans, nearest_centroid
from ssl_engine.methods.deepcluster import DeepCluster, DeepClusterParams, pca_whiten
from ssl_engine.models.backbones import build_backbone

def blobs(generator, per_blob=30, dim=6, blobs_count=4):
    centres = torch.randn(blobs_count, dim, generator=generator) * 10
    labels = torch.arange(blobs_count).repeat_interleave(per_blob)
    return centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=generator), labels


def same_partition(a, b):
    """True when the labellings a and b group the points alike (ids may differ)."""
    return torch.equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


def test_pca_whiten_makes_the_gram_matrix_independent_of_a_linear_distortion():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=generator)
    distortion = torch.randn(5, 5, generator=generator) * torch.tensor([10.0, 1.0, 0.1, 3.0, 0.5])
    # whitening undoes any invertible linear map up to a rotation, which the Gram matrix ignores
    a, b = pca_whiten(x, 5), pca_whiten(x @ distortion + 7.0, 5)
    assert torch.allclose(a @ a.T, b @ b.T, atol=1e-3)
    reduced = pca_whiten(x @ distortion, 3)
    assert reduced.shape == (200, 3) and torch.allclose(reduced.norm(dim=1), torch.ones(200), atol=1e-5)


def test_kmeans_converges_to_a_lloyd_fixed_point_recovers_separated_blobs_and_is_seeded():
    x, truth = blobs(torch.Generator().manual_seed(1))
    results = [kmeans(x, 4, 10, torch.Generator().manual_seed(seed))[0] for seed in range(5)]
    assert torch.equal(results[0], kmeans(x, 4, 10, torch.Generator().manual_seed(0))[0])
    for labels in results:  # every point is nearest to the mean of its own cluster
        # in float64 and up to float32 rounding: a start that splits a blob leaves points almost
        # halfway between two means, which another machine's kernels may assign either way
        means = torch.stack([x[labels == c].double().mean(dim=0) for c in range(4)])
        distances = torch.cdist(x.double(), means) ** 2
        own = distances.gather(1, labels[:, None]).squeeze(1)
        assert (own <= distances.min(dim=1).values + 1e-3).all()
    # from a random start k-means may end in a local minimum; some start finds the blobs
    assert any(same_partition(labels, truth) for labels in results)


def test_an_empty_cluster_takes_a_perturbed_copy_of_a_donor_and_splits_its_points():
    centroids = torch.tensor([[1.0, 1.0], [0.0, 0.0], [-5.0, -5.0]])
    counts = torch.tensor([2, 0, 1])  # only cluster 0 has points to give
    filled = fill_empty_clusters(centroids, counts, torch.Generator().manual_seed(0))
    eps = 1 / 1024
    assert filled == 1
    assert torch.allclose(centroids[1], torch.tensor([1 + eps, 1 - eps]))
    assert torch.allclose(centroids[0], torch.tensor([1 - eps, 1 + eps]))
    points = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # the donor's two points, one each side
    assert nearest_centroid(points, centroids).tolist() == [1, 0]


def test_kmeans_fills_clusters_left_empty_by_a_duplicate_initialisation():
    # every point is one of two values: most random initial centroids coincide and their
    # clusters empty, which the splitting must repair until two clusters hold everything
    x = torch.tensor([[0.0, 1.0]] * 10 + [[1.0, 0.0]] * 10)
    labels, filled = kmeans(x, 6, 5, torch.Generator().manual_seed(0))
    assert filled > 0
    assert same_partition(labels, torch.arange(2).repeat_interleave(10))


def make_method(k=4, hidden=16):
    params = DeepClusterParams(num_clusters=k, pca_dim=8, kmeans_iterations=10, hidden_dim=hidden)
    return DeepCluster(build_backbone("small_cnn", image_size=16), params, total_steps=10)


def test_before_epoch_assigns_pseudo_labels_weights_and_a_fresh_classifier():
    torch.manual_seed(0)
    method = make_method()
    features, _ = blobs(torch.Generator().manual_seed(2), per_blob=10, dim=method.backbone.feature_dim)
    calls = []

    def dataset_features(transform=None):
        calls.append(transform)
        return features

    with torch.no_grad():
        method.classifier.weight.fill_(5.0)
        method.classifier.bias.fill_(5.0)
    method.before_epoch(0, dataset_features)
    labels = method.pseudo_labels
    assert labels.shape == (40,) and int(method.clustered_epoch) == 0 and len(calls) == 1
    sizes = torch.bincount(labels, minlength=4).float()
    nonempty = int((sizes > 0).sum())
    expected = torch.where(sizes > 0, 40 / (nonempty * sizes.clamp_min(1)), torch.zeros(4))
    assert torch.allclose(method.class_weights, expected)
    # the weights make a mean over images equal to the mean over clusters of per-cluster means,
    # the loss the paper's sampling uniform over clusters gives
    per_image = torch.rand(40)
    cluster_means = torch.stack([per_image[labels == c].mean() for c in range(4) if sizes[c] > 0])
    assert torch.allclose((method.class_weights[labels] * per_image).mean(), cluster_means.mean())
    assert torch.equal(method.classifier.bias, torch.zeros(4))
    assert 0.005 < float(method.classifier.weight.detach().std()) < 0.015
    torch.testing.assert_close(method.histograms(None)["cluster sizes"], sizes)

    method.before_epoch(0, dataset_features)  # the same epoch again (a resumed run): nothing redone
    assert len(calls) == 1
    method.before_epoch(1, dataset_features)
    assert len(calls) == 2 and int(method.clustered_epoch) == 1
    assert 0.0 <= float(method.nmi) <= 1.0


def test_clusters_form_on_greyscale_images_unless_turned_off():
    # the paper's Sobel filter keeps colour out of the clusters; here the clustered images are
    # greyscale, so two images that differ only in hue get the same features
    colours = torch.rand(4, 3, 8, 8)
    for greyscale_clustering in (True, False):
        method = DeepCluster(build_backbone("small_cnn", image_size=16),
                             DeepClusterParams(num_clusters=4, pca_dim=8, hidden_dim=16,
                                               greyscale_clustering=greyscale_clustering), total_steps=10)
        seen = []
        method.before_epoch(0, lambda transform=None: seen.append(transform) or torch.randn(40, method.backbone.feature_dim))
        if greyscale_clustering:
            grey = seen[0](colours)
            assert grey.shape == colours.shape and torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
            assert torch.allclose(grey[:, 0], 0.299 * colours[:, 0] + 0.587 * colours[:, 1] + 0.114 * colours[:, 2], atol=1e-3)
        else:
            assert seen == [None]


def test_too_many_clusters_is_a_clear_error():
    method = make_method(k=50)
    with pytest.raises(ConfigError, match=r"num_clusters \(50\) must be at most the number of training images \(10\)"):
        method.before_epoch(0, lambda **_: torch.randn(10, method.backbone.feature_dim))


def test_the_loss_is_the_cluster_weighted_cross_entropy_over_the_views():
    torch.manual_seed(0)
    method = make_method()
    features, _ = blobs(torch.Generator().manual_seed(2), per_blob=10, dim=method.backbone.feature_dim)
    method.before_epoch(0, lambda **_: features)
    method.class_weights.copy_(torch.tensor([1.0, 2.0, 0.5, 3.0]))  # make the weighting visible
    views = [torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)]
    indices = torch.tensor([0, 5, 11, 22, 33, 39])
    method.eval()  # BatchNorm in eval mode: the hand computation sees the same features
    output = method(views, 0, indices)
    targets = method.pseudo_labels[indices]
    hand = 0.0
    for view in views:
        logits = method.classifier(F.relu(method.head(method.backbone(view))))
        log_p = torch.log_softmax(logits, dim=1)
        hand += sum(-method.class_weights[t] * log_p[i, t] for i, t in enumerate(targets.tolist())) / 6
    assert torch.allclose(output.loss, hand / 2, atol=1e-6)
    assert set(output.terms) == {"cross-entropy", "empty clusters fixed"}  # no NMI before a second clustering
    assert output.embeddings[0].shape == (6, 16)


def test_the_classifier_gets_no_momentum():
    groups = make_method().parameter_groups()
    classifier = [g for g in groups if g.get("momentum") == 0.0]
    assert len(classifier) == 1 and len(classifier[0]["params"]) == 2


def test_a_run_clusters_every_epoch_and_a_resumed_run_keeps_the_epochs_clustering(method_runs):
    # tests.method_runs: 2 epochs of 2 steps, stopped after step 3, in the second epoch
    run = method_runs.resumed("deepcluster")
    terms = run.straight.terms
    assert sorted(terms) == [1, 2, 3, 4] and all(t["cross-entropy"] > 0 for t in terms.values())
    assert "NMI with previous clustering" not in terms[1] and 0 <= terms[4]["NMI with previous clustering"] <= 1
    metrics = [json.loads(line) for line in (run.straight_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(m["loss"] == m["loss"] and m["loss"] < 1e3 for m in metrics if m["kind"] == "step")
    assert run.straight.dataset_passes == 2  # one clustering per epoch

    at_stop = run.stopped_state()["method"]
    assert at_stop["pseudo_labels"].shape == (run.stopped.train_size,) and int(at_stop["clustered_epoch"]) == 1
    # the second epoch's clustering came back from the checkpoint: none in the resumed run
    assert run.resumed.dataset_passes == 0
    assert torch.equal(run.resumed_state()["method"]["pseudo_labels"], at_stop["pseudo_labels"])
