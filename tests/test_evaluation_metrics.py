"""AP/AUROC (exact by default, float16 on request) against scikit-learn; the paper's scales against hand-worked cases."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from nnunet_anomaly.evaluation import (
    ScoreHistogram,
    SortedScores,
    UndefinedMetricWarning,
    aggregate_scores,
    auroc,
    average_precision,
    chunked_average_precision,
    evaluate_arrays,
    quantise_scores,
    slice_labels,
)
from nnunet_anomaly.evaluation import _exact, _histogram

TOL = 1e-6
EXACT = 1e-9  # the bar for the exact default: |ours - sklearn| on the same scores


def sk_metrics(scores, targets):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return average_precision_score(targets.ravel(), scores.ravel()), roc_auc_score(targets.ravel(), scores.ravel())


def assert_close(ours, theirs):
    if np.isnan(theirs):
        assert np.isnan(ours)
    else:
        assert abs(ours - theirs) <= TOL, (ours, theirs)


# -- against sklearn ------------------------------------------------------------------------------
def assert_exact(ours, theirs):
    if np.isnan(theirs):
        assert np.isnan(ours)
    else:
        assert abs(ours - theirs) < EXACT, (ours, theirs)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("prevalence", [0.001, 0.05, 0.5, 0.95])
def test_default_is_exact_on_the_scores_dtype(dtype, prevalence):
    rng = np.random.default_rng(int(prevalence * 1000))
    targets = rng.random((7, 30, 40)) < prevalence
    targets.flat[0], targets.flat[1] = True, False
    scores = (rng.random(targets.shape) * 0.7 + 0.3 * targets).astype(dtype)
    expected = sk_metrics(scores, targets)  # sklearn on the very same scores, no rounding
    assert_exact(average_precision(scores, targets), expected[0])
    assert_exact(auroc(scores, targets), expected[1])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float16_option_matches_sklearn_on_rounded_scores(dtype):
    rng = np.random.default_rng(11)
    targets = rng.random(20000) < 0.05
    scores = (rng.random(targets.shape) * 0.7 + 0.3 * targets).astype(dtype)
    expected = sk_metrics(scores.astype(np.float16), targets)
    assert_close(average_precision(scores, targets, quantise="float16"), expected[0])
    assert_close(auroc(scores, targets, quantise="float16"), expected[1])


def _issue_maps(kind, rng, n=200_000):
    """The three float32 maps of issue 11 on which float16 rounding was measured to go wrong."""
    targets = rng.random(n) < 0.02
    if kind == "sigmoid":        # a typical sigmoid map: rounding moved AP by about 5e-4
        logits = rng.normal(-3.0, 1.5, n) + 2.5 * targets
        scores = 1 / (1 + np.exp(-logits))
    elif kind == "saturated":    # a trained model's saturated map, all scores in [0.99, 1]
        scores = 0.99 + 0.01 * rng.beta(2 + 3 * targets, 2)
    else:                        # very small scores: float16 makes them all one tie (or zero)
        scores = 10 ** rng.uniform(-9, -8, n) * (1 + targets)
    return scores.astype(np.float32), targets


@pytest.mark.parametrize("kind", ["sigmoid", "saturated", "tiny"])
def test_float32_maps_of_the_issue_are_exact(kind):
    scores, targets = _issue_maps(kind, np.random.default_rng(["sigmoid", "saturated", "tiny"].index(kind)))
    expected = sk_metrics(scores, targets)
    assert_exact(average_precision(scores, targets), expected[0])
    assert_exact(auroc(scores, targets), expected[1])
    summary = SortedScores.pooled([SortedScores.from_scores(s, t) for s, t in
                                   zip(np.array_split(scores, 7), np.array_split(targets, 7))])
    assert_exact(summary.average_precision(), expected[0])
    assert_exact(summary.auroc(), expected[1])
    # what float16 rounding would have reported: the reason exact is the default
    rounded = average_precision(scores, targets, quantise="float16")
    assert abs(rounded - expected[0]) > 1e-5


def test_exact_path_matches_sklearn_on_unrounded_scores():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=5000)  # float64, many values float16 would merge
    targets = rng.random(5000) < 0.1
    expected = sk_metrics(scores, targets)
    assert_exact(average_precision(scores, targets), expected[0])
    assert_exact(auroc(scores, targets, quantise=None), expected[1])


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int16, np.int32, np.int64])
def test_integer_and_boolean_scores_are_ranked_exactly(dtype):
    rng = np.random.default_rng(2)
    targets = rng.random(3000) < 0.2
    high = 2 if dtype is bool else min(np.iinfo(dtype).max, 100_000)
    scores = (rng.integers(0, high, 3000) + 3 * targets).clip(0, high - 1).astype(dtype)
    expected = sk_metrics(scores.astype(np.float64), targets)
    assert_exact(average_precision(scores, targets), expected[0])
    assert_exact(auroc(scores, targets), expected[1])


def test_sorted_scores_pool_cases_of_mixed_dtypes_exactly():
    rng = np.random.default_rng(4)
    dtypes = [np.float16, np.float32, np.float64, np.float32]
    cases = [(rng.random(3000).astype(d), rng.random(3000) < 0.1) for d in dtypes]
    pooled = SortedScores.pooled([SortedScores.from_scores(s, t) for s, t in cases])
    scores = np.concatenate([s.astype(np.float64) for s, _ in cases])
    targets = np.concatenate([t for _, t in cases])
    expected = sk_metrics(scores, targets)
    assert_exact(pooled.average_precision(), expected[0])
    assert_exact(pooled.auroc(), expected[1])
    assert pooled.n_positive == int(targets.sum()) and pooled.n_negative == int((~targets).sum())
    # the grouped curves lie on sklearn's: same areas
    fpr, tpr, _ = pooled.roc_curve()
    assert_exact(float(np.trapezoid(tpr, fpr)), expected[1])
    precision, recall, _ = pooled.precision_recall_curve()
    assert_exact(float(-np.sum(np.diff(recall) * precision[:-1])), expected[0])


def test_sorted_scores_store_two_bytes_per_float32_negative():
    rng = np.random.default_rng(9)
    scores, targets = rng.random(100_000).astype(np.float32), rng.random(100_000) < 0.01
    summary = SortedScores.from_scores(scores, targets)
    assert summary.nbytes < 2.2 * 100_000 + 4 * targets.sum() + 10 * 65536


def test_exact_split_is_chunked(monkeypatch):
    monkeypatch.setattr(_exact, "CHUNK_SIZE", 1000)  # many chunks; the NaN is in a late one
    rng = np.random.default_rng(10)
    scores, targets = rng.random(10_000).astype(np.float32), rng.random(10_000) < 0.1
    expected = sk_metrics(scores, targets)
    assert_exact(average_precision(scores, targets), expected[0])
    scores[9_500] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        average_precision(scores, targets)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n=st.integers(1, 60),
    n_levels=st.integers(1, 6),
)
def test_adversarial_ties_and_signs_match_sklearn(data, n, n_levels):
    # few distinct levels (heavy ties), negative values, +0/-0, subnormals, float16 extremes
    levels = data.draw(st.lists(st.sampled_from([0.0, -0.0, 1.0, 0.5, -0.25, 6e-8, -6e-8, 65504.0, -65504.0, 0.1, 0.3]),
                                min_size=n_levels, max_size=n_levels))
    index = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_levels - 1)))
    targets = data.draw(hnp.arrays(np.bool_, n))
    scores = np.asarray(levels, dtype=np.float16)[index]
    expected = sk_metrics(scores, targets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        assert_close(average_precision(scores, targets), expected[0])
        assert_close(auroc(scores, targets), expected[1])


@settings(max_examples=60, deadline=None)
@given(scores=hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(-10, 10, width=32)),
       seed=st.integers(0, 2**16))
def test_random_float32_match_sklearn_exactly_and_after_rounding(scores, seed):
    targets = np.random.default_rng(seed).random(scores.shape) < 0.3
    rounded = sk_metrics(scores.astype(np.float16), targets)
    exact = sk_metrics(scores, targets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        assert_close(average_precision(scores, targets, quantise="float16"), rounded[0])
        assert_close(auroc(scores, targets, quantise="float16"), rounded[1])
        assert_exact(average_precision(scores, targets), exact[0])
        assert_exact(auroc(scores, targets), exact[1])
        summary = SortedScores.from_scores(scores, targets)
        if targets.any():
            assert_exact(summary.average_precision(), exact[0])


def test_curves_equal_sklearn():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 50, 3000).astype(np.float16) / 50
    targets = rng.random(3000) < 0.2
    histogram = ScoreHistogram.from_scores(scores, targets)
    for ours, theirs in zip(histogram.precision_recall_curve(), precision_recall_curve(targets, scores)):
        np.testing.assert_allclose(ours, theirs)
    for ours, theirs in zip(histogram.roc_curve(), roc_curve(targets, scores, drop_intermediate=False)):
        np.testing.assert_allclose(ours, theirs)


# -- edge cases follow sklearn 1.9 ----------------------------------------------------------------
def test_all_positive_and_all_negative_follow_sklearn():
    scores = np.array([0.1, 0.7, 0.7], np.float32)
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(auroc(scores, np.ones(3, bool)))
    assert average_precision(scores, np.ones(3, bool)) == average_precision_score(np.ones(3), scores) == 1.0
    with pytest.warns(UndefinedMetricWarning):
        assert average_precision(scores, np.zeros(3, bool)) == 0.0
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(auroc(scores, np.zeros(3, bool)))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        average_precision(np.zeros(0), np.zeros(0, bool))
    with pytest.raises(ValueError, match="1 NaN"):
        average_precision(np.array([0.1, np.nan]), np.array([1, 0]))
    with pytest.raises(ValueError, match="infinite"):
        auroc(np.array([0.1, np.inf]), np.array([1, 0]))
    with pytest.raises(ValueError, match="float16 range"):
        auroc(np.array([0.1, 1e6]), np.array([1, 0]), quantise="float16")
    assert auroc(np.array([0.1, 1e6]), np.array([0, 1])) == 1.0  # exact: any finite score
    with pytest.raises(ValueError, match="shape"):
        auroc(np.zeros(3), np.zeros(4, bool))
    with pytest.raises(ValueError, match="0/1"):
        auroc(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="quantise"):
        auroc(np.zeros(3), np.array([0, 1, 1]), quantise="int8")
    with pytest.raises(ValueError, match="NaN"):
        quantise_scores(np.array([np.nan], np.float16))


def test_invalid_update_leaves_histogram_unchanged_and_inputs_untouched():
    histogram = ScoreHistogram.from_scores(np.array([0.2, 0.8]), np.array([False, True]))
    before = histogram.positives.copy(), histogram.negatives.copy()
    scores = np.array([0.3, np.nan], np.float32)
    targets = np.array([True, False])
    with pytest.raises(ValueError):
        histogram.update(scores, targets)
    np.testing.assert_array_equal(histogram.positives, before[0])
    np.testing.assert_array_equal(histogram.negatives, before[1])
    assert np.isnan(scores[1]) and scores[0] == np.float32(0.3) and targets.tolist() == [True, False]


# -- streaming and additivity ----------------------------------------------------------------------
def test_streaming_over_cases_and_chunks_equals_one_call(monkeypatch):
    monkeypatch.setattr(_histogram, "CHUNK_SIZE", 1000)  # force many chunks per case
    rng = np.random.default_rng(5)
    cases = [(rng.random((10, 17, 13)).astype(np.float32), rng.random((10, 17, 13)) < 0.1) for _ in range(4)]
    streamed = ScoreHistogram()
    for scores, targets in cases:
        streamed.update(scores, targets)
    all_scores = np.concatenate([s.ravel() for s, _ in cases])
    all_targets = np.concatenate([t.ravel() for _, t in cases])
    expected = sk_metrics(all_scores.astype(np.float16), all_targets)
    assert_close(streamed.average_precision(), expected[0])
    assert_close(streamed.auroc(), expected[1])
    summed = sum((ScoreHistogram.from_scores(s, t) for s, t in cases), ScoreHistogram())
    np.testing.assert_array_equal(summed.positives, streamed.positives)
    sparse = ScoreHistogram.from_sparse(*(ScoreHistogram.from_scores(s, t).sparse() for s, t in cases))
    np.testing.assert_array_equal(sparse.negatives, streamed.negatives)


def test_non_contiguous_and_masked_input():
    rng = np.random.default_rng(6)
    scores = rng.random((20, 30)).astype(np.float32)
    targets = rng.random((20, 30)) < 0.2
    mask = rng.random((20, 30)) < 0.5
    histogram = ScoreHistogram.from_scores(scores.T, targets.T, mask=mask.T)
    expected = sk_metrics(scores[mask].astype(np.float16), targets[mask])
    assert_close(histogram.average_precision(), expected[0])
    assert_close(histogram.auroc(), expected[1])


# -- the paper's scales: hand-worked truths -------------------------------------------------------
def test_slice_labels_threshold_is_strict_and_proportional():
    mask = np.zeros((4, 128, 128), np.uint8)
    mask[1, :5, 0] = 1        # exactly 5/128^2: not positive
    mask[2, :6, 0] = 2        # label value 2 still counts as anomalous
    mask[3, :64, :64] = 1
    assert slice_labels(mask).tolist() == [False, False, True, True]
    small = np.zeros((2, 64, 64), bool)
    small[0, 0, :2] = True    # 2/64^2 = 8/128^2 > 5/128^2
    small[1, 0, :1] = True    # 1/64^2 = 4/128^2
    assert slice_labels(small).tolist() == [True, False]


def test_aggregates_by_hand():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)  # slices [0 1 2 3] and [4 5 6 7]
    np.testing.assert_allclose(aggregate_scores(x, "mean", axis=0), [1.5, 5.5])
    np.testing.assert_allclose(aggregate_scores(x, "percentile_75", axis=0), [2.25, 6.25])
    np.testing.assert_allclose(aggregate_scores(x, "top_25_mean", axis=0), [3.0, 7.0])  # top int(0.25*4)=1
    assert aggregate_scores(x, "top_25_mean") == 6.5  # top 2 of 8: 6 and 7
    assert aggregate_scores(np.array([1.0, 3.0]), "top_25_mean") == 2.0  # int(0.5) = 0: all, as the reference
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate_scores(x, "max")


def _reference_chunked_ap(maps, masks, chunk_size=20, repeats=10):
    """The reference implementation's protocol, written out with sklearn (independent truth)."""
    means = []
    for seed in range(repeats):
        order = np.random.default_rng(seed=seed).permutation(len(masks))
        labels = [masks[i].ravel() for i in order]
        preds = [maps[i].ravel() for i in order]
        aps = []
        for start in range(0, len(labels), chunk_size):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                aps.append(average_precision_score(np.concatenate(labels[start:start + chunk_size]),
                                                   np.concatenate(preds[start:start + chunk_size])))
        means.append(np.mean(aps))
    return np.mean(means), np.std(means), means


