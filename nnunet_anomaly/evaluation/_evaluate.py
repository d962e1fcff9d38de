"""Score folders of anomaly maps against ground-truth masks, the way the paper reports them.

One pass over the cases (sorted by name, as the reference sorts by sample id): for each case the
maps of every model are read once, averaged into the ensemble, and each map (plus the baselines)
updates its own accumulator. With the default exact precision an accumulator keeps every score of
the test set, sorted and compressed (2 bytes per float32 voxel, see `SortedScores`); with
``precision="float16"`` (the MOOD protocol) it keeps one 65536-bin histogram per case.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ._exact import SortedScores
from ._histogram import ScoreHistogram, UndefinedMetricWarning, auroc, average_precision
from ._loading import find_cases, load_ground_truth, load_image, load_prediction, match_cases
from ._scales import (AGGREGATES, SLICE_POSITIVE_FRACTION, all_aggregates, chunked_average_precision, pad_to_canvas,
                      slice_labels)

__all__ = ["SETTINGS", "PRECISIONS", "PAPER_CANVAS_MM", "evaluate_folder", "evaluate_arrays", "paper_canvas"]

#: the scales each setting reports in its table (the JSON holds every scale that applies)
SETTINGS = {"brain": ("slice", "pixel"), "cxr": ("sample", "pixel")}
#: how pixel scores are ranked: "exact" (as they are) or "float16" (rounded, as MOOD reads maps)
PRECISIONS = ("exact", "float16")
#: the reference's brain canvas in millimetres: 80 x 112 x 80 voxels at 2 mm (its crop limit 160x224x160 at 1 mm)
PAPER_CANVAS_MM = (160.0, 224.0, 160.0)
ENSEMBLE = "ensemble"
RANDOM_BASELINE = "random"
INTENSITY_BASELINE = "intensity"


def _safe_metrics(scores, labels, *, quantise=None) -> tuple[float, float]:
    """(AP, AUROC) with nan where undefined: AP without positives, AUROC with only one class."""
    labels = np.asarray(labels, dtype=bool)
    if labels.size == 0:
        return float("nan"), float("nan")
    n_positive = int(labels.sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ap = average_precision(scores, labels, quantise=quantise) if n_positive else float("nan")
        area = auroc(scores, labels, quantise=quantise) if 0 < n_positive < labels.size else float("nan")
    return ap, area


def _summary_metrics(summary) -> tuple[float, float]:
    """(AP, AUROC) of a `SortedScores` or `ScoreHistogram`, nan where undefined."""
    if summary.n_total == 0 or summary.n_positive == 0:
        return float("nan"), float("nan")
    if isinstance(summary, SortedScores):
        return summary.metrics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ap = summary.average_precision()
        area = summary.auroc() if summary.n_negative else float("nan")
    return ap, area


def _new_summary(precision: str):
    return ScoreHistogram() if precision == "float16" else SortedScores()


class _PixelScale:
    """Pixel-wise metrics of one model over one region (every voxel, or a foreground mask)."""

    def __init__(self, precision: str):
        self.precision = precision
        self.pooled = _new_summary(precision)
        self.cases = []

    def update(self, scores, truth, mask=None):
        if self.precision == "float16":
            summary = ScoreHistogram.from_scores(scores, truth, mask=mask)
            self.pooled += summary
            self.cases.append(summary.sparse())
        else:
            summary = SortedScores.from_scores(scores, truth, mask=mask)
            self.pooled += summary
            self.cases.append(summary)
        return summary

    def results(self, rows, chunk_size: int, repeats: int, suffix: str = "") -> dict:
        pooled_ap, pixel_auroc = _summary_metrics(self.pooled)
        if self.pooled.n_positive == 0:  # no anomalous voxel anywhere: undefined, not the chunks' 0.0
            chunked = {"mean": float("nan"), "std": float("nan"), "repeats": [float("nan")] * repeats}
        else:
            chunked = chunked_average_precision(self.cases, chunk_size=chunk_size, repeats=repeats)
        case_aps = np.array([row[f"pixel_ap{suffix}"] for row in rows], dtype=float)
        case_aurocs = np.array([row[f"pixel_auroc{suffix}"] for row in rows], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-nan: nan, said in the docs
            return {
                "ap_chunked": {"mean": chunked["mean"], "std": chunked["std"], "repeats": chunked["repeats"],
                               "chunk_size": chunk_size, "n_repeats": repeats},
                "ap_pooled": pooled_ap,
                "auroc": pixel_auroc,
                "n_voxels": self.pooled.n_total,
                "n_positive": self.pooled.n_positive,
                "per_case_ap_mean": float(np.nanmean(case_aps)) if case_aps.size else float("nan"),
                "per_case_auroc_mean": float(np.nanmean(case_aurocs)) if case_aurocs.size else float("nan"),
            }


def _masked_slice_aggregates(scores: np.ndarray, mask: np.ndarray) -> tuple[dict, np.ndarray]:
    """Per-slice aggregates of the in-mask pixels (axis 0); slices without a mask pixel are left out."""
    keep = mask.reshape(mask.shape[0], -1).any(axis=1)
    values = {method: np.empty(int(keep.sum())) for method in AGGREGATES}
    for out_index, index in enumerate(np.flatnonzero(keep)):
        aggregates = all_aggregates(scores[index][mask[index]])
        for method in AGGREGATES:
            values[method][out_index] = aggregates[method][0]
    return values, keep


class _ThresholdCounts:
    """Voxels above a decision threshold, by kind: healthy cases, every negative, every positive."""

    KINDS = ("healthy", "negative", "positive")

    def __init__(self, value: float):
        self.value = value
        self.above = {kind: 0 for kind in self.KINDS}
        self.total = {kind: 0 for kind in self.KINDS}

    def update(self, scores, truth, healthy: bool):
        marked = scores > self.value
        n_marked_negative = int(np.count_nonzero(marked & ~truth))
        self.above["negative"] += n_marked_negative
        self.total["negative"] += int(truth.size - np.count_nonzero(truth))
        self.above["positive"] += int(np.count_nonzero(marked & truth))
        self.total["positive"] += int(np.count_nonzero(truth))
        if healthy:
            self.above["healthy"] += n_marked_negative
            self.total["healthy"] += int(truth.size)

    def results(self) -> dict:
        rate = lambda kind: self.above[kind] / self.total[kind] if self.total[kind] else float("nan")  # noqa: E731
        return {"healthy_voxel_fpr": rate("healthy"), "n_healthy_voxels": self.total["healthy"],
                "negative_voxel_fpr": rate("negative"), "sensitivity": rate("positive")}


class _Accumulator:
    """Everything one model (or ensemble, or baseline) needs for its metrics, gathered case by case."""

    def __init__(self, name: str, kind: str, folders: Sequence[str], with_slices: bool, *, precision: str = "exact",
                 with_mask: bool = False, threshold: float | None = None):
        self.name, self.kind, self.folders, self.with_slices = name, kind, list(folders), with_slices
        self.pixel = _PixelScale(precision)
        self.pixel_in_mask = _PixelScale(precision) if with_mask else None
        self.sample_scores = {method: [] for method in AGGREGATES}
        self.slice_scores = {method: [] for method in AGGREGATES}
        self.slice_scores_in_mask = {method: [] for method in AGGREGATES}
        self.slice_labels_in_mask = []
        self.threshold = None if threshold is None else _ThresholdCounts(threshold)
        self.threshold_in_mask = None if threshold is None or not with_mask else _ThresholdCounts(threshold)
        self.rows = []

    @property
    def pooled(self):
        """The pooled pixel summary of every voxel (what the figures draw)."""
        return self.pixel.pooled

    def update(self, case: str, scores: np.ndarray, truth: np.ndarray, labels_of_slices, foreground) -> None:
        summary = self.pixel.update(scores, truth)
        pixel_ap, pixel_auroc = _summary_metrics(summary)
        anomalous = bool(truth.any())
        row = {
            "case": case,
            "model": self.name,
            "n_voxels": summary.n_total,
            "n_positive": summary.n_positive,
            "anomalous": anomalous,
            "pixel_ap": pixel_ap,
            "pixel_auroc": pixel_auroc,
        }
        if self.pixel_in_mask is not None:
            in_mask = self.pixel_in_mask.update(scores, truth, foreground)
            row["n_voxels_in_mask"] = in_mask.n_total
            row["pixel_ap_in_mask"], row["pixel_auroc_in_mask"] = _summary_metrics(in_mask)
        for method, value in all_aggregates(scores).items():
            score = float(value[0])
            self.sample_scores[method].append(score)
            row[f"score_{method}"] = score
        if self.with_slices:
            per_slice = all_aggregates(scores, axis=0)
            for method in AGGREGATES:
                self.slice_scores[method].append(per_slice[method])
            row["n_slices"] = int(labels_of_slices.size)
            row["n_positive_slices"] = int(labels_of_slices.sum())
            row["slice_ap"], row["slice_auroc"] = _safe_metrics(per_slice["mean"], labels_of_slices)
            if self.pixel_in_mask is not None:
                masked, keep = _masked_slice_aggregates(scores, foreground)
                for method in AGGREGATES:
                    self.slice_scores_in_mask[method].append(masked[method])
                self.slice_labels_in_mask.append(labels_of_slices[keep])
        if self.threshold is not None:
            self.threshold.update(scores, truth, healthy=not anomalous)
            row["voxels_above_threshold"] = int(np.count_nonzero(scores > self.threshold.value))
            if self.threshold_in_mask is not None:
                self.threshold_in_mask.update(scores[foreground], truth[foreground], healthy=not anomalous)
        self.rows.append(row)

    def results(self, sample_labels, all_slice_labels, chunk_size: int, repeats: int) -> dict:
        result = {"kind": self.kind, "folders": self.folders,
                  "pixel": self.pixel.results(self.rows, chunk_size, repeats)}
        if self.pixel_in_mask is not None:
            result["pixel_in_mask"] = self.pixel_in_mask.results(self.rows, chunk_size, repeats, "_in_mask")
        result["sample"] = _scale_metrics(self.sample_scores, sample_labels)
        if self.with_slices:
            scores = {method: np.concatenate(values) for method, values in self.slice_scores.items()}
            result["slice"] = _scale_metrics(scores, all_slice_labels)
            if self.pixel_in_mask is not None:
                scores = {method: np.concatenate(values) for method, values in self.slice_scores_in_mask.items()}
                result["slice_in_mask"] = _scale_metrics(scores, np.concatenate(self.slice_labels_in_mask))
        if self.threshold is not None:
            result["threshold"] = {"value": self.threshold.value, **self.threshold.results()}
            if self.threshold_in_mask is not None:
                result["threshold"]["in_mask"] = self.threshold_in_mask.results()
        return result


def _scale_metrics(scores_by_method, labels) -> dict:
    labels = np.asarray(labels, dtype=bool)
    metrics = {"ap": {}, "auroc": {}, "n": int(labels.size), "n_positive": int(labels.sum())}
    for method, scores in scores_by_method.items():
        metrics["ap"][method], metrics["auroc"][method] = _safe_metrics(np.asarray(scores, dtype=np.float64), labels)
    return metrics


def _random_row(sample_labels, slice_labels_all, n_voxels, n_positive, with_slices) -> dict:
    """The analytic random classifier of the paper's tables: AP = prevalence, AUROC = 0.5."""

    def scale(labels):
        labels = np.asarray(labels, dtype=bool)
        return {"ap": float(labels.mean()) if labels.size else float("nan"), "auroc": 0.5}

    row = {"sample": scale(sample_labels), "pixel": {"ap": n_positive / n_voxels if n_voxels else float("nan"), "auroc": 0.5}}
    if with_slices:
        row["slice"] = scale(slice_labels_all)
    return row


