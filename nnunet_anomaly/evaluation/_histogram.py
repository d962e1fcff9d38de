"""AP and AUROC exactly as scikit-learn computes them, without sorting every voxel together.

Two exact routes, chosen by the dtype of the scores:

- float16 scores have at most 65536 distinct values, so counting
  positives and negatives per value (one ``np.bincount`` over the float16 bit patterns,
  :class:`ScoreHistogram`) gives everything ``sklearn.metrics.average_precision_score`` and
  ``roc_auc_score`` compute from a full sort: one streaming pass, memory bounded by a fixed chunk;
- float32/float64 scores (nnU-Net's probability files, ensemble means; integers and booleans are
  ranked as float32/float64, which hold them exactly) are split into positives and
  negatives, each sorted once, and the negatives are counted around the distinct positive scores
  (``_exact.py``, :class:`~nnunet_anomaly.evaluation.SortedScores`): exact on the scores as they are.

Both give the same step-wise precision-recall sum with tied scores grouped and the same trapezoidal
ROC area (= Mann-Whitney U with half credit for ties) as scikit-learn. ``quantise="float16"`` rounds
any scores to float16 first and counts them: the MOOD challenge's own reading of submitted maps, and
only right for that protocol.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

__all__ = [
    "ScoreHistogram",
    "SparseHistogram",
    "UndefinedMetricWarning",
    "average_precision",
    "auroc",
    "precision_recall_curve",
    "quantise_scores",
    "roc_curve",
]

QUANTISE_OPTIONS = (None, "float16")

N_BINS = 1 << 16
#: elements processed per step; bounds the temporary memory of `ScoreHistogram.update` (~60 MB)
CHUNK_SIZE = 1 << 22

_ALL_BITS = np.arange(N_BINS, dtype=np.uint32).astype(np.uint16)
_ALL_VALUES = _ALL_BITS.view(np.float16)
_FINITE_BITS = _ALL_BITS[np.isfinite(_ALL_VALUES)]
# -0.0 is merged into +0.0 before ordering, so drop its bin from the order.
_FINITE_BITS = _FINITE_BITS[_FINITE_BITS != 0x8000]
#: float16 bit patterns of every finite value, highest score first (the order sklearn ranks in)
_DESCENDING_BITS = _FINITE_BITS[np.argsort(-_ALL_VALUES[_FINITE_BITS].astype(np.float64), kind="stable")]
_NON_FINITE_BITS = _ALL_BITS[~np.isfinite(_ALL_VALUES)]


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for these targets (only one class present); sklearn warns the same way."""


class SparseHistogram(NamedTuple):
    """The non-empty bins of a `ScoreHistogram`: float16 bit patterns and their counts (compact storage)."""

    bits: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray


def quantise_scores(scores) -> np.ndarray:
    """Round scores to float16, the precision of ``quantise='float16'`` (how MOOD reads maps).

    float16 input is returned as is (no copy); other numeric input is rounded to nearest. Booleans
    and integers up to 2048 are exact in float16.

    Raises
    ------
    ValueError
        If a score is NaN or infinite, or too large for float16 (|score| > 65504).

    Examples
    --------
    >>> quantise_scores(np.array([0.1, 0.5], dtype=np.float32))
    array([0.1, 0.5], dtype=float16)
    """
    array = np.asarray(scores)
    if array.dtype == np.float16:
        _check_no_non_finite(array, "scores")
        return array
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"`scores` must be a real numeric array; got dtype {array.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        quantised = array.astype(np.float16)
    _check_no_non_finite(quantised, "scores", original=array)
    return quantised


def _check_no_non_finite(array, name, original=None):
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(_non_finite_message(name, np.asarray(original if original is not None else array)[bad]))


def _non_finite_message(name, bad_values) -> str:
    bad_values = np.asarray(bad_values, dtype=np.float64)
    n_nan = int(np.isnan(bad_values).sum())
    n_big = bad_values.size - n_nan
    parts = []
    if n_nan:
        parts.append(f"{n_nan} NaN")
    if n_big:
        parts.append(f"{n_big} infinite or beyond the float16 range (|x| > 65504)")
    return f"`{name}` has {' and '.join(parts)} values; scores must be finite (rescale large scores to [0, 1])"


