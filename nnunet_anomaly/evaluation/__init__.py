"""Evaluation the way the paper reports it: exact, fast AP and AUROC; slice, sample and pixel scales.

Public API
----------
average_precision, auroc
    sklearn-equal metrics, exact on the scores' own dtype (``quantise="float16"``: MOOD's rounding).
SortedScores
    The exact, additive per-case summary behind the evaluation (``update(scores, targets)``, ``+``).
ScoreHistogram
    The float16 counting accumulator (exact for float16 maps; the MOOD protocol for any other).
precision_recall_curve, roc_curve
    sklearn-equal curves.
slice_labels, aggregate_scores, chunked_average_precision, pad_to_canvas
    The paper's scales: axial slice labels, slice/sample aggregates, pixel AP in chunks of cases,
    the reference's symmetric padding to its brain canvas.
evaluate_folder, evaluate_arrays
    Score folders (nnU-Net ``.npz``, NIfTI, PNG) or arrays; JSON, Markdown table, CSV and figures.
format_table
    The paper-style table from one or more results (one per test set).
"""
from ._evaluate import (PAPER_CANVAS_MM, PRECISIONS, SETTINGS, evaluate_arrays, evaluate_folder, intensity_baseline,
                        paper_canvas)
from ._exact import SortedScores
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
from ._scales import (AGGREGATES, SLICE_POSITIVE_FRACTION, aggregate_scores, chunked_average_precision, pad_to_canvas,
                      slice_labels)

__all__ = [
    "AGGREGATES",
    "PAPER_CANVAS_MM",
    "PRECISIONS",
    "SETTINGS",
    "SLICE_POSITIVE_FRACTION",
    "ScoreHistogram",
    "SortedScores",
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
    "intensity_baseline",
    "load_ground_truth",
    "load_image",
    "load_prediction",
    "match_cases",
    "pad_to_canvas",
    "paper_canvas",
    "precision_recall_curve",
    "quantise_scores",
    "roc_curve",
    "slice_labels",
]