def _unique_names(folders: Sequence[Path], names: Sequence[str] | None, reserved: set[str] = frozenset()) -> list[str]:
    """One display name per prediction folder: `names`, else the folder names made unique.

    `reserved` are the names of the rows this evaluation adds itself (the ensemble with several
    folders, the baselines): a folder that happens to carry one (``.../ensemble``) gets its parent's
    name in front instead; given `names` must avoid them.

    Examples
    --------
    >>> _unique_names([Path("pred/ensemble")], None), _unique_names([Path("a/ensemble"), Path("b/fold_0")], None, {"ensemble"})
    (['ensemble'], ['a/ensemble', 'fold_0'])
    """
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(folders):
            raise ValueError(f"`names` gives {len(names)} names for {len(folders)} prediction folders; give one per folder")
        if len(set(names)) < len(names) or set(reserved) & set(names):
            raise ValueError(f"model names must be unique and not one of {sorted(reserved)} (rows this evaluation "
                             f"adds); got {names}")
        return names
    names = [folder.name or str(folder) for folder in folders]
    # fold folders often share their last part (.../fold_0/validation): use the first part that differs
    if len(set(names)) < len(names):
        names = [f"{folder.parent.name}/{folder.name}" for folder in folders]
    names = [f"{folder.parent.name or 'predictions'}/{name}" if name in reserved else name
             for folder, name in zip(folders, names)]
    if len(set(names)) < len(names) or set(reserved) & set(names):
        names = [f"model_{i}" for i in range(len(folders))]
    return names


