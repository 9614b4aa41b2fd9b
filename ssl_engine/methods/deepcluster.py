"""DeepCluster (Caron, Bojanowski, Joulin, Douze, "Deep Clustering for Unsupervised Learning of
Visual Features", ECCV 2018).

Two steps alternate. At the start of each epoch the features of the whole training set are
PCA-reduced to 256 dimensions, whitened and L2-normalised, and k-means groups them into k
clusters; each image's cluster is its pseudo-label y_n. During the epoch the network learns to
predict those labels with a classifier g_W on top of the features f_theta:

    min_{theta, W}  1/N sum_n  w_{y_n} CrossEntropy(g_W(f_theta(x_n)), y_n)

The classifier is re-initialised after each clustering (cluster ids mean nothing from one
epoch to the next). Trivial solutions, as in section 3.3: an empty cluster takes a randomly
chosen non-empty cluster's centroid, slightly perturbed, and the next assignment splits that
cluster's points between the two; and since one big cluster would dominate, the paper samples
images uniformly over clusters. The trainer's sampler is fixed here, so each image's loss is
weighted instead by w_c = N / (k' n_c) (n_c images in cluster c, k' non-empty clusters): the
same expected gradient as sampling uniformly over clusters.

Features: the paper's AlexNet clusters the output of fc7 (before its ReLU) and classifies it
after the ReLU; here two fully connected layers (Linear-ReLU-Linear, fc6 and fc7) on the
backbone play that part. Colour: the paper puts a fixed Sobel filter (greyscale, then image
gradients) in front of the network, so that clusters do not form on colour. Here the backbone
keeps its RGB input, so that it evaluates and transfers like every other method's, and colour is
taken out where clusters form: the images are clustered in greyscale (`greyscale_clustering`).
On `shapes`, whose hue is drawn from the whole wheel, the clusters of colour images follow
colour. The views are SimCLR's (the paper's crops and flips, plus its colour jitter and
greyscale, which teach the network to find the same cluster in colour). Every view is
classified against its image's label (the paper takes one view per image).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.metrics import normalized_mutual_info_score
from torch import Tensor, nn
from torch.nn import functional as F

from ..augment.ops import grayscale
from ..errors import ConfigError, Problem
from ..kmeans import kmeans
from ..models.heads import projection_mlp
from ..params import hyper
from .base import Method, StepOutput, register
from ..recipes import NO_SMALL_RECIPE, QUICK_COLOUR, Setting

WHITEN_FLOOR = 1e-6  # least eigenvalue whitened, relative to the largest (no blow-up of null directions)


@dataclass
class DeepClusterParams:
    num_clusters: int = hyper(100, ge=2, le=1_000_000, help="k of k-means; the paper uses 10x the number of classes (10000 on ImageNet)")
    pca_dim: int = hyper(256, ge=1, le=65536, help="dimensions kept by the PCA whitening before k-means")
    # 20 Lloyd iterations: the reference code's faiss setting (niter)
    kmeans_iterations: int = hyper(20, ge=1, le=1000, help="Lloyd iterations of each k-means")
    # AlexNet's fc6 and fc7 are 4096 wide; 2048 (DeepCluster-v2's head width) keeps the per-epoch PCA cheap
    hidden_dim: int = hyper(2048, ge=2, le=65536, help="width of the two fully connected layers under the classifier (fc6, fc7; 4096 in AlexNet)")
    greyscale_clustering: bool = hyper(True, help="cluster greyscale images, so that clusters do not form on colour (the paper's Sobel filter does this)")


def pca_whiten(x: Tensor, dim: int) -> Tensor:
    """Rows of x projected on their top `dim` principal components, each scaled to unit variance
    (faiss's PCAMatrix with eigen_power -0.5, as the reference), then L2-normalised."""
    centered = x.float() - x.float().mean(dim=0)
    covariance = centered.T @ centered / len(x)
    # MPS has no eigh; elsewhere it runs where the features are
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.cpu() if covariance.device.type == "mps" else covariance)
    values = eigenvalues.flip(0)[:dim].to(x.device)
    vectors = eigenvectors.flip(1)[:, :dim].to(x.device)
    scale = values.clamp_min(float(values[0].clamp_min(1e-30)) * WHITEN_FLOOR).rsqrt()
    return F.normalize(centered @ vectors * scale, dim=1)


