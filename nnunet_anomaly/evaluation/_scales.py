"""The paper's evaluation scales: slice labels, sample/slice score aggregates, and AP in chunks of cases.

Follows the reference implementation (``multitask_method/evaluation/eval_metrics.py``):

- a slice (axis 0 of a ``(Z, Y, X)`` array, i.e. axial for arrays read by SimpleITK) is positive
  when more than 5/128**2 of its pixels are anomalous (Zimmerer et al.'s threshold, proportional
  because slices differ in size);
- a sample is positive when any pixel is;
- slice and sample scores aggregate the pixel scores by the mean (the paper's tables), the 75th
  percentile, or the mean of the top 25 % of pixels;
- the paper's pixel AP pools the pixels of chunks of 20 cases, averages the chunk APs, and repeats
  that over 10 orderings (``numpy.random.default_rng(seed).permutation`` with seeds 0..9).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ._exact import SortedScores
from ._histogram import ScoreHistogram, SparseHistogram, _average_precision_from_counts

__all__ = [
    "AGGREGATES",
    "SLICE_POSITIVE_FRACTION",
    "aggregate_scores",
    "all_aggregates",
    "chunked_average_precision",
    "pad_to_canvas",
    "slice_labels",
]

#: a slice is anomalous if more than this fraction of its pixels is (5 pixels of a 128 x 128 slice)
SLICE_POSITIVE_FRACTION = 5 / 128**2
#: aggregate names, the paper's choice first
AGGREGATES = ("mean", "percentile_75", "top_25_mean")


def slice_labels(mask, *, axis: int = 0, fraction: float = SLICE_POSITIVE_FRACTION) -> np.ndarray:
    """Label each slice of `mask` along `axis` positive if its anomalous fraction exceeds `fraction`.

    Parameters
    ----------
    mask : array_like
        Ground truth, any dimension >= 2; non-zero means anomalous.
    axis : int
        The slicing axis (0 = axial for ``(Z, Y, X)`` arrays as SimpleITK reads NIfTI).
    fraction : float
        Strict threshold on the anomalous fraction of a slice (default 5/128**2).

    Returns
    -------
    ndarray of bool, shape (mask.shape[axis],)

    Examples
    --------
    >>> mask = np.zeros((3, 128, 128), bool)
    >>> mask[1, :5, 0] = True    # exactly 5 pixels: not more than 5/128**2
    >>> mask[2, :6, 0] = True    # 6 pixels
    >>> slice_labels(mask)
    array([False, False,  True])
    """
    mask = np.asarray(mask)
    if mask.ndim < 2:
        raise ValueError(f"slice labels need an array of at least 2 dimensions; got shape {mask.shape}")
    slices = np.moveaxis(mask != 0, axis, 0).reshape(mask.shape[axis], -1)
    return slices.mean(axis=1) > fraction


def aggregate_scores(scores, method: str = "mean", *, axis: int | None = None) -> np.ndarray | float:
    """Aggregate pixel scores into one score per sample (``axis=None``) or per slice along `axis`.

    Parameters
    ----------
    scores : array_like
        Pixel scores.
    method : {'mean', 'percentile_75', 'top_25_mean'}
        'mean' (the paper's tables), the 75th percentile (linear interpolation, ``np.percentile``),
        or the mean of the top ``int(0.25 * n)`` pixels (all pixels when that is 0, as the reference).
    axis : int, optional
        Keep this axis: one score per slice along it.

    Examples
    --------
    >>> x = np.array([[0.0, 0.2, 0.4, 1.0], [0.1, 0.1, 0.1, 0.1]])
    >>> aggregate_scores(x, "mean", axis=0)
    array([0.4, 0.1])
    >>> aggregate_scores(x, "top_25_mean")
    0.7
    >>> float(aggregate_scores(x[0], "percentile_75"))
    0.55
    """
    if method not in AGGREGATES:
        raise ValueError(f"unknown aggregate {method!r}; choose one of {', '.join(AGGREGATES)}")
    result = all_aggregates(scores, axis=axis)[method]
    return float(result[0]) if axis is None else result


def all_aggregates(scores, *, axis: int | None = None) -> dict[str, np.ndarray]:
    """The three aggregates at once, from one partial sort of each row (what `aggregate_scores` uses).

    Returns
    -------
    dict
        ``{method: float64 array}``, one value per slice along `axis` (one value when `axis` is None).

    Examples
    --------
    >>> x = np.arange(8.0).reshape(2, 4)
    >>> {k: v.tolist() for k, v in all_aggregates(x, axis=0).items()}
    {'mean': [1.5, 5.5], 'percentile_75': [2.25, 6.25], 'top_25_mean': [3.0, 7.0]}
    """
    values = np.asarray(scores)
    if values.size == 0:
        raise ValueError("cannot aggregate an empty score array")
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise ValueError(f"scores must be numeric; got dtype {values.dtype}")
    if axis is None:
        rows = values.reshape(1, -1)
    else:
        rows = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    if rows.dtype not in (np.float32, np.float64):
        rows = rows.astype(np.float64)
    n = rows.shape[1]
    # np.percentile(..., 75) with linear interpolation reads ranks floor(v) and floor(v) + 1, v = 0.75 (n - 1)
    virtual = 0.75 * (n - 1)
    low = int(np.floor(virtual))
    high = min(low + 1, n - 1)
    fraction = virtual - low
    n_top = int(n * 0.25)
    kth = sorted({low, high} | ({n - n_top} if 0 < n_top else set()))
    partitioned = np.partition(rows, kth, axis=1)  # one partial sort serves both order statistics
    below = partitioned[:, low].astype(np.float64)
    above = partitioned[:, high].astype(np.float64)
    difference = above - below
    # numpy's _lerp: interpolate from the nearer end, so the result is exact at fraction 0 and 1
    percentile = below + difference * fraction if fraction < 0.5 else above - difference * (1 - fraction)
    mean = rows.mean(axis=1, dtype=np.float64)
    top = partitioned[:, n - n_top:].mean(axis=1, dtype=np.float64) if n_top else mean
    return {"mean": mean, "percentile_75": percentile, "top_25_mean": top}


def chunked_average_precision(
    case_histograms: Sequence[SortedScores | SparseHistogram | ScoreHistogram],
    *,
    chunk_size: int = 20,
    repeats: int = 10,
) -> dict:
    """The paper's pixel AP: mean AP over chunks of `chunk_size` cases, over `repeats` seeded orderings.

    Ordering ``r`` is ``numpy.random.default_rng(seed=r).permutation(n_cases)``, as in the reference;
    the last chunk of an ordering may be smaller. A chunk without any positive pixel has AP 0.0, as
    sklearn returns (and the reference then averages it in).

    Parameters
    ----------
    case_histograms : sequence of SortedScores, SparseHistogram or ScoreHistogram
        One per case, in case order (sorted by case name, as the reference sorts by sample id):
        `SortedScores` for exact AP on the scores as they are, histograms for float16 counting.
    chunk_size, repeats : int
        20 and 10 in the paper.

    Returns
    -------
    dict
        ``{"mean", "std", "repeats"}``: mean and (population) standard deviation of the per-ordering
        means, and the per-ordering means themselves.

    Examples
    --------
    Four cases, chunks of two: the AP of each chunk's pooled pixels, averaged.

    >>> from nnunet_anomaly.evaluation import ScoreHistogram
    >>> cases = [ScoreHistogram.from_scores(np.array(s), np.array(t)) for s, t in
    ...          [([0.9, 0.1], [1, 0]), ([0.2, 0.3], [0, 1]), ([0.8, 0.7], [0, 1]), ([0.4, 0.6], [1, 0])]]
    >>> result = chunked_average_precision(cases, chunk_size=4, repeats=2)
    >>> [round(ap, 4) for ap in result["repeats"]]  # one chunk of every case: the pooled AP, any order
    [0.7333, 0.7333]
    >>> halves = chunked_average_precision(cases, chunk_size=2, repeats=1)  # seed 0 orders [2, 0, 1, 3]
    >>> round(halves["mean"], 4)  # mean of AP(cases 2, 0) = 5/6 and AP(cases 1, 3) = 7/12
    0.7083
    """
    n_cases = len(case_histograms)
    if n_cases == 0:
        raise ValueError("chunked average precision needs at least one case")
    if chunk_size < 1 or repeats < 1:
        raise ValueError(f"`chunk_size` and `repeats` must be >= 1; got {chunk_size} and {repeats}")
    exact = all(isinstance(h, SortedScores) for h in case_histograms)
    if not exact and any(isinstance(h, SortedScores) for h in case_histograms):
        raise ValueError("mix of SortedScores and float16 histograms: summarise every case the same way")
    dense = [_dense_counts(h) for h in case_histograms] if n_cases <= 64 and not exact else None
    repeat_means = []
    for seed in range(repeats):
        order = np.random.default_rng(seed=seed).permutation(n_cases)
        chunk_aps = []
        for start in range(0, n_cases, chunk_size):
            members = order[start : start + chunk_size]
            if exact:
                chunk = SortedScores.pooled([case_histograms[i] for i in members])
                chunk_aps.append(chunk.average_precision() if chunk.n_positive else 0.0)
                continue
            if dense is not None:
                positives = sum(dense[i][0] for i in members)
                negatives = sum(dense[i][1] for i in members)
            else:
                positives, negatives = _sum_sparse([case_histograms[i] for i in members])
            chunk_aps.append(_ap_of_dense(positives, negatives))
        repeat_means.append(float(np.mean(chunk_aps)))
    return {"mean": float(np.mean(repeat_means)), "std": float(np.std(repeat_means)), "repeats": repeat_means}


def _dense_counts(histogram):
    if isinstance(histogram, ScoreHistogram):
        return histogram.positives, histogram.negatives
    dense = ScoreHistogram.from_sparse(histogram)
    return dense.positives, dense.negatives


def _sum_sparse(histograms):
    dense = ScoreHistogram()
    for histogram in histograms:
        if isinstance(histogram, ScoreHistogram):
            dense += histogram
        else:
            bits = histogram.bits.astype(np.intp)
            dense.positives[bits] += histogram.positives  # bits are unique within one histogram
            dense.negatives[bits] += histogram.negatives
    return dense.positives, dense.negatives


def _ap_of_dense(positives, negatives) -> float:
    histogram = ScoreHistogram()
    histogram.positives, histogram.negatives = positives, negatives
    _, grouped_positives, grouped_negatives = histogram._descending_counts()
    if grouped_positives.sum() == 0:
        return 0.0  # sklearn's value for a chunk without positives (without its warning, once per chunk)
    return _average_precision_from_counts(grouped_positives, grouped_negatives)


def pad_to_canvas(array, canvas, *, value=0):
    """Pad `array` symmetrically to the `canvas` shape, the reference's rule for its 80x112x80 brain canvas.

    Each axis gets ``(t - s) // 2`` values before and the rest (one more when ``t - s`` is odd) after,
    as ``multitask_method/data/preprocessed_mri.py`` pads every brain volume at load time.

    Raises
    ------
    ValueError
        If `array` has another number of dimensions or is larger than the canvas along an axis.

    Examples
    --------
    >>> pad_to_canvas(np.ones((1, 2)), (3, 5)).astype(int).tolist()
    [[0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]]
    """
    array = np.asarray(array)
    canvas = tuple(int(t) for t in canvas)
    if array.ndim != len(canvas):
        raise ValueError(f"cannot pad a {array.ndim}D array of shape {array.shape} to the {len(canvas)}D canvas {canvas}")
    if any(s > t for s, t in zip(array.shape, canvas)):
        raise ValueError(f"shape {array.shape} does not fit the canvas {canvas}")
    if array.shape == canvas:
        return array
    widths = [((t - s) // 2, (t - s) - (t - s) // 2) for s, t in zip(array.shape, canvas)]
    return np.pad(array, widths, mode="constant", constant_values=value)