def paper_canvas(crop_info: dict, *, canvas_mm: Sequence[float] = PAPER_CANVAS_MM) -> tuple[int, ...]:
    """The reference's canvas for one converted brain case, in the evaluation's ``(Z, Y, X)`` array order.

    The reference pads every low-resolution brain volume to 80 x 112 x 80 voxels, i.e. 160 x 224 x 160 mm
    at its 2 mm grid. From the ``crop_info`` that conversion writes, the canvas is that field of view
    divided by the case's voxel size (80 x 112 x 80 for the 2 mm BraTS/ISLES test sets), reversed from
    the NIfTI ``(i, j, k)`` order of ``crop_info`` to SimpleITK's ``(Z, Y, X)``.

    Examples
    --------
    >>> paper_canvas({"output_affine": np.diag([2.0, 2.0, 2.0, 1.0]).tolist(), "output_shape": [70, 90, 66]})
    (80, 112, 80)
    """
    affine = np.asarray(crop_info["output_affine"], dtype=float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    canvas_ijk = [int(round(mm / step)) for mm, step in zip(canvas_mm, spacing)]
    return tuple(reversed(canvas_ijk))


def _crop_info_folder(ground_truth: Path) -> Path:
    return ground_truth.parent / "crop_info"


def _brain_mask_folder(ground_truth: Path) -> Path | None:
    """``brainmasksTs<suffix>`` beside ``labelsTs<suffix>`` (what brain test-set conversion writes), or None."""
    name = ground_truth.resolve().name
    if not name.startswith("labelsTs"):
        return None
    folder = ground_truth.parent / ("brainmasksTs" + name[len("labelsTs"):])
    return folder if folder.is_dir() else None


def _resolve_canvas(canvas, setting: str, ground_truth: Path, cases: Sequence[str]):
    """Per case: the canvas shape to pad to, or None (no padding); and a description for the JSON."""
    if canvas is None or canvas == "none":
        return {case: None for case in cases}, None
    folder = _crop_info_folder(ground_truth)
    if canvas in ("auto", "paper"):
        has_info = folder.is_dir() and all((folder / f"{case}.json").is_file() for case in cases)
        if canvas == "auto" and not (setting == "brain" and has_info):
            return {case: None for case in cases}, None
        if not has_info:
            missing = [case for case in cases if not (folder / f"{case}.json").is_file()]
            raise FileNotFoundError(f"canvas 'paper' needs the crop information that brain conversion writes: "
                                    f"{len(missing)} cases have no {folder}/<case>.json (e.g. {', '.join(missing[:3])})")
        from nnunet_anomaly._io import read_json

        shapes = {case: paper_canvas(read_json(folder / f"{case}.json")) for case in cases}
        distinct = sorted({shape for shape in shapes.values()})
        return shapes, {"kind": "paper", "shape": list(distinct[0]) if len(distinct) == 1 else [list(d) for d in distinct],
                        "field_of_view_mm": list(PAPER_CANVAS_MM), "crop_info": str(folder)}
    shape = tuple(int(n) for n in canvas)
    if any(n < 1 for n in shape):
        raise ValueError(f"canvas sizes must be positive; got {shape}")
    return {case: shape for case in cases}, {"kind": "given", "shape": list(shape)}


def _largest_lesion_slice(truth: np.ndarray) -> int:
    if truth.ndim < 3:
        return -1
    areas = truth.reshape(truth.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas)) if areas.any() else truth.shape[0] // 2


