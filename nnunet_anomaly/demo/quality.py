"""The numbers the demo stands for: lesions found per type, healthy cases quiet, the ensemble above its folds.

Everything is scored inside each case's brain mask (``brainmasksTs``): the background is trivially
normal and would flatter every method alike. Per lesion type the AP is given twice: over that type's
cases only, and with the healthy test cases added as negatives (an anomaly detector runs on every
scan, and a healthy scan must not light up). A case's score is the score exceeded by 0.1 % of its
brain voxels (a robust maximum), which is what separates healthy cases from lesion cases.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["LESION_KINDS", "CASE_SCORE_RATE", "SAMPLE_AGGREGATES", "case_kind", "load_test_set", "load_maps",
           "intensity_maps", "lesion_quality", "synthetic_quality", "sample_aggregates", "sample_quality",
           "mean_of_folds", "split_by_anatomy", "quality_of_groups"]

LESION_KINDS = ("tumour", "cyst")
#: a case's score: the score exceeded by this fraction of its brain voxels
CASE_SCORE_RATE = 0.001
#: a whole image's score (sample-wise, the chest X-ray setting), first the paper's (the mean of the map), then
#: the reference's two others, then two that look at the image's highest scores only
SAMPLE_AGGREGATES = {"mean": "mean of the map (the paper's sample score)",
                     "percentile_75": "75th percentile of the map",
                     "top_25_mean": "mean of the top 25 % of the map",
                     "percentile_99": "99th percentile of the map",
                     "top_0.1%": "score exceeded by 0.1 % of the pixels (99.9th percentile)"}


def case_kind(case: str) -> str:
    """``test_tumour_003`` -> ``tumour``; a synthetic case ``sink_001`` -> ``sink``.

    Examples
    --------
    >>> case_kind("test_healthy_000"), case_kind("smooth_intensity_002")
    ('healthy', 'smooth_intensity')
    """
    name = case[len("test_"):] if case.startswith("test_") else case
    return name.rsplit("_", 1)[0]


def split_by_anatomy(cases: Mapping[str, dict], records: Mapping[str, Mapping], key: str = "seen") -> dict:
    """The cases grouped by a field of their records (``test_cases.json``, or a synthetic set's ``cases.json``).

    With ``key="seen"``: ``{"unseen anatomy": {...}, "seen anatomy": {...}}`` (no training case shares the
    anatomy / some do), unseen first; with ``key="anatomy"``: one group per anatomy name. Cases without a
    record are left out; empty groups are dropped.

    Examples
    --------
    >>> cases = {"a": {}, "b": {}, "c": {}}
    >>> records = {"a": {"anatomy": "X", "seen": False}, "b": {"anatomy": "Y", "seen": True}}
    >>> {group: sorted(members) for group, members in split_by_anatomy(cases, records).items()}
    {'unseen anatomy': ['a'], 'seen anatomy': ['b']}
    >>> list(split_by_anatomy(cases, records, key="anatomy"))
    ['X', 'Y']
    """
    groups: dict[str, dict] = {}
    if key == "seen":
        for name, flag in (("unseen anatomy", False), ("seen anatomy", True)):
            groups[name] = {c: d for c, d in cases.items() if c in records and bool(records[c].get("seen")) == flag}
    else:
        for anatomy in sorted({str(r.get(key)) for c, r in records.items() if c in cases}):
            groups[anatomy] = {c: d for c, d in cases.items() if c in records and str(records[c].get(key)) == anatomy}
    return {name: members for name, members in groups.items() if members}


def load_test_set(images, labels, brains=None) -> dict[str, dict]:
    """``{case: {"image", "truth", "brain"}}`` from nnU-Net-style folders (``case_0000.nii.gz``, ``case.nii.gz``).

    Without a brain mask, the brain is where the image is non-zero (the demo's skull-stripped scans).
    """
    from nnunet_anomaly.evaluation import load_ground_truth, load_image

    cases = {}
    for path in sorted(Path(labels).glob("*.nii.gz")):
        case = path.name[: -len(".nii.gz")]
        truth = load_ground_truth(path)
        image = load_image(images, case, truth.shape)
        brain_path = Path(brains) / path.name if brains is not None else None
        brain = load_ground_truth(brain_path) if brain_path is not None and brain_path.is_file() else image != 0
        cases[case] = {"image": image, "truth": truth, "brain": brain}
    return cases


def load_maps(folder, cases: Mapping[str, dict]) -> dict[str, np.ndarray]:
    """The anomaly maps of `cases` in a prediction folder (nnU-Net ``.npz``), clipped to [0, 1]."""
    from nnunet_anomaly.evaluation import load_prediction

    return {case: np.clip(load_prediction(Path(folder) / f"{case}.npz", reference_shape=data["truth"].shape), 0, 1)
            for case, data in cases.items()}


def intensity_maps(cases: Mapping[str, dict]) -> dict[str, np.ndarray]:
    """The threshold-the-image baseline: each image min-max scaled to [0, 1] (as ``evaluate --baselines``)."""
    from nnunet_anomaly.evaluation import intensity_baseline

    return {case: intensity_baseline(data["image"].astype(np.float32)) for case, data in cases.items()}


def mean_of_folds(rows: Sequence[Mapping]) -> dict:
    """The mean over fold models of every number in their rows (nested dictionaries of floats).

    Examples
    --------
    >>> mean_of_folds([{"ap": {"cyst": 0.2}, "x": 1.0}, {"ap": {"cyst": 0.4}, "x": 3.0}])
    {'ap': {'cyst': 0.30000000000000004}, 'x': 2.0}
    """
    first = rows[0]
    out = {}
    for key, value in first.items():
        if isinstance(value, Mapping):
            out[key] = mean_of_folds([row[key] for row in rows])
        elif isinstance(value, (int, float)):
            out[key] = float(np.nanmean([row[key] for row in rows]))
    return out


def _ap(maps, cases, names, *, metric: str = "ap") -> float:
    from nnunet_anomaly.evaluation import auroc, average_precision

    if not names:
        return float("nan")
    scores = np.concatenate([maps[c][cases[c]["brain"]] for c in names])
    truth = np.concatenate([cases[c]["truth"][cases[c]["brain"]] for c in names])
    if not truth.any() or (metric == "auroc" and truth.all()):
        return float("nan")
    return float(average_precision(scores, truth) if metric == "ap" else auroc(scores, truth))


def lesion_quality(models: Mapping[str, Mapping[str, np.ndarray]], cases: Mapping[str, dict]) -> dict:
    """Per model: AP per lesion type (alone and with the healthy cases), healthy false positives, case scores.

    Returns
    -------
    dict
        ``{model: {"ap": {kind: AP}, "ap_with_healthy": {kind: AP}, "healthy": {"score_exceeded_by_1%",
        "score_exceeded_by_0.1%"}, "case_scores": {case: score}, "highest_healthy_case",
        "lowest_lesion_case"}}``.
    """
    from nnunet_anomaly.nnunet.validation import healthy_false_positives

    healthy = [c for c in cases if case_kind(c) == "healthy"]
    out = {}
    for name, maps in models.items():
        row = {"ap": {}, "ap_with_healthy": {}}
        for kind in LESION_KINDS:
            of_kind = [c for c in cases if case_kind(c) == kind]
            row["ap"][kind] = _ap(maps, cases, of_kind)
            row["ap_with_healthy"][kind] = _ap(maps, cases, of_kind + healthy)
        if healthy:
            scores = np.concatenate([maps[c][cases[c]["brain"]] for c in healthy])
            exceeded = healthy_false_positives(scores, (0.01, 0.001))
            row["healthy"] = {key: value for key, value in exceeded.items() if key.startswith("score_exceeded_by_")}
        row["case_scores"] = {c: float(np.quantile(maps[c][cases[c]["brain"]], 1 - CASE_SCORE_RATE)) for c in cases}
        lesion_scores = [s for c, s in row["case_scores"].items() if case_kind(c) in LESION_KINDS]
        healthy_scores = [row["case_scores"][c] for c in healthy]
        row["highest_healthy_case"] = max(healthy_scores) if healthy_scores else float("nan")
        row["lowest_lesion_case"] = min(lesion_scores) if lesion_scores else float("nan")
        out[name] = row
    return out


def synthetic_quality(models: Mapping[str, Mapping[str, np.ndarray]], cases: Mapping[str, dict]) -> dict:
    """Per model: pixel AP over all synthetic cases (``pooled``) and per task (cases named ``{task}_{nnn}``),
    and the pixel AUROC per task (``auroc``)."""
    tasks = sorted({case_kind(c) for c in cases})
    out = {}
    for name, maps in models.items():
        row = {"pooled": _ap(maps, cases, list(cases))}
        row.update({task: _ap(maps, cases, [c for c in cases if case_kind(c) == task]) for task in tasks})
        row["auroc"] = {task: _ap(maps, cases, [c for c in cases if case_kind(c) == task], metric="auroc")
                        for task in tasks}
        out[name] = row
    return out


def quality_of_groups(maps: Mapping[str, Mapping[str, np.ndarray]], groups: Mapping[str, Mapping[str, dict]],
                      folds: Sequence[str], score=lesion_quality) -> dict:
    """``score`` (:func:`lesion_quality` or :func:`synthetic_quality`) of each group of cases, with the mean of
    the `folds`' rows added as ``"mean of the folds"``: ``{group: {model: row}}``."""
    out = {}
    for group, cases in groups.items():
        rows = score({name: {c: m[c] for c in cases} for name, m in maps.items()}, cases)
        rows["mean of the folds"] = mean_of_folds([rows[name] for name in folds])
        out[group] = rows
    return out


def sample_aggregates(score_map: np.ndarray) -> dict[str, float]:
    """The :data:`SAMPLE_AGGREGATES` of one anomaly map.

    Examples
    --------
    >>> {k: round(v, 3) for k, v in sample_aggregates(np.arange(100, dtype=float) / 99).items()}
    {'mean': 0.5, 'percentile_75': 0.75, 'top_25_mean': 0.879, 'percentile_99': 0.99, 'top_0.1%': 0.999}
    """
    values = np.sort(np.asarray(score_map, np.float64).ravel())
    top = values[int(np.floor(0.75 * values.size)):]
    return {"mean": float(values.mean()), "percentile_75": float(np.quantile(values, 0.75)),
            "top_25_mean": float(top.mean()), "percentile_99": float(np.quantile(values, 0.99)),
            "top_0.1%": float(np.quantile(values, 1 - CASE_SCORE_RATE))}


def sample_quality(models: Mapping[str, Mapping[str, np.ndarray]], positive: Sequence[str],
                   negative: Sequence[str]) -> dict:
    """Per model: every case's :data:`SAMPLE_AGGREGATES`, and per aggregate the AUROC and AP of the `positive`
    cases (e.g. pneumonia) against the `negative` ones (healthy) over cases.

    Returns
    -------
    dict
        ``{model: {"auroc": {aggregate: value}, "ap": {aggregate: value}, "scores": {case: {aggregate: value}}}}``.
    """
    from nnunet_anomaly.evaluation import auroc, average_precision

    names = [*positive, *negative]
    truth = np.array([True] * len(positive) + [False] * len(negative))
    out = {}
    for name, maps in models.items():
        scores = {case: sample_aggregates(maps[case]) for case in names}
        row = {"auroc": {}, "ap": {}, "scores": scores}
        for aggregate in SAMPLE_AGGREGATES:
            values = np.array([scores[c][aggregate] for c in names])
            ok = truth.any() and not truth.all()
            row["auroc"][aggregate] = float(auroc(values, truth)) if ok else float("nan")
            row["ap"][aggregate] = float(average_precision(values, truth)) if ok else float("nan")
        out[name] = row
    return out