def test_chunked_ap_equals_reference_protocol():
    rng = np.random.default_rng(7)
    masks = [rng.random((6, 8, 8)) < p for p in rng.uniform(0, 0.2, 45)]
    masks[3][:] = False  # a healthy case
    maps = [np.clip(m * 0.5 + rng.random(m.shape) * 0.6, 0, 1).astype(np.float16) for m in masks]
    histograms = [ScoreHistogram.from_scores(s, t).sparse() for s, t in zip(maps, masks)]
    ours = chunked_average_precision(histograms)
    mean, std, per_repeat = _reference_chunked_ap(maps, masks)
    assert_close(ours["mean"], mean)
    assert_close(ours["std"], std)
    np.testing.assert_allclose(ours["repeats"], per_repeat, atol=TOL)
    # 45 cases -> chunks of 20, 20, 5; a different chunk size gives a different number
    assert abs(chunked_average_precision(histograms, chunk_size=45)["mean"] - ScoreHistogram.from_sparse(*histograms).average_precision()) < TOL


def test_chunked_ap_is_exact_on_float32_maps():
    rng = np.random.default_rng(12)
    masks = [rng.random((6, 8, 8)) < p for p in rng.uniform(0, 0.2, 45)]
    masks[3][:] = False
    maps = [np.clip(m * 0.5 + rng.random(m.shape) * 0.6, 0, 1).astype(np.float32) for m in masks]
    ours = chunked_average_precision([SortedScores.from_scores(s, t) for s, t in zip(maps, masks)])
    mean, std, per_repeat = _reference_chunked_ap(maps, masks)
    assert_exact(ours["mean"], mean)
    np.testing.assert_allclose(ours["repeats"], per_repeat, atol=EXACT, rtol=0)