def _as_bool_targets(targets, shape) -> np.ndarray:
    array = np.asarray(targets)
    if array.shape != tuple(shape):
        raise ValueError(f"`targets` must have the shape of `scores` {tuple(shape)}; got {array.shape}")
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"`targets` must be boolean (or 0/1 numbers); got dtype {array.dtype}")
    bad = (array != 0) & (array != 1)
    if bad.any():
        values = np.unique(array[bad])[:5]
        raise ValueError(f"`targets` must be boolean or 0/1; found other values such as {values.tolist()}")
    return array != 0


class ScoreHistogram:
    """Counts of positive and negative targets per float16 score: an exact, additive summary for AP and AUROC.

    Feed it case by case with `update`; add histograms with ``+``; read the metrics with
    `average_precision`, `auroc`, `precision_recall_curve` and `roc_curve`. Scores are rounded to
    float16 (see `quantise_scores`); the metrics then equal sklearn's on the rounded scores, which is
    exact for float16 maps and the MOOD protocol's reading of any other map. For exact metrics on
    float32 maps use :class:`~nnunet_anomaly.evaluation.SortedScores`.

    Attributes
    ----------
    positives, negatives : ndarray of int64, shape (65536,)
        Counts indexed by the float16 bit pattern of the score (``-0.0`` counts as ``0.0``).

    Examples
    --------
    >>> h = ScoreHistogram()
    >>> _ = h.update(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    >>> round(h.average_precision(), 6), round(h.auroc(), 6)
    (0.833333, 0.75)
    >>> h.n_positive, h.n_negative
    (2, 2)
    """

    __slots__ = ("positives", "negatives")

    def __init__(self):
        self.positives = np.zeros(N_BINS, dtype=np.int64)
        self.negatives = np.zeros(N_BINS, dtype=np.int64)

    # -- building -------------------------------------------------------------------------------
    def update(self, scores, targets, *, mask=None) -> "ScoreHistogram":
        """Count `scores` against boolean `targets` (same shape), optionally only where `mask` is True.

        The histogram is left unchanged if the input is invalid. Memory beyond the inputs is bounded
        by `CHUNK_SIZE` elements (non-contiguous inputs are copied once).

        Returns
        -------
        ScoreHistogram
            `self`, so calls chain.
        """
        scores = np.asarray(scores)
        targets = _as_bool_targets(targets, scores.shape)
        if mask is not None:
            mask = _as_bool_targets(mask, scores.shape)
            scores, targets = scores[mask], targets[mask]
        flat_scores = scores.reshape(-1)
        flat_targets = targets.reshape(-1)
        if not (np.issubdtype(flat_scores.dtype, np.number) or flat_scores.dtype == bool) or np.issubdtype(
            flat_scores.dtype, np.complexfloating
        ):
            raise ValueError(f"`scores` must be a real numeric array; got dtype {flat_scores.dtype}")
        totals = np.zeros(N_BINS, dtype=np.int64)
        positives = np.zeros(N_BINS, dtype=np.int64)
        for start in range(0, flat_scores.size, CHUNK_SIZE):
            chunk = flat_scores[start : start + CHUNK_SIZE]
            if chunk.dtype != np.float16:
                with np.errstate(over="ignore", invalid="ignore"):
                    chunk = chunk.astype(np.float16)
            bits = np.ascontiguousarray(chunk).view(np.uint16)
            totals += np.bincount(bits, minlength=N_BINS)
            positives += np.bincount(bits[flat_targets[start : start + CHUNK_SIZE]], minlength=N_BINS)
        bad = totals[_NON_FINITE_BITS].sum()
        if bad:
            # Rare path: find the offending values to say what they are.
            with np.errstate(over="ignore", invalid="ignore"):
                bad_values = flat_scores[~np.isfinite(flat_scores.astype(np.float16))]
            raise ValueError(_non_finite_message("scores", bad_values))
        self.positives += positives
        self.negatives += totals - positives
        return self

    @classmethod
    def from_scores(cls, scores, targets, *, mask=None) -> "ScoreHistogram":
        """A new histogram of `scores` against `targets` (see `update`)."""
        return cls().update(scores, targets, mask=mask)

    def __add__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        if not isinstance(other, ScoreHistogram):
            return NotImplemented
        total = ScoreHistogram()
        total.positives = self.positives + other.positives
        total.negatives = self.negatives + other.negatives
        return total

    def __iadd__(self, other: "ScoreHistogram") -> "ScoreHistogram":
        if not isinstance(other, ScoreHistogram):
            return NotImplemented
        self.positives += other.positives
        self.negatives += other.negatives
        return self

    def sparse(self) -> SparseHistogram:
        """The non-empty bins only (uint16 bits, uint32/int64 counts): cheap to keep one per case."""
        nonempty = np.flatnonzero(self.positives | self.negatives)
        count_dtype = np.uint32 if max(self.n_positive, self.n_negative) < 2**32 else np.int64
        return SparseHistogram(
            nonempty.astype(np.uint16), self.positives[nonempty].astype(count_dtype), self.negatives[nonempty].astype(count_dtype)
        )

    @classmethod
    def from_sparse(cls, *parts: SparseHistogram) -> "ScoreHistogram":
        """Sum of one or more `SparseHistogram` into a dense histogram."""
        histogram = cls()
        for part in parts:
            bits = part.bits.astype(np.intp)  # unique within one part, so plain fancy-index adds are exact
            histogram.positives[bits] += part.positives
            histogram.negatives[bits] += part.negatives
        return histogram

    # -- reading --------------------------------------------------------------------------------
    @property
    def n_positive(self) -> int:
        return int(self.positives.sum())

    @property
    def n_negative(self) -> int:
        return int(self.negatives.sum())

    @property
    def n_total(self) -> int:
        return self.n_positive + self.n_negative

    def _descending_counts(self):
        """(scores, positives, negatives) of the non-empty distinct scores, highest score first."""
        positives = self.positives.copy()
        negatives = self.negatives.copy()
        positives[0] += positives[0x8000]  # -0.0 ties with +0.0
        negatives[0] += negatives[0x8000]
        positives, negatives = positives[_DESCENDING_BITS], negatives[_DESCENDING_BITS]
        nonempty = (positives + negatives) > 0
        scores = _ALL_VALUES[_DESCENDING_BITS][nonempty]
        return scores, positives[nonempty], negatives[nonempty]

    def average_precision(self) -> float:
        """Average precision as `sklearn.metrics.average_precision_score` defines it (see `average_precision`)."""
        _, positives, negatives = self._descending_counts()
        return _average_precision_from_counts(positives, negatives)

    def auroc(self) -> float:
        """Area under the ROC curve as `sklearn.metrics.roc_auc_score` defines it (see `auroc`)."""
        _, positives, negatives = self._descending_counts()
        return _auroc_from_counts(positives, negatives)

    def precision_recall_curve(self):
        """(precision, recall, thresholds) exactly as `sklearn.metrics.precision_recall_curve` returns them."""
        scores, positives, negatives = self._descending_counts()
        return _precision_recall_from_counts(scores, positives, negatives)

    def roc_curve(self):
        """(fpr, tpr, thresholds) as `sklearn.metrics.roc_curve(..., drop_intermediate=False)` returns them."""
        scores, positives, negatives = self._descending_counts()
        return _roc_from_counts(scores, positives, negatives)


