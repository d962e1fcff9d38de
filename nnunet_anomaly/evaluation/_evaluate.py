"""Score folders of anomaly maps against ground-truth masks, the way the paper reports them.

One pass over the cases (sorted by name, as the reference sorts by sample id): for each case the
maps of every model are read once, averaged into the ensemble, and each map (plus the baselines)
updates its own streaming accumulator, so a whole test set never sits in memory.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ._histogram import ScoreHistogram, UndefinedMetricWarning, auroc, average_precision
from ._loading import find_cases, load_ground_truth, load_image, load_prediction, match_cases
from ._scales import AGGREGATES, SLICE_POSITIVE_FRACTION, all_aggregates, chunked_average_precision, slice_labels

__all__ = ["SETTINGS", "evaluate_folder", "evaluate_arrays"]

#: the scales each setting reports in its table (the JSON holds every scale that applies)
SETTINGS = {"brain": ("slice", "pixel"), "cxr": ("sample", "pixel")}
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


def _histogram_metrics(histogram: ScoreHistogram) -> tuple[float, float]:
    n_positive, n_negative = histogram.n_positive, histogram.n_negative
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ap = histogram.average_precision() if n_positive else float("nan")
        area = histogram.auroc() if n_positive and n_negative else float("nan")
    return ap, area


class _Accumulator:
    """Everything one model (or ensemble, or baseline) needs for its metrics, gathered case by case."""

    def __init__(self, name: str, kind: str, folders: Sequence[str], with_slices: bool):
        self.name, self.kind, self.folders, self.with_slices = name, kind, list(folders), with_slices
        self.pooled = ScoreHistogram()
        self.case_histograms = []
        self.sample_scores = {method: [] for method in AGGREGATES}
        self.slice_scores = {method: [] for method in AGGREGATES}
        self.rows = []

    def update(self, case: str, scores: np.ndarray, truth: np.ndarray, labels_of_slices, foreground) -> None:
        histogram = ScoreHistogram.from_scores(scores, truth, mask=foreground)
        self.pooled += histogram
        self.case_histograms.append(histogram.sparse())
        pixel_ap, pixel_auroc = _histogram_metrics(histogram)
        row = {
            "case": case,
            "model": self.name,
            "n_voxels": histogram.n_total,
            "n_positive": histogram.n_positive,
            "anomalous": bool(truth.any()),
            "pixel_ap": pixel_ap,
            "pixel_auroc": pixel_auroc,
        }
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
        self.rows.append(row)

    def results(self, sample_labels, all_slice_labels, chunk_size: int, repeats: int) -> dict:
        pooled_ap, pixel_auroc = _histogram_metrics(self.pooled)
        chunked = chunked_average_precision(self.case_histograms, chunk_size=chunk_size, repeats=repeats)
        if self.pooled.n_positive == 0:  # no anomalous voxel anywhere: undefined, not the chunks' 0.0
            chunked = {"mean": float("nan"), "std": float("nan"), "repeats": [float("nan")] * repeats}
        case_aps = np.array([row["pixel_ap"] for row in self.rows], dtype=float)
        case_aurocs = np.array([row["pixel_auroc"] for row in self.rows], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-nan: nan, said in the docs
            pixel = {
                "ap_chunked": {"mean": chunked["mean"], "std": chunked["std"], "repeats": chunked["repeats"],
                               "chunk_size": chunk_size, "n_repeats": repeats},
                "ap_pooled": pooled_ap,
                "auroc": pixel_auroc,
                "n_voxels": self.pooled.n_total,
                "n_positive": self.pooled.n_positive,
                "per_case_ap_mean": float(np.nanmean(case_aps)) if case_aps.size else float("nan"),
                "per_case_auroc_mean": float(np.nanmean(case_aurocs)) if case_aurocs.size else float("nan"),
            }
        result = {"kind": self.kind, "folders": self.folders, "pixel": pixel}
        result["sample"] = _scale_metrics(self.sample_scores, sample_labels)
        if self.with_slices:
            scores = {method: np.concatenate(values) for method, values in self.slice_scores.items()}
            result["slice"] = _scale_metrics(scores, all_slice_labels)
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


def _unique_names(folders: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(folders):
            raise ValueError(f"`names` gives {len(names)} names for {len(folders)} prediction folders; give one per folder")
    else:
        names = [folder.name or str(folder) for folder in folders]
        # fold folders often share their last part (.../fold_0/validation): use the first part that differs
        if len(set(names)) < len(names):
            names = [f"{folder.parent.name}/{folder.name}" for folder in folders]
        if len(set(names)) < len(names):
            names = [f"model_{i}" for i in range(len(folders))]
    reserved = {ENSEMBLE, RANDOM_BASELINE, INTENSITY_BASELINE}
    if len(set(names)) < len(names) or reserved & set(names):
        raise ValueError(f"model names must be unique and not one of {sorted(reserved)}; got {names}")
    return names


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
    foreground=None,
    aggregate: str = "mean",
    chunk_size: int = 20,
    repeats: int = 10,
    figure_cases: Sequence[str] | None = None,
    n_figure_cases: int = 4,
    seed: int = 0,
    test_set: str | None = None,
    figures: bool = True,
    progress: bool = True,
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
    foreground : path, optional
        Folder of masks restricting the pixel-wise metrics (off by default = the paper's protocol).
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

    Returns
    -------
    dict
        Every number, as written to ``results.json`` (where undefined metrics, nan here, become null):
        ``models[name]["pixel"|"slice"|"sample"]``, ``random``, ``folds_summary`` and ``per_case``.

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
    if isinstance(predictions, (str, Path)):
        predictions = [predictions]
    folders = [Path(p) for p in predictions]
    if not folders:
        raise ValueError("give at least one prediction folder")
    if baselines and images is None:
        raise ValueError("the baselines need the test images: pass `images` (--images)")
    model_names = _unique_names(folders, names)
    truth_files = find_cases(ground_truth, kind="ground truth")
    prediction_files = []
    for name, folder in zip(model_names, folders):
        files = find_cases(folder, kind="prediction")
        match_cases(files, truth_files, label=f"predictions of {name!r} ({folder})")
        prediction_files.append(files)
    cases = sorted(truth_files)
    foreground_files = None
    if foreground is not None:
        foreground_files = find_cases(foreground, kind="foreground mask")
        missing = sorted(set(cases) - set(foreground_files))
        if missing:
            raise ValueError(f"{len(missing)} cases have no foreground mask in {foreground}: {', '.join(missing[:10])}")
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"image folder {str(images)!r} does not exist or is not a folder")

    if figure_cases is None:
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(cases), size=min(n_figure_cases, len(cases)), replace=False)
        figure_cases = [cases[i] for i in sorted(picked)]
    else:
        unknown = sorted(set(figure_cases) - set(cases))
        if unknown:
            raise ValueError(f"figure cases not in the test set: {', '.join(unknown)}")
    figure_cases = list(figure_cases)

    accumulators = []
    with_slices = setting == "brain"
    for name, folder in zip(model_names, folders):
        accumulators.append(_Accumulator(name, "model", [str(folder)], with_slices))
    if len(folders) > 1:
        accumulators.append(_Accumulator(ENSEMBLE, "ensemble", [str(f) for f in folders], with_slices))
    if baselines:
        accumulators.append(_Accumulator(RANDOM_BASELINE, "baseline", [], with_slices))
        accumulators.append(_Accumulator(INTENSITY_BASELINE, "baseline", [str(images)], with_slices))
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
        fg = None
        if foreground_files is not None:
            fg = load_ground_truth(foreground_files[case])
            if fg.shape != truth.shape:
                raise ValueError(f"{foreground_files[case]}: shape {fg.shape} differs from the ground truth's {truth.shape}")
        labels_of_slices = slice_labels(truth) if with_slices else None
        sample_labels.append(bool(truth.any()))
        if with_slices:
            all_slice_labels.append(labels_of_slices)

        raw = [load_prediction(files[case], reference_shape=truth.shape) for files in prediction_files]
        maps = {name: np.clip(m, 0.0, 1.0) for name, m in zip(model_names, raw)}
        if len(raw) > 1:
            # the reference averages the raw outputs, then clips at evaluation
            maps[ENSEMBLE] = np.clip(np.mean(raw, axis=0, dtype=np.float32), 0.0, 1.0)
        del raw
        image = load_image(images, case, truth.shape) if images is not None else None
        if baselines:
            case_rng = np.random.default_rng([seed, case_index])
            maps[RANDOM_BASELINE] = case_rng.random(truth.shape, dtype=np.float32)
            maps[INTENSITY_BASELINE] = _intensity_scores(image)
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
                "map": _view(maps[primary], index).copy(),
                "truth": _view(truth, index).copy(),
                "pixel_ap": next(a for a in accumulators if a.name == primary).rows[-1]["pixel_ap"],
            })

    all_slice_labels_flat = np.concatenate(all_slice_labels) if with_slices else np.zeros(0, bool)
    n_voxels = accumulators[0].pooled.n_total
    n_positive = accumulators[0].pooled.n_positive
    results = {
        "test_set": test_set or _default_test_set_name(Path(ground_truth)),
        "setting": setting,
        "scales": list(SETTINGS[setting]),
        "aggregate": aggregate,
        "protocol": {
            "slice_axis": 0,
            "slice_positive_fraction": SLICE_POSITIVE_FRACTION,
            "pixel_ap_paper": f"mean AP over chunks of {chunk_size} cases, over {repeats} orderings (seeds 0..{repeats - 1})",
            "pixel_ap_pooled": "AP over all voxels of all cases (MOOD)",
            "score_precision": "float16 for pixel metrics (exact on the rounded scores); float64 aggregates",
            "clipping": "maps clipped to [0, 1]; ensemble = mean of the unclipped maps, then clipped",
            "foreground": None if foreground is None else str(foreground),
            "undefined": "nan where a metric is undefined (AP without positives, AUROC with one class); means are nanmeans",
        },
        "cases": cases,
        "n_cases": len(cases),
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


def _default_test_set_name(ground_truth: Path) -> str:
    """The dataset's name for nnU-Net's ``DatasetXXX_Name/labelsTs`` layout, else the folder's name."""
    folder = ground_truth.resolve()
    if folder.name == "labelsTs":
        return folder.parent.name
    if folder.name.startswith("labelsTs"):
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def _intensity_scores(image: np.ndarray) -> np.ndarray:
    """Threshold-the-image baseline: the image's intensity, min-max scaled to [0, 1] per case."""
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
                    chunk_size: int = 20, repeats: int = 10) -> dict:
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
    with_slices = setting == "brain"
    accumulator = _Accumulator("maps", "model", [], with_slices)
    sample_labels, all_slice_labels = [], []
    for index, (scores, truth) in enumerate(zip(maps, masks)):
        scores, truth = np.asarray(scores), np.asarray(truth) != 0
        if scores.shape != truth.shape:
            raise ValueError(f"case {index}: map shape {scores.shape} differs from mask shape {truth.shape}")
        labels_of_slices = slice_labels(truth) if with_slices else None
        sample_labels.append(bool(truth.any()))
        if with_slices:
            all_slice_labels.append(labels_of_slices)
        accumulator.update(str(index), np.clip(scores.astype(np.float32), 0, 1), truth, labels_of_slices, None)
    flat = np.concatenate(all_slice_labels) if with_slices else np.zeros(0, bool)
    return accumulator.results(sample_labels, flat, chunk_size, repeats)