def _view(array, index):
    return array if index < 0 else array[index]


def evaluate_folder(
    predictions,
    ground_truth,
    output=None,
    *,
    images=None,
    setting: str = "brain",
    names: Sequence[str] | None = None,
    baselines: bool = False,
    foreground="auto",
    canvas="auto",
    precision: str = "exact",
    threshold=None,
    aggregate: str = "mean",
    chunk_size: int = 20,
    repeats: int = 10,
    figure_cases: Sequence[str] | None = None,
    n_figure_cases: int = 4,
    seed: int = 0,
    test_set: str | None = None,
    figures: bool = True,
    progress: bool = True,
    subset: bool = False,
) -> dict:
    """Score one or more folders of anomaly maps against a folder of ground-truth masks.

    Parameters
    ----------
    predictions : path or sequence of paths
        Folders of maps, one per fold/model (nnU-Net ``.npz`` probabilities, ``.npy``, NIfTI or PNG).
        With several folders, their per-case mean (the ensemble) is scored too.
    ground_truth : path
        Folder of masks (``case.nii.gz`` or ``case.png``, ...; non-zero = anomalous; an all-zero
        mask is a healthy case).
    output : path, optional
        Folder for ``results.json``, ``table.md``, ``per_case.csv`` and ``figures/*.png``
        (nothing is written when None).
    images : path, optional
        Folder of the test images (``case_0000.*``): image column of the overlays and the
        intensity baseline.
    setting : {'brain', 'cxr'}
        'brain' reports slice-wise and pixel-wise metrics, 'cxr' sample-wise and pixel-wise.
    names : sequence of str, optional
        One display name per prediction folder (default: the folder names).
    baselines : bool
        Also score seeded random maps and the intensity-threshold baseline (needs `images`).
    foreground : 'auto', path or None
        Masks (e.g. brain masks) for a second set of pixel-wise and slice-wise numbers restricted to
        them (``pixel_in_mask``, ``slice_in_mask``), reported beside the paper's, which score every
        voxel. 'auto' (default): ``brainmasksTs`` beside a ``labelsTs`` ground-truth folder, when it
        exists; None: no masked numbers.
    canvas : 'auto', 'paper', None or sequence of int
        Pad every case (map, ground truth, mask, image; zeros, symmetrically) to a canvas before
        scoring, as the reference pads every brain test volume to 80 x 112 x 80 and scores all of it.
        'paper': the reference's 160 x 224 x 160 mm field of view at each case's voxel size, from the
        ``crop_info/`` that brain conversion writes beside ``labelsTs``; 'auto' (default): 'paper'
        for the brain setting when that crop information exists (the converted BraTS and ISLES test
        sets), else None (score the arrays as they are); a shape pads to that shape.
    precision : {'exact', 'float16'}
        'exact' (default) ranks the pixel scores as they are (float32 for nnU-Net's maps); 'float16'
        rounds them to float16 first, as the MOOD challenge reads maps (use it for MOOD only).
    threshold : float or nnunet_anomaly.calibration.Threshold, optional
        A decision threshold (score > threshold = anomalous): each model's entry then gives the
        voxel-level false-positive rate on the healthy cases, on every negative voxel, and the
        sensitivity. See `nnunet_anomaly.calibration.calibrated_threshold`.
    aggregate : {'mean', 'percentile_75', 'top_25_mean'}
        The slice/sample aggregate shown in the table (the JSON holds all three).
    chunk_size, repeats : int
        The paper's chunked pixel AP (20 cases, 10 orderings).
    figure_cases : sequence of str, optional
        Cases to draw; default `n_figure_cases` cases drawn with `seed`.
    seed : int
        Seed of the random baseline and of the drawn figure cases.
    test_set : str, optional
        Test-set name in the table (default: ``DatasetXXX_Name`` for nnU-Net's ``.../labelsTs``,
        otherwise the ground-truth folder's name).
    figures, progress : bool
        Draw figures; show a progress bar.
    subset : bool
        Score only the ground-truth cases that every prediction folder has (a part of a test set, as
        nnU-Net's ``--chill``); the others are skipped and counted in ``results["subset"]`` and the
        table. By default every ground-truth case needs a prediction. A prediction without ground
        truth is an error either way.

    Returns
    -------
    dict
        Every number, as written to ``results.json`` (where undefined metrics, nan here, become null):
        ``models[name]["pixel"|"slice"|"sample"]`` (and ``"pixel_in_mask"``, ``"slice_in_mask"``,
        ``"threshold"``), ``random``, ``folds_summary``, ``protocol``, ``per_case`` and, with
        `subset`, ``subset`` (``n_ground_truth_cases``, ``n_scored``, ``n_skipped``, ``skipped``).
        Baselines get no threshold entry: a threshold is calibrated for a model's scores.

    Notes
    -----
    Memory: with ``precision='exact'`` each scored map (every model, the ensemble, each baseline)
    keeps its test set's scores sorted, about 2 bytes per float32 voxel (twice with a foreground);
    with ``'float16'`` a few hundred kilobytes per case.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for folder in ("pred", "gt"):
    ...     (root / folder).mkdir()
    >>> for case, lesion in (("a", True), ("b", False)):
    ...     truth = np.zeros((4, 8, 8), np.uint8)
    ...     truth[1, 2:5, 2:5] = lesion
    ...     np.save(root / "gt" / f"{case}.npy", truth)
    ...     np.save(root / "pred" / f"{case}.npy", 0.8 * truth + 0.1)
    >>> results = evaluate_folder(root / "pred", root / "gt", root / "out", figures=False, progress=False)
    >>> model = results["models"]["pred"]
    >>> model["pixel"]["ap_pooled"], model["pixel"]["auroc"], model["slice"]["ap"]["mean"]
    (1.0, 1.0, 1.0)
    >>> sorted(p.name for p in (root / "out").iterdir())
    ['per_case.csv', 'results.json', 'table.md']
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)}")
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; choose one of {', '.join(AGGREGATES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if isinstance(predictions, (str, Path)):
        predictions = [predictions]
    folders = [Path(p) for p in predictions]
    if not folders:
        raise ValueError("give at least one prediction folder")
    if baselines and images is None:
        raise ValueError("the baselines need the test images: pass `images` (--images)")
    reserved = ({ENSEMBLE} if len(folders) > 1 else set()) | ({RANDOM_BASELINE, INTENSITY_BASELINE} if baselines else set())
    model_names = _unique_names(folders, names, reserved)
    ground_truth = Path(ground_truth)
    truth_files = find_cases(ground_truth, kind="ground truth")
    prediction_files = [find_cases(folder, kind="prediction") for folder in folders]
    all_truth_files = truth_files
    if subset:
        truth_files = _predicted_subset(truth_files, prediction_files, folders)
    for name, folder, files in zip(model_names, folders, prediction_files):
        if subset:  # a case this folder has but another lacks is skipped, not an error
            files = {case: path for case, path in files.items() if case in truth_files or case not in all_truth_files}
        match_cases(files, truth_files, label=f"predictions of {name!r} ({folder})")
    cases = sorted(truth_files)
    skipped = sorted(set(all_truth_files) - set(truth_files))
    if isinstance(foreground, str) and foreground == "auto":
        foreground = _brain_mask_folder(ground_truth)
    elif isinstance(foreground, str) and foreground == "none":
        foreground = None
    foreground_files = None
    if foreground is not None:
        foreground_files = find_cases(foreground, kind="foreground mask")
        missing = sorted(set(cases) - set(foreground_files))
        if missing:
            raise ValueError(f"{len(missing)} cases have no foreground mask in {foreground}: {', '.join(missing[:10])}")
    canvases, canvas_info = _resolve_canvas(canvas, setting, ground_truth, cases)
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"image folder {str(images)!r} does not exist or is not a folder")
    threshold_info = None
    if threshold is not None:
        from nnunet_anomaly.calibration import Threshold

        threshold_info = threshold.as_dict() if isinstance(threshold, Threshold) else {"value": float(threshold),
                                                                                        "source": "given"}
        threshold = float(threshold_info["value"])

    if figure_cases is None:
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(cases), size=min(n_figure_cases, len(cases)), replace=False)
        figure_cases = [cases[i] for i in sorted(picked)]
    else:
        unknown = sorted(set(figure_cases) - set(cases))
        if unknown:
            raise ValueError(f"figure cases not in the test set: {', '.join(unknown)}")
    figure_cases = list(figure_cases)

    with_slices = setting == "brain"
    options = dict(precision=precision, with_mask=foreground_files is not None, threshold=threshold)
    accumulators = [_Accumulator(name, "model", [str(folder)], with_slices, **options)
                    for name, folder in zip(model_names, folders)]
    if len(folders) > 1:
        accumulators.append(_Accumulator(ENSEMBLE, "ensemble", [str(f) for f in folders], with_slices, **options))
    if baselines:  # no threshold: it is calibrated for the model's scores and means nothing on a baseline's
        options = {**options, "threshold": None}
        accumulators.append(_Accumulator(RANDOM_BASELINE, "baseline", [], with_slices, **options))
        accumulators.append(_Accumulator(INTENSITY_BASELINE, "baseline", [str(images)], with_slices, **options))
    primary = ENSEMBLE if len(folders) > 1 else model_names[0]

    sample_labels, all_slice_labels, overlays = [], [], []
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with nnU-Net
        def tqdm(iterable, **_):
            return iterable

    for case_index, case in enumerate(tqdm(cases, desc="evaluating", unit="case", disable=not progress)):
        truth = load_ground_truth(truth_files[case])
        if with_slices and truth.ndim < 3:
            raise ValueError(
                f"{truth_files[case]}: setting 'brain' scores axial slices of 3D volumes; got a {truth.ndim}D mask "
                "(use --setting cxr for 2D images)"
            )
        if truth.ndim > 3:
            raise ValueError(f"{truth_files[case]}: a {truth.ndim}D ground-truth mask of shape {truth.shape}; a mask is "
                             "one 2D or 3D image per case (non-zero = anomalous)")
        raw_shape = truth.shape
        fg = None
        if foreground_files is not None:
            fg = load_ground_truth(foreground_files[case])
            if fg.shape != raw_shape:
                raise ValueError(f"{foreground_files[case]}: shape {fg.shape} differs from the ground truth's {raw_shape}")
        pad = _case_padder(canvases[case], truth_files[case])
        truth = pad(truth)
        fg = None if fg is None else pad(fg)
        labels_of_slices = slice_labels(truth) if with_slices else None
        sample_labels.append(bool(truth.any()))
        if with_slices:
            all_slice_labels.append(labels_of_slices)

        raw = [load_prediction(files[case], reference_shape=raw_shape, reference=truth_files[case])
               for files in prediction_files]
        maps = {name: pad(np.clip(m, 0.0, 1.0)) for name, m in zip(model_names, raw)}
        if len(raw) > 1:
            # the reference averages the raw outputs, then clips at evaluation
            dtype = np.result_type(np.float32, *raw)
            maps[ENSEMBLE] = pad(np.clip(np.mean(raw, axis=0, dtype=dtype), 0.0, 1.0))
        del raw
        image = pad(load_image(images, case, raw_shape, reference=truth_files[case])) if images is not None else None
        if baselines:
            case_rng = np.random.default_rng([seed, case_index])
            maps[RANDOM_BASELINE] = case_rng.random(truth.shape, dtype=np.float32)
            maps[INTENSITY_BASELINE] = intensity_baseline(image)
        for accumulator in accumulators:
            accumulator.update(case, maps[accumulator.name], truth, labels_of_slices, fg)
        if case in figure_cases:
            index = _largest_lesion_slice(truth)
            overlays.append({
                "case": case,
                "slice": index,
                # a (1, H, W) array is a 2D image stored as a volume: draw it like one
                "volume": truth.ndim >= 3 and truth.shape[0] > 1,
                "image": None if image is None else _view(image, index).copy(),
                "map": _view(maps[primary], index).astype(np.result_type(np.float32, maps[primary].dtype)),  # copy
                "truth": _view(truth, index).copy(),
                "pixel_ap": next(a for a in accumulators if a.name == primary).rows[-1]["pixel_ap"],
            })

    all_slice_labels_flat = np.concatenate(all_slice_labels) if with_slices else np.zeros(0, bool)
    n_voxels = accumulators[0].pooled.n_total
    n_positive = accumulators[0].pooled.n_positive
    results = {
        "test_set": test_set or _default_test_set_name(ground_truth),
        "setting": setting,
        "scales": list(SETTINGS[setting]),
        "aggregate": aggregate,
        "protocol": {
            "slice_axis": 0,
            "slice_positive_fraction": SLICE_POSITIVE_FRACTION,
            "pixel_ap_paper": f"mean AP over chunks of {chunk_size} cases, over {repeats} orderings (seeds 0..{repeats - 1})",
            "pixel_ap_pooled": "AP over all voxels of all cases (MOOD)",
            "score_precision": ("pixel scores ranked as they are (exact); float64 aggregates" if precision == "exact"
                                else "pixel scores rounded to float16 (MOOD's reading); float64 aggregates"),
            "clipping": "maps clipped to [0, 1]; ensemble = mean of the unclipped maps, then clipped",
            "canvas": canvas_info or "none: every voxel of the arrays as they are",
            "foreground": None if foreground is None else str(foreground),
            "masked_numbers": (None if foreground is None else
                               "pixel_in_mask / slice_in_mask: the same metrics on the voxels inside the foreground "
                               "masks (slice scores aggregate the slice's in-mask pixels; slices without any are left "
                               "out; slice labels as without the mask)"),
            "threshold": threshold_info,
            "undefined": "nan where a metric is undefined (AP without positives, AUROC with one class); means are nanmeans",
        },
        "cases": cases,
        "n_cases": len(cases),
        **({"subset": {"n_ground_truth_cases": len(all_truth_files), "n_scored": len(cases),
                       "n_skipped": len(skipped), "skipped": skipped,
                       "reason": "no prediction in every prediction folder (subset=True, --subset)"}} if subset else {}),
        "n_anomalous_cases": int(np.sum(sample_labels)),
        "primary": primary,
        "models": {},
        "random": _random_row(sample_labels, all_slice_labels_flat, n_voxels, n_positive, with_slices),
    }
    for accumulator in accumulators:
        results["models"][accumulator.name] = accumulator.results(sample_labels, all_slice_labels_flat, chunk_size, repeats)
    individual = [results["models"][name] for name in model_names]
    if len(individual) > 1:
        results["folds_summary"] = _folds_summary(individual, SETTINGS[setting], aggregate)

    per_case_rows = [row for accumulator in accumulators for row in accumulator.rows]
    results["per_case"] = per_case_rows
    if output is not None:
        from ._report import write_outputs

        write_outputs(
            output, results, per_case_rows, accumulators=accumulators, overlays=overlays,
            sample_labels=np.asarray(sample_labels, bool), slice_labels=all_slice_labels_flat, figures=figures,
        )
    return results


def _predicted_subset(truth_files: dict, prediction_files: Sequence[dict], folders: Sequence[Path]) -> dict:
    """The ground-truth cases that every prediction folder has (``--subset``); none is an error naming the folders.

    Examples
    --------
    >>> _predicted_subset({"a": 1, "b": 2, "c": 3}, [{"a": 0, "c": 0}, {"c": 0, "a": 0, "b": 0}], ["p", "q"])
    {'a': 1, 'c': 3}

    Predictions without ground truth are left for `match_cases` to name.
    """
    predicted = set.intersection(*(set(files) for files in prediction_files))
    kept = {case: path for case, path in truth_files.items() if case in predicted}
    if not kept and not any(set(files) - set(truth_files) for files in prediction_files):
        raise ValueError(f"no ground-truth case has a prediction in {', '.join(map(str, folders))} (with --subset "
                         "the cases scored are those every prediction folder has)")
    return kept


def _case_padder(canvas, truth_file: Path):
    """A function padding one case's arrays to `canvas` (identity when None), with errors naming the case."""
    if canvas is None:
        return lambda array: array

    def pad(array):
        try:
            return pad_to_canvas(array, canvas)
        except ValueError as error:
            raise ValueError(f"{truth_file}: {error} (the reference asserts that every brain fits its canvas)") from None

    return pad