@register
class DeepCluster(Method):
    name = "deepcluster"
    family = "clustering"
    summary = "k-means the whole training set each epoch, then learn to classify images into their clusters"
    paper = "Caron et al., ECCV 2018"
    objective = "L = CE(head(f(x)), yₓ): yₓ the k-means cluster of x's features, recomputed every epoch"
    Params = DeepClusterParams
    augment_preset = "simclr"
    small_recipe = (
        Setting("method.num_clusters", 100, NO_SMALL_RECIPE.format("DeepCluster") + "; k is 10x the classes of a 10-class set, the paper's rule (10,000 clusters for ImageNet's 1,000 classes)"),
    )
    quick_recipe = (
        *QUICK_COLOUR,
    )
    # SGD at 0.05 for a batch of 256, momentum 0.9, weight decay 1e-5, no warm-up (paper's implementation details,
    # reference code); its main.py decays every parameter, biases and BatchNorm included
    optim_defaults = {"name": "sgd", "lr": 0.05, "weight_decay": 1e-5, "momentum": 0.9, "warmup_epochs": 0.0,
                      "decay_exclusions": "none"}

    def __init__(self, backbone, params: DeepClusterParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        self.head = projection_mlp(backbone.feature_dim, params.hidden_dim, params.hidden_dim, batch_norm=False)
        self.classifier = nn.Linear(params.hidden_dim, params.num_clusters)
        # the training set's length is known at the first clustering (see _load_from_state_dict)
        self.register_buffer("pseudo_labels", torch.empty(0, dtype=torch.long))
        self.register_buffer("class_weights", torch.zeros(params.num_clusters))
        self.register_buffer("clustered_epoch", torch.tensor(-1))
        self.register_buffer("nmi", torch.tensor(float("nan")))
        self.register_buffer("empty_filled", torch.tensor(0.0))
        self.register_buffer("seed", torch.randint(2 ** 31 - 1, ()))

    @torch.no_grad()
    def before_epoch(self, epoch, dataset_features):
        if int(self.clustered_epoch) == epoch:  # resumed mid-epoch: keep this epoch's clustering
            return
        features = dataset_features(transform=grayscale if self.params.greyscale_clustering else None)
        k = self.params.num_clusters
        if k > len(features):
            raise ConfigError([Problem("method.num_clusters", f"({k}) must be at most the number of training images "
                                                              f"({len(features)})")])
        # seeded by run and epoch: a resumed run clusters as the uninterrupted one, and every
        # process of a DDP run alike; a new seed each epoch, as the reference re-seeds faiss
        generator = torch.Generator().manual_seed(int(self.seed) + epoch)
        # the head has neither BatchNorm nor dropout: its output is the same in eval mode
        fc7 = torch.cat([self.head(chunk) for chunk in features.split(8192)])
        labels, filled = kmeans(pca_whiten(fc7, self.params.pca_dim), k, self.params.kmeans_iterations, generator)
        if len(self.pseudo_labels) == len(labels):
            self.nmi.fill_(normalized_mutual_info_score(self.pseudo_labels.cpu().numpy(), labels.cpu().numpy()))
        self.pseudo_labels = labels
        sizes = torch.bincount(labels, minlength=k).float()
        self.class_weights.copy_(torch.where(sizes > 0, len(labels) / (sizes.count_nonzero() * sizes.clamp_min(1)), 0))
        self.empty_filled.fill_(filled)
        self.clustered_epoch.fill_(epoch)
        self.classifier.weight.copy_(torch.randn(self.classifier.weight.shape, generator=generator) * 0.01)
        self.classifier.bias.zero_()

    def forward(self, views, step, indices=None):
        if indices is None or len(self.pseudo_labels) == 0:
            raise RuntimeError("deepcluster needs the batch's indices and a clustering from before_epoch")
        targets = self.pseudo_labels[indices]
        weights = self.class_weights[targets]
        fc7 = [self.head(self.backbone(v)) for v in views]
        per_view = [(weights * F.cross_entropy(self.classifier(F.relu(h)).float(), targets, reduction="none")).mean()
                    for h in fc7]
        loss = sum(per_view) / len(per_view)
        terms = {"cross-entropy": loss.detach(), "empty clusters fixed": self.empty_filled.clone()}
        if not torch.isnan(self.nmi):
            terms["NMI with previous clustering"] = self.nmi.clone()
        embeddings = (fc7[0].detach(), fc7[1].detach()) if len(fc7) > 1 else None
        return StepOutput(loss, terms, embeddings)

    @torch.no_grad()
    def histograms(self, output):
        return {"cluster sizes": torch.bincount(self.pseudo_labels, minlength=self.params.num_clusters).float()}

    def parameter_groups(self):
        # The paper gives the classifier its own SGD without momentum, new after each clustering:
        # without momentum no stale state outlives a re-initialisation.
        features = [p for m in (self.backbone, self.head) for p in m.parameters()]
        return [{"params": features}, {"params": list(self.classifier.parameters()), "momentum": 0.0}]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "pseudo_labels"
        if key in state_dict:  # take the saved length before loading into it
            self.pseudo_labels = torch.empty_like(state_dict[key], device=self.pseudo_labels.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
