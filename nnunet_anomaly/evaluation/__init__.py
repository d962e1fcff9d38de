"""Evaluation the way the paper reports it: exact, fast AP and AUROC; slice, sample and pixel scales.

Public API
----------
average_precision, auroc
    Exact sklearn-equal metrics by counting float16 scores (no full sort, bounded memory).
ScoreHistogram
    The streaming, additive accumulator behind them (``update(scores, targets)`` case by case).
precision_recall_curve, roc_curve
    sklearn-equal curves.
slice_labels, aggregate_scores, chunked_average_precision
    The paper's scales: axial slice labels, slice/sample aggregates, pixel AP in chunks of cases.
evaluate_folder, evaluate_arrays
    Score folders (nnU-Net ``.npz``, NIfTI, PNG) or arrays; JSON, Markdown table, CSV and figures.
format_table
    The paper-style table from one or more results (one per test set).
"""
from ._evaluate import SETTINGS, evaluate_arrays, evaluate_folder
from ._histogram import (
    ScoreHistogram,
    SparseHistogram,
    UndefinedMetricWarning,
    auroc,
    average_precision,
    precision_recall_curve,
    quantise_scores,
    roc_curve,
)
from ._loading import find_cases, load_ground_truth, load_image, load_prediction, match_cases
from ._report import format_table
from ._scales import AGGREGATES, SLICE_POSITIVE_FRACTION, aggregate_scores, chunked_average_precision, slice_labels

__all__ = [
    "AGGREGATES",
    "SETTINGS",
    "SLICE_POSITIVE_FRACTION",
    "ScoreHistogram",
    "SparseHistogram",
    "UndefinedMetricWarning",
    "aggregate_scores",
    "auroc",
    "average_precision",
    "chunked_average_precision",
    "evaluate_arrays",
    "evaluate_folder",
    "find_cases",
    "format_table",
    "load_ground_truth",
    "load_image",
    "load_prediction",
    "match_cases",
    "precision_recall_curve",
    "quantise_scores",
    "roc_curve",
    "slice_labels",
]