def _default_test_set_name(ground_truth: Path) -> str:
    """The dataset's name for nnU-Net's ``DatasetXXX_Name/labelsTs`` layout, else the folder's name."""
    folder = ground_truth.resolve()
    if folder.name == "labelsTs":
        return folder.parent.name
    if folder.name.startswith("labelsTs"):
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def intensity_baseline(image: np.ndarray) -> np.ndarray:
    """Threshold-the-image baseline: the image's intensity, min-max scaled to [0, 1] per case (float32).

    Examples
    --------
    >>> intensity_baseline(np.array([2.0, 4.0, 6.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    low, high = float(image.min()), float(image.max())
    if high == low:
        return np.zeros(image.shape, np.float32)
    return ((image - low) / (high - low)).astype(np.float32)


def _folds_summary(individual: list[dict], scales, aggregate) -> dict:
    """Mean and s.d. over the individual models' AP and AUROC (Table 1's "all" rows)."""
    summary = {}
    for scale in scales:
        aps = [_table_ap(model, scale, aggregate) for model in individual]
        aurocs = [_table_auroc(model, scale, aggregate) for model in individual]
        summary[scale] = {"ap_mean": float(np.mean(aps)), "ap_std": float(np.std(aps)),
                          "auroc_mean": float(np.mean(aurocs)), "auroc_std": float(np.std(aurocs))}
    return summary


def _table_ap(model: dict, scale: str, aggregate: str) -> float:
    if scale == "pixel":
        return model["pixel"]["ap_chunked"]["mean"]
    return model[scale]["ap"][aggregate]


def _table_auroc(model: dict, scale: str, aggregate: str) -> float:
    if scale == "pixel":
        return model["pixel"]["auroc"]
    return model[scale]["auroc"][aggregate]


def evaluate_arrays(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, setting: str = "brain",
                    chunk_size: int = 20, repeats: int = 10, precision: str = "exact") -> dict:
    """The paper's metrics of in-memory maps and masks (one pair per case, already in case order).

    A light sibling of `evaluate_folder` for notebooks and tests: returns the ``models['maps']``
    entry of the JSON (pixel, sample and, for 'brain', slice metrics).

    Examples
    --------
    >>> maps = [np.array([[0.9, 0.1], [0.2, 0.1]]), np.array([[0.3, 0.2], [0.1, 0.0]])]
    >>> masks = [np.array([[1, 0], [0, 0]]), np.zeros((2, 2), int)]
    >>> result = evaluate_arrays(maps, masks, setting="cxr")
    >>> result["pixel"]["ap_pooled"], result["sample"]["ap"]["mean"]
    (1.0, 1.0)
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)}")
    if len(maps) != len(masks) or not maps:
        raise ValueError(f"need one mask per map and at least one case; got {len(maps)} maps and {len(masks)} masks")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    with_slices = setting == "brain"
    accumulator = _Accumulator("maps", "model", [], with_slices, precision=precision)
    sample_labels, all_slice_labels = [], []
    for index, (scores, truth) in enumerate(zip(maps, masks)):
        scores, truth = np.asarray(scores), np.asarray(truth) != 0
        if scores.shape != truth.shape:
            raise ValueError(f"case {index}: map shape {scores.shape} differs from mask shape {truth.shape}")
        labels_of_slices = slice_labels(truth) if with_slices else None
        sample_labels.append(bool(truth.any()))
        if with_slices:
            all_slice_labels.append(labels_of_slices)
        from ._exact import as_exact_floats

        accumulator.update(str(index), np.clip(as_exact_floats(scores), 0, 1), truth, labels_of_slices, None)
    flat = np.concatenate(all_slice_labels) if with_slices else np.zeros(0, bool)
    return accumulator.results(sample_labels, flat, chunk_size, repeats)