def test_evaluate_arrays_brain_scales_against_sklearn():
    rng = np.random.default_rng(8)
    masks = [np.zeros((5, 16, 16), bool) for _ in range(3)]
    masks[0][1:3, 4:9, 4:9] = True
    masks[1][2, :2, :2] = True   # 4 pixels of 256 = 1.6 % > 5/128^2
    maps = [np.clip(m * 0.3 + rng.random(m.shape) * 0.8, 0, 1).astype(np.float32) for m in masks]
    result = evaluate_arrays(maps, masks, setting="brain", chunk_size=2, repeats=3)
    labels = np.concatenate([slice_labels(m) for m in masks])
    slice_scores = np.concatenate([m.reshape(5, -1).mean(axis=1) for m in maps])
    assert result["slice"]["n_positive"] == int(labels.sum()) == 3
    assert_close(result["slice"]["ap"]["mean"], average_precision_score(labels, slice_scores))
    assert_close(result["slice"]["auroc"]["mean"], roc_auc_score(labels, slice_scores))
    pooled = np.concatenate([m.ravel() for m in maps])
    truth = np.concatenate([m.ravel() for m in masks])
    assert_exact(result["pixel"]["ap_pooled"], average_precision_score(truth, pooled))
    assert_exact(result["pixel"]["auroc"], roc_auc_score(truth, pooled))
    rounded = evaluate_arrays(maps, masks, setting="brain", chunk_size=2, repeats=3, precision="float16")
    assert_close(rounded["pixel"]["ap_pooled"], average_precision_score(truth, pooled.astype(np.float16)))
    sample_scores = [m.mean() for m in maps]
    assert_close(result["sample"]["auroc"]["mean"], roc_auc_score([1, 1, 0], sample_scores))
    # the healthy case's pixel AP is undefined (nan) and left out of the mean
    per_case = [average_precision_score(m.ravel(), s.ravel()) for s, m in zip(maps[:2], masks[:2])]
    assert_exact(result["pixel"]["per_case_ap_mean"], np.mean(per_case))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 127, 1001])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_all_aggregates_equal_numpy_percentile_and_sorted_top_quarter(n, dtype):
    from nnunet_anomaly.evaluation._scales import all_aggregates

    rng = np.random.default_rng(n)
    x = (rng.random((3, n)) * 200).astype(dtype)
    x[:, : n // 3] = x[:, :1]  # ties
    result = all_aggregates(x, axis=0)
    as64 = x.astype(np.float64)
    np.testing.assert_allclose(result["percentile_75"], np.percentile(as64, 75, axis=1), rtol=0, atol=1e-9)
    k = int(n * 0.25)
    top = [np.sort(row)[-k:].mean() if k else row.mean() for row in as64]
    np.testing.assert_allclose(result["top_25_mean"], top, rtol=1e-12)
    np.testing.assert_allclose(result["mean"], as64.mean(axis=1), rtol=1e-12)
    assert all_aggregates(x)["mean"].shape == (1,)
