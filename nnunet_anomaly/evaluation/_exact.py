"""Exact AP and AUROC on scores of any float dtype: sort once, then count around the positives.

AP and AUROC depend on the negatives only through how many of them lie above, at, or between the
distinct positive scores. So the positives (few: the lesion voxels) and the negatives are each sorted
once (numpy's SIMD sort), and the negatives are counted around the distinct positive scores with two
``np.searchsorted`` calls. The grouped counts that result give exactly the step-wise PR sum and the
trapezoidal ROC area that scikit-learn computes after sorting every voxel together, in a fraction of
its time and memory, on the scores as they are (float32 maps stay float32).

:class:`SortedScores` is the additive, per-case form the evaluation keeps: each case's scores as
order-preserving integer keys, sorted, its negatives stored as a histogram over the top 16 key bits
plus the remaining bits (2 bytes per float32 negative). Summing cases (a chunk of the paper's
protocol, a whole test set) needs the exact keys only in the top-16-bit bins that hold a positive
score; every other bin lies wholly between two positive scores and enters by its count.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["SortedScores", "exact_grouped_counts", "order_keys"]

#: elements handled per step when splitting scores into positives and negatives (bounded temporaries)
CHUNK_SIZE = 1 << 22
_COARSE_BITS = 16
_KEY_DTYPES = {2: np.uint16, 4: np.uint32, 8: np.uint64}
_RESIDUAL_DTYPES = {2: None, 4: np.uint16, 8: np.uint64}


def exact_float_dtype(dtype) -> np.dtype:
    """The float dtype whose values hold `dtype`'s scores exactly.

    Floats keep their dtype; booleans and integers of up to 16 bits become float32, wider integers
    float64 (exact up to 2**53, checked where the scores are read).

    Examples
    --------
    >>> exact_float_dtype(np.float32), exact_float_dtype(np.uint8), exact_float_dtype(np.int64)
    (dtype('float32'), dtype('float32'), dtype('float64'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype
    if dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize <= 2):
        return np.dtype(np.float32)
    if dtype.kind in "iu":
        return np.dtype(np.float64)
    raise ValueError(f"`scores` must be a real numeric array; got dtype {dtype}")


def as_exact_floats(scores) -> np.ndarray:
    """`scores` as an array of a float dtype that holds every value exactly (no copy for floats).

    Raises
    ------
    ValueError
        Non-numeric dtype, or 64-bit integers beyond 2**53 (float64 could not hold them).
    """
    array = np.asarray(scores)
    dtype = exact_float_dtype(array.dtype)
    if array.dtype == dtype:
        return array
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8 and array.size:
        if int(np.max(np.abs(array.astype(np.float64)))) > 2**53:
            raise ValueError("`scores` holds 64-bit integers beyond 2**53, which no float dtype ranks exactly; "
                             "rescale them")
    return array.astype(dtype)


def order_keys(values) -> np.ndarray:
    """Unsigned integer keys that sort like the float `values` (``-0.0`` and ``0.0`` share one key).

    Examples
    --------
    >>> keys = order_keys(np.array([-2.0, -0.0, 0.0, 1e-30, 3.0], np.float32))
    >>> keys.dtype, bool(np.all(np.diff(keys.astype(np.int64)) >= 0)), int(keys[1]) == int(keys[2])
    (dtype('uint32'), True, True)
    """
    values = np.asarray(values)
    if values.dtype.kind != "f" or values.dtype.itemsize not in _KEY_DTYPES:
        raise ValueError(f"order_keys needs float16, float32 or float64 values; got {values.dtype}")
    key_dtype = _KEY_DTYPES[values.dtype.itemsize]
    bits = (values + values.dtype.type(0)).view(key_dtype)  # x + 0 turns -0.0 into +0.0
    width = 8 * values.dtype.itemsize
    sign = key_dtype(1 << (width - 1))
    negative = (bits >> key_dtype(width - 1)).astype(bool)
    return np.where(negative, ~bits, bits | sign)


def _key_values(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The float values of `order_keys` (the inverse map; used to merge cases of different dtypes)."""
    width = 8 * dtype.itemsize
    key_dtype = _KEY_DTYPES[dtype.itemsize]
    keys = np.asarray(keys, key_dtype)
    sign = key_dtype(1 << (width - 1))
    positive = (keys & sign).astype(bool)
    return np.where(positive, keys ^ sign, ~keys).view(dtype)


def split_sorted(scores, targets) -> tuple[np.ndarray, np.ndarray]:
    """(positive scores, negative scores), each sorted ascending, in the scores' exact float dtype.

    Memory: the two sorted copies (one score per element) plus `CHUNK_SIZE`-element temporaries.
    """
    flat_scores = as_exact_floats(scores).reshape(-1)
    flat_targets = np.asarray(targets).reshape(-1)
    n_positive = int(np.count_nonzero(flat_targets))
    positives = np.empty(n_positive, flat_scores.dtype)
    negatives = np.empty(flat_scores.size - n_positive, flat_scores.dtype)
    p = n = 0
    for start in range(0, flat_scores.size, CHUNK_SIZE):
        chunk = flat_scores[start : start + CHUNK_SIZE]
        truth = flat_targets[start : start + CHUNK_SIZE]
        if not np.isfinite(chunk).all():
            raise ValueError(_non_finite(flat_scores))
        chunk_positives = chunk[truth]
        positives[p : p + chunk_positives.size] = chunk_positives
        p += chunk_positives.size
        chunk_negatives = chunk[~truth]
        negatives[n : n + chunk_negatives.size] = chunk_negatives
        n += chunk_negatives.size
    positives.sort()
    negatives.sort()
    return positives, negatives


def _non_finite(scores: np.ndarray) -> str:
    n_nan = int(np.count_nonzero(np.isnan(scores)))
    n_inf = int(np.count_nonzero(np.isinf(scores)))
    parts = [f"{n_nan} NaN" if n_nan else "", f"{n_inf} infinite" if n_inf else ""]
    return f"`scores` has {' and '.join(p for p in parts if p)} values; scores must be finite"


def exact_grouped_counts(positives_sorted, negatives_sorted, *, extra_gap_keys=None, extra_gap_counts=None,
                         with_thresholds: bool = False):
    """Grouped (positives, negatives) per threshold, highest first, from sorted positive and negative scores.

    Each distinct positive score is one group (its positives and the negatives tied with it); the
    negatives strictly between two consecutive distinct positive scores form one group. That is all
    AP and AUROC can see: no positive lies inside a negative-only group, so splitting it changes
    neither sum. `extra_gap_keys` / `extra_gap_counts` add negatives known only by count, each block
    lying wholly between two positive scores (any one key of the block places it).

    Returns
    -------
    positives, negatives : ndarray of int64
        Non-empty groups, highest score first.
    thresholds : ndarray, only with ``with_thresholds``
        The group's score: the positive score, or the highest negative of a negative-only group
        (the key of its block for negatives known only by count).

    Examples
    --------
    >>> p, n = exact_grouped_counts(np.array([0.35, 0.8]), np.array([0.1, 0.4]))
    >>> p.tolist(), n.tolist()
    ([1, 0, 1, 0], [0, 1, 0, 1])
    """
    positives_sorted = np.asarray(positives_sorted)
    negatives_sorted = np.asarray(negatives_sorted)
    n_negative = negatives_sorted.size
    if positives_sorted.size == 0:
        counts = (np.zeros(1, np.int64), np.full(1, n_negative + _total(extra_gap_counts), np.int64))
        thresholds = negatives_sorted[-1:] if n_negative else np.zeros(1, negatives_sorted.dtype)
        return (*counts, thresholds) if with_thresholds else counts
    starts = np.flatnonzero(np.concatenate(([True], positives_sorted[1:] != positives_sorted[:-1])))
    values = positives_sorted[starts]
    n_distinct = values.size
    positive_counts = np.diff(np.append(starts, positives_sorted.size)).astype(np.int64)
    left = np.searchsorted(negatives_sorted, values, side="left")
    right = np.searchsorted(negatives_sorted, values, side="right")
    exact_gaps = np.append(left, n_negative) - np.concatenate(([0], right))  # negatives strictly between values
    gaps = exact_gaps.astype(np.int64)
    has_blocks = extra_gap_counts is not None and len(extra_gap_counts) > 0
    if has_blocks:
        where = np.searchsorted(values, extra_gap_keys, side="left")
        gaps = gaps + np.bincount(where, weights=extra_gap_counts, minlength=n_distinct + 1).astype(np.int64)
    # ascending: gap 0, value 0, gap 1, value 1, ..., value K-1, gap K
    positives = np.zeros(2 * n_distinct + 1, np.int64)
    negatives = np.empty(2 * n_distinct + 1, np.int64)
    positives[1::2] = positive_counts
    negatives[0::2] = gaps
    negatives[1::2] = right - left
    keep = (positives + negatives) > 0
    result = positives[keep][::-1], negatives[keep][::-1]
    if not with_thresholds:
        return result
    # a group's threshold is a score in it: the positive score, or the highest negative of the gap
    # (for negatives known only by count, the key of the highest block in the gap)
    thresholds = np.zeros(2 * n_distinct + 1, values.dtype)
    thresholds[1::2] = values
    gap_thresholds = np.zeros(n_distinct + 1, values.dtype)
    filled = exact_gaps > 0
    gap_thresholds[filled] = negatives_sorted[(np.append(left, n_negative) - 1)[filled]]
    if has_blocks:
        only_blocks = ~filled[where]
        gap_thresholds[where[only_blocks]] = np.asarray(extra_gap_keys)[only_blocks]  # ascending: the last wins
    thresholds[0::2] = gap_thresholds
    return (*result, thresholds[keep][::-1])


def _total(counts) -> int:
    return 0 if counts is None else int(np.sum(counts))


class SortedScores:
    """Exact, additive summary of scores against boolean targets, for AP and AUROC of any float dtype.

    One case is kept as its positive scores (sorted order-preserving keys) and its negatives as a
    histogram over the top 16 key bits plus the remaining bits of each key, sorted (2 bytes per float32
    negative; float16 scores need no more than the histogram). ``a + b`` pools cases without copying;
    the metrics then equal scikit-learn's on the pooled scores as they are.

    Attributes
    ----------
    n_positive, n_negative, n_total : int
    nbytes : int
        Memory held by the stored keys and counts.

    Examples
    --------
    >>> a = SortedScores.from_scores(np.array([0.1, 0.4], np.float32), np.array([0, 1]))
    >>> b = SortedScores.from_scores(np.array([0.35, 0.8], np.float32), np.array([0, 1]))
    >>> pooled = a + b
    >>> pooled.n_positive, pooled.n_negative, round(pooled.average_precision(), 6), pooled.auroc()
    (2, 2, 1.0, 1.0)
    """

    __slots__ = ("_parts",)

    def __init__(self):
        self._parts: list[tuple] = []

    # -- building -------------------------------------------------------------------------------
    def update(self, scores, targets, *, mask=None) -> "SortedScores":
        """Add the scores of one case (optionally only where `mask` is True); returns `self`."""
        from ._histogram import _as_bool_targets

        scores = as_exact_floats(scores)
        targets = _as_bool_targets(targets, scores.shape)
        if mask is not None:
            mask = _as_bool_targets(mask, scores.shape)
            scores, targets = scores[mask], targets[mask]
        if scores.size == 0:
            return self
        if scores.dtype.itemsize not in _KEY_DTYPES:
            scores = scores.astype(np.float64)  # long double: float64 ranks (almost) all of it; documented
        positives, negatives = split_sorted(scores, targets)
        self._parts.append(_make_part(order_keys(positives), order_keys(negatives), scores.dtype))
        return self

    @classmethod
    def from_scores(cls, scores, targets, *, mask=None) -> "SortedScores":
        """A new summary of one case's scores (see `update`)."""
        return cls().update(scores, targets, mask=mask)

    def __add__(self, other: "SortedScores") -> "SortedScores":
        if not isinstance(other, SortedScores):
            return NotImplemented
        total = SortedScores()
        total._parts = self._parts + other._parts
        return total

    def __iadd__(self, other: "SortedScores") -> "SortedScores":
        if not isinstance(other, SortedScores):
            return NotImplemented
        self._parts = self._parts + other._parts
        return self

    @classmethod
    def pooled(cls, summaries: Sequence["SortedScores"]) -> "SortedScores":
        """The sum of several summaries (cheap: the parts are shared, not copied)."""
        total = cls()
        total._parts = [part for summary in summaries for part in summary._parts]
        return total

    # -- reading --------------------------------------------------------------------------------
    @property
    def n_positive(self) -> int:
        return sum(int(part[1].size) for part in self._parts)

    @property
    def n_negative(self) -> int:
        return sum(int(part[3].sum()) for part in self._parts)

    @property
    def n_total(self) -> int:
        return self.n_positive + self.n_negative

    @property
    def nbytes(self) -> int:
        return sum(sum(a.nbytes for a in part[1:] if a is not None) for part in self._parts)

    def grouped_counts(self, *, with_thresholds: bool = False):
        """(positives, negatives[, thresholds]) per threshold group, highest score first (exact)."""
        if not self._parts:
            raise ValueError("average precision and AUROC of no samples are undefined: nothing was added")
        dtype = max((part[0] for part in self._parts), key=lambda d: d.itemsize)
        parts = [_promote(part, dtype) for part in self._parts]
        shift = 8 * dtype.itemsize - _COARSE_BITS
        key_dtype = _KEY_DTYPES[dtype.itemsize]
        positive_keys = np.concatenate([part[1] for part in parts])
        positive_keys.sort()
        if shift == 0:  # float16: the histogram holds every key exactly
            negative_keys = np.concatenate([np.repeat(part[2], part[3]) for part in parts])
            negative_keys.sort()
            counts = exact_grouped_counts(positive_keys, negative_keys, with_thresholds=with_thresholds)
        else:
            is_positive_bin = np.zeros(1 << _COARSE_BITS, bool)
            is_positive_bin[(positive_keys >> key_dtype(shift)).astype(np.intp)] = True
            exact = np.concatenate([_negatives_in_bins(part, is_positive_bin, shift, key_dtype) for part in parts])
            exact.sort()
            coarse = np.zeros(1 << _COARSE_BITS, np.int64)
            for part in parts:
                coarse[part[2].astype(np.intp)] += part[3]  # bins are unique within a part
            coarse[is_positive_bin] = 0
            bins = np.flatnonzero(coarse)
            counts = exact_grouped_counts(positive_keys, exact, extra_gap_keys=bins.astype(key_dtype) << key_dtype(shift),
                                          extra_gap_counts=coarse[bins], with_thresholds=with_thresholds)
        if with_thresholds:
            positives, negatives, keys = counts
            return positives, negatives, _key_values(keys.astype(key_dtype), dtype).astype(np.float64)
        return counts

    def average_precision(self) -> float:
        """Average precision as `sklearn.metrics.average_precision_score` computes it."""
        from ._histogram import _average_precision_from_counts

        return _average_precision_from_counts(*self.grouped_counts())

    def metrics(self) -> tuple[float, float]:
        """(AP, AUROC) from one grouping (nan where undefined: no positive, or only one class)."""
        from ._histogram import _auroc_from_counts, _average_precision_from_counts

        if self.n_positive == 0:
            return float("nan"), float("nan")
        counts = self.grouped_counts()
        area = _auroc_from_counts(*counts) if self.n_negative else float("nan")
        return _average_precision_from_counts(*counts), area

    def auroc(self) -> float:
        """Area under the ROC curve as `sklearn.metrics.roc_auc_score` computes it."""
        from ._histogram import _auroc_from_counts

        return _auroc_from_counts(*self.grouped_counts())

    def precision_recall_curve(self):
        """(precision, recall, thresholds) at every threshold where recall changes, plus one point per
        run of negatives between two positive scores (the same curve as sklearn's, without the points
        that lie on its straight segments)."""
        from ._histogram import _precision_recall_from_counts

        positives, negatives, thresholds = self.grouped_counts(with_thresholds=True)
        return _precision_recall_from_counts(thresholds, positives, negatives)

    def roc_curve(self):
        """(fpr, tpr, thresholds), grouped like `precision_recall_curve` (the same polyline as sklearn's)."""
        from ._histogram import _roc_from_counts

        positives, negatives, thresholds = self.grouped_counts(with_thresholds=True)
        return _roc_from_counts(thresholds, positives, negatives)

    def __repr__(self) -> str:
        return (f"SortedScores({len(self._parts)} part(s), {self.n_positive} positive, {self.n_negative} negative, "
                f"{self.nbytes / 2**20:.1f} MB)")


def _make_part(positive_keys: np.ndarray, negative_keys: np.ndarray, dtype: np.dtype) -> tuple:
    """(dtype, positive keys, negative coarse bins, their counts, negative residual bits or None)."""
    shift = 8 * dtype.itemsize - _COARSE_BITS
    key_dtype = _KEY_DTYPES[dtype.itemsize]
    coarse = (negative_keys >> key_dtype(shift)).astype(np.uint16) if shift else negative_keys.astype(np.uint16)
    if coarse.size:
        starts = np.flatnonzero(np.concatenate(([True], coarse[1:] != coarse[:-1])))
        bins = coarse[starts]
        counts = np.diff(np.append(starts, coarse.size)).astype(np.int64)
    else:
        bins, counts = np.zeros(0, np.uint16), np.zeros(0, np.int64)
    residual_dtype = _RESIDUAL_DTYPES[dtype.itemsize]
    residual = None
    if residual_dtype is not None:
        mask = key_dtype((1 << shift) - 1)
        residual = (negative_keys & mask).astype(residual_dtype)
    return (np.dtype(dtype), positive_keys, bins, counts, residual)


def _negatives_in_bins(part: tuple, selected: np.ndarray, shift: int, key_dtype) -> np.ndarray:
    """The full keys of a part's negatives that fall in the `selected` coarse bins (ascending)."""
    _, _, bins, counts, residual = part
    chosen = selected[bins.astype(np.intp)]
    if not chosen.any():
        return np.zeros(0, key_dtype)
    if chosen.all():  # the common case: no index arithmetic
        keys = np.repeat(bins.astype(key_dtype), counts) << key_dtype(shift)
        keys |= residual
        return keys
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    lengths = counts[chosen]
    starts = offsets[chosen]
    total = int(lengths.sum())
    # positions of the chosen runs, without a Python loop over bins
    index = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(total)
    high = np.repeat(bins[chosen].astype(key_dtype), lengths) << key_dtype(shift)
    return high | residual[index].astype(key_dtype)


def _promote(part: tuple, dtype: np.dtype) -> tuple:
    """A part re-keyed for a wider float dtype (its values are exact in the wider one)."""
    if part[0] == dtype:
        return part
    old = part[0]
    shift = 8 * old.itemsize - _COARSE_BITS
    key_dtype = _KEY_DTYPES[old.itemsize]
    selected = np.ones(1 << _COARSE_BITS, bool)
    if shift:
        negative_keys = _negatives_in_bins(part, selected, shift, key_dtype)
    else:
        negative_keys = np.repeat(part[2].astype(key_dtype), part[3])
    positives = _key_values(part[1], old).astype(dtype)
    negatives = _key_values(negative_keys, old).astype(dtype)
    return _make_part(order_keys(positives), order_keys(negatives), dtype)
