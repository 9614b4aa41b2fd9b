"""Evaluation of frozen features: embedding a dataset, weighted kNN, linear probe, neighbours,
near-duplicates and accuracy reports; and the evaluation session of the user's folders
(`session.EvaluationSession`) that the Evaluate tab and the command line share."""

from .accuracy import AccuracyReport, EvaluationCancelled, accuracy_report
from .embed import embed
from .knn import knn_predict, knn_scores, knn_top1
from .linear_probe import linear_probe_logits, linear_probe_top1
from .neighbours import DuplicatePairs, near_duplicates, nearest_neighbours

__all__ = ["AccuracyReport", "DuplicatePairs", "EvaluationCancelled", "accuracy_report", "embed", "knn_predict",
           "knn_scores", "knn_top1", "linear_probe_logits", "linear_probe_top1", "near_duplicates",
           "nearest_neighbours"]
