"""Evaluation of frozen features: embedding a dataset, weighted kNN, linear probe."""

from .embed import embed
from .knn import knn_predict, knn_top1
from .linear_probe import linear_probe_top1

__all__ = ["embed", "knn_predict", "knn_top1", "linear_probe_top1"]