# -- metrics from grouped counts (highest score first) ----------------------------------------------
def _average_precision_from_counts(positives, negatives) -> float:
    if positives.size == 0:
        raise ValueError("average precision of no samples is undefined: `scores` is empty")
    true_positives = np.cumsum(positives, dtype=np.float64)
    n_positive = true_positives[-1]
    if n_positive == 0:
        # sklearn: "No positive class found in y_true, recall is set to one for all thresholds" -> 0.0
        warnings.warn("No positive target: average precision is 0.0 (as in scikit-learn)", UndefinedMetricWarning, stacklevel=3)
        return 0.0
    predicted_positives = true_positives + np.cumsum(negatives, dtype=np.float64)
    precision = true_positives / predicted_positives
    # sklearn's step-wise sum: sum_n (R_n - R_{n-1}) P_n over distinct thresholds, ties grouped.
    return float(np.sum(positives / n_positive * precision))


def _auroc_from_counts(positives, negatives) -> float:
    if positives.size == 0:
        raise ValueError("AUROC of no samples is undefined: `scores` is empty")
    n_positive = float(np.sum(positives, dtype=np.float64))
    n_negative = float(np.sum(negatives, dtype=np.float64))
    if n_positive == 0 or n_negative == 0:
        warnings.warn(
            "Only one class present in the targets: AUROC is undefined, returning nan (as in scikit-learn)",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return float("nan")
    true_positives_before = np.cumsum(positives, dtype=np.float64) - positives
    # Trapezoid rule on the ROC curve == Mann-Whitney U with half credit for tied pairs.
    pairs_won = np.sum(negatives * (true_positives_before + 0.5 * positives))
    return float(pairs_won / n_positive / n_negative)


def _precision_recall_from_counts(scores, positives, negatives):
    true_positives = np.cumsum(positives, dtype=np.float64)
    false_positives = np.cumsum(negatives, dtype=np.float64)
    predicted = true_positives + false_positives
    precision = np.divide(true_positives, predicted, out=np.zeros_like(predicted), where=predicted != 0)
    if true_positives.size and true_positives[-1] != 0:
        recall = true_positives / true_positives[-1]
    else:
        recall = np.ones_like(true_positives)
    # sklearn's order: increasing thresholds, then the (precision 1, recall 0) end point.
    precision = np.hstack((precision[::-1], 1.0))
    recall = np.hstack((recall[::-1], 0.0))
    return precision, recall, scores[::-1].astype(np.float64)


def _roc_from_counts(scores, positives, negatives):
    true_positives = np.hstack((0.0, np.cumsum(positives, dtype=np.float64)))
    false_positives = np.hstack((0.0, np.cumsum(negatives, dtype=np.float64)))
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = true_positives / true_positives[-1]
        fpr = false_positives / false_positives[-1]
    return fpr, tpr, np.hstack((np.inf, scores.astype(np.float64)))


# -- one-call functions ---------------------------------------------------------------------------
def _grouped_counts(scores, targets, quantise):
    scores = np.asarray(scores)
    if scores.size == 0:
        raise ValueError("`scores` is empty; average precision and AUROC need at least one sample")
    if quantise not in QUANTISE_OPTIONS:
        raise ValueError(f"`quantise` must be None (exact) or 'float16'; got {quantise!r}")
    if quantise == "float16":
        return ScoreHistogram.from_scores(scores, targets)._descending_counts()[1:]
    from ._exact import as_exact_floats, exact_grouped_counts, split_sorted

    targets = _as_bool_targets(targets, scores.shape)
    scores = as_exact_floats(scores)
    if scores.dtype == np.float16:  # every float16 value has its own bin: counting is exact
        return ScoreHistogram.from_scores(scores, targets)._descending_counts()[1:]
    return exact_grouped_counts(*split_sorted(scores, targets))


def average_precision(scores, targets, *, quantise=None) -> float:
    """Average precision of `scores` for boolean `targets`, exactly as scikit-learn computes it.

    AP = sum over distinct thresholds, highest first, of (R_n - R_{n-1}) P_n, where tied scores
    form one threshold (`sklearn.metrics.average_precision_score`). Computed on the scores as they
    are (float32 stays float32): float16 scores are counted per value, wider ones are split into
    positives and negatives, sorted, and the negatives counted around the distinct positive scores.

    Parameters
    ----------
    scores : array_like
        Anomaly scores, any shape and real dtype.
    targets : array_like of bool
        Ground truth of the same shape (0/1 numbers are accepted).
    quantise : {None, 'float16'}
        None (default): exact on the scores' own dtype; the result equals sklearn's on the same
        scores (integers and booleans are ranked as float64/float32, which holds them exactly).
        'float16': round the scores to float16 first and count them (one streaming pass, memory
        bounded by a fixed chunk); the result equals sklearn's on ``scores.astype(np.float16)``.
        That is how the MOOD challenge reads submitted maps, so use it for the MOOD protocol only:
        elsewhere it merges scores that differ (a saturated map in [0.99, 1] has only 21 float16
        values there) and can move AP by several points.

    Returns
    -------
    float
        In [0, 1]. With no positive target, 0.0 and an `UndefinedMetricWarning` (sklearn 1.9 does the
        same); with only positive targets, 1.0.

    Raises
    ------
    ValueError
        Empty input, shape mismatch, targets other than 0/1, NaN or infinite scores, and with
        ``quantise='float16'`` scores beyond the float16 range (|x| > 65504).

    Notes
    -----
    Time and memory: with float16 scores, one pass and a constant 32 MB; with float32 scores, one
    sorted copy of the scores (4 bytes each) and two sorts. At 2e8 voxels that is over 10x faster
    than scikit-learn with under 1/4 of its memory (``benchmarks/README.md``, "Metrics").

    Examples
    --------
    >>> average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.8333333333333333
    >>> average_precision([0.5, 0.5, 0.5], [1, 0, 0])  # one tied threshold: precision 1/3
    0.3333333333333333
    """
    positives, negatives = _grouped_counts(scores, targets, quantise)
    return _average_precision_from_counts(positives, negatives)


def auroc(scores, targets, *, quantise=None) -> float:
    """Area under the ROC curve of `scores` for boolean `targets`, exactly as scikit-learn computes it.

    The trapezoidal area under the ROC curve, i.e. the probability that a random positive scores
    higher than a random negative, ties counting one half (`sklearn.metrics.roc_auc_score`).

    Parameters
    ----------
    scores, targets, quantise
        As for `average_precision`.

    Returns
    -------
    float
        In [0, 1]; nan with an `UndefinedMetricWarning` when only one class is present (as sklearn).

    Examples
    --------
    >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    >>> auroc([0.5, 0.5], [1, 0])
    0.5
    """
    positives, negatives = _grouped_counts(scores, targets, quantise)
    return _auroc_from_counts(positives, negatives)


def _exact_grouped(scores, targets, quantise):
    scores = np.asarray(scores)
    if scores.size == 0:
        raise ValueError("`scores` is empty; curves need at least one sample")
    if quantise not in QUANTISE_OPTIONS:
        raise ValueError(f"`quantise` must be None (exact) or 'float16'; got {quantise!r}")
    if quantise == "float16":
        return ScoreHistogram.from_scores(scores, targets)._descending_counts()
    targets = _as_bool_targets(targets, scores.shape)
    if not np.all(np.isfinite(scores)):
        raise ValueError(_non_finite_message("scores", scores[~np.isfinite(scores)]))
    values, inverse = np.unique(scores.reshape(-1), return_inverse=True)
    totals = np.bincount(inverse, minlength=values.size)
    positives = np.bincount(inverse[targets.reshape(-1)], minlength=values.size)
    return values[::-1], positives[::-1], (totals - positives)[::-1]


def precision_recall_curve(scores, targets, *, quantise=None):
    """(precision, recall, thresholds) as `sklearn.metrics.precision_recall_curve` returns them.

    `quantise` as for `average_precision`. Every distinct score is a threshold (a full sort): meant
    for slice and sample scores, which are few. For pixels use ``SortedScores.precision_recall_curve``.

    Examples
    --------
    >>> precision, recall, thresholds = precision_recall_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> precision.tolist(), recall.tolist()
    ([0.5, 0.6666666666666666, 0.5, 1.0, 1.0], [1.0, 1.0, 0.5, 0.5, 0.0])
    """
    return _precision_recall_from_counts(*_exact_grouped(scores, targets, quantise))


def roc_curve(scores, targets, *, quantise=None):
    """(fpr, tpr, thresholds) as `sklearn.metrics.roc_curve(..., drop_intermediate=False)` returns them.

    Examples
    --------
    >>> fpr, tpr, _ = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    return _roc_from_counts(*_exact_grouped(scores, targets, quantise))
