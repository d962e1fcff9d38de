"""Reports of an evaluation: the paper-style Markdown table, the per-case CSV and the JSON."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunet_anomaly._io import write_json, write_text

__all__ = ["format_table", "write_outputs"]

_SCALE_TITLES = {"slice": "Slice-wise", "sample": "Sample-wise", "pixel": "Pixel-wise"}
_AGGREGATE_TITLES = {"mean": "mean", "percentile_75": "75th percentile", "top_25_mean": "top-25% mean"}


def _percent(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _mean_sd(mean, sd) -> str:
    mean, sd = _percent(mean), _percent(sd)
    return "n/a" if mean == "n/a" else f"{mean}±{sd}"


def _pair(ap, area) -> str:
    return f"{_percent(ap)}/{_percent(area)}"


def _cell(model: dict, scale: str, aggregate: str) -> str:
    if scale.startswith("pixel"):
        if scale not in model:
            return "n/a"
        return _pair(model[scale]["ap_chunked"]["mean"], model[scale]["auroc"])
    if scale not in model:
        return "n/a"
    return _pair(model[scale]["ap"][aggregate], model[scale]["auroc"][aggregate])


def _threshold_cell(model: dict) -> str:
    threshold = model.get("threshold")
    if threshold is None:
        return "—" if model.get("kind") == "baseline" else "n/a"
    fpr = threshold["healthy_voxel_fpr"]
    text = "n/a" if fpr is None or (isinstance(fpr, float) and math.isnan(fpr)) else f"{100 * fpr:.2f}"
    return f"{text} / {_percent(threshold['sensitivity'])}"


def format_table(results: dict | Sequence[dict]) -> str:
    """A Markdown table laid out like the paper's Tables 1 and 2: AP/AUROC (%) per scale and test set.

    Parameters
    ----------
    results : dict or sequence of dict
        What `evaluate_folder` returned, one per test set (same setting). Models are matched by name
        across test sets; a missing one reads "n/a".

    Returns
    -------
    str
        Rows: each model, "all (mean ± s.d.)" over the individual models, the ensemble, the
        analytic random classifier (AP = prevalence, AUROC = 50), then the baselines; a last column
        group gives the pooled pixel AP (MOOD's convention) beside the paper's chunked AP.

    Examples
    --------
    >>> from nnunet_anomaly.evaluation import evaluate_arrays
    >>> model = evaluate_arrays([np.array([[0.9, 0.1]]), np.array([[0.2, 0.4]])],
    ...                         [np.array([[1, 0]]), np.array([[0, 1]])], setting="cxr")
    >>> result = {"test_set": "toy", "setting": "cxr", "scales": ["sample", "pixel"], "aggregate": "mean",
    ...           "models": {"fold_0": model}, "random": {"sample": {"ap": 1.0, "auroc": 0.5},
    ...           "pixel": {"ap": 0.5, "auroc": 0.5}}}
    >>> print(format_table(result).splitlines()[2])
    | Model | Sample-wise<br>toy | Pixel-wise<br>toy | Pixel AP, pooled (MOOD)<br>toy |
    >>> print(format_table(result).splitlines()[4])
    | fold_0 | 100.0/n/a | 100.0/100.0 | 100.0 |
    """
    if isinstance(results, dict):
        results = [results]
    results = list(results)
    if not results:
        raise ValueError("format_table needs at least one result")
    settings = {r["setting"] for r in results}
    if len(settings) > 1:
        raise ValueError(f"cannot put settings {sorted(settings)} in one table; make one table per setting")
    scales = results[0]["scales"]
    aggregate = results[0]["aggregate"]
    sets = [r["test_set"] for r in results]

    names: list[str] = []
    for r in results:
        for name in r["models"]:
            if name not in names:
                names.append(name)
    kinds = {}
    for r in results:
        for name, model in r["models"].items():
            kinds.setdefault(name, model["kind"])
    individual = [n for n in names if kinds[n] == "model"]
    ensembles = [n for n in names if kinds[n] == "ensemble"]
    baselines = [n for n in names if kinds[n] == "baseline"]

    masked = [f"{scale}_in_mask" for scale in scales
              if any(f"{scale}_in_mask" in model for r in results for model in r["models"].values())]
    with_threshold = any("threshold" in model for r in results for model in r["models"].values())
    header = ["Model"] + [f"{_SCALE_TITLES[s]}<br>{t}" for s in scales for t in sets]
    header += [f"Pixel AP, pooled (MOOD)<br>{t}" for t in sets]
    header += [f"{_SCALE_TITLES[s[: -len('_in_mask')]]}, in mask<br>{t}" for s in masked for t in sets]
    header += [f"Healthy-voxel FPR / sensitivity (%) at threshold<br>{t}" for t in sets] if with_threshold else []
    notes = [f"AP/AUROC in %. {', '.join(_SCALE_TITLES[s] for s in scales if s != 'pixel')} scores: "
             f"{_AGGREGATE_TITLES[aggregate]} of the pixel scores. Pixel-wise AP: the paper's protocol (mean AP over "
             "chunks of 20 cases, 10 seeded orderings); pooled: AP over all voxels (MOOD)."]
    canvases = {str(r.get("protocol", {}).get("canvas")) for r in results if isinstance(r.get("protocol", {}).get("canvas"), dict)}
    if canvases:
        notes.append("Every case is padded to the paper's canvas and all of it is scored, as in the reference.")
    if masked:
        notes.append("\"In mask\": the same metrics on the voxels inside the foreground (brain) masks only.")
    if with_threshold:
        values = sorted({f"{m['threshold']['value']:.4g}" for r in results for m in r["models"].values() if "threshold" in m})
        notes.append(f"Threshold {', '.join(values)}: fraction of the healthy cases' voxels above it, and of the "
                     "anomalous voxels above it.")
        if any(kinds[n] == "baseline" for n in names):
            notes.append("Baselines have no threshold (—): it is calibrated for the model's scores and would mean "
                         "nothing on theirs.")
    for r in results:
        subset = r.get("subset")
        if subset:
            notes.append(f"{r['test_set']}: {subset['n_scored']} of {subset['n_ground_truth_cases']} ground-truth "
                         f"cases scored (--subset: {subset['n_skipped']} without a prediction skipped).")
    lines = [" ".join(notes), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(label, cells):
        lines.append("| " + " | ".join([label, *cells]) + " |")

    def model_cells(name):
        cells = []
        for scale in scales:
            for r in results:
                cells.append(_cell(r["models"][name], scale, aggregate) if name in r["models"] else "n/a")
        for r in results:
            cells.append(_percent(r["models"][name]["pixel"]["ap_pooled"]) if name in r["models"] else "n/a")
        for scale in masked:
            for r in results:
                cells.append(_cell(r["models"][name], scale, aggregate) if name in r["models"] else "n/a")
        if with_threshold:
            cells += [_threshold_cell(r["models"][name]) if name in r["models"] else "n/a" for r in results]
        return cells

    for name in individual:
        row(name, model_cells(name))
    if len(individual) > 1:
        cells = []
        for scale in scales:
            for r in results:
                summary = r.get("folds_summary", {}).get(scale)
                cells.append("n/a" if summary is None else
                             f"{_mean_sd(summary['ap_mean'], summary['ap_std'])}/"
                             f"{_mean_sd(summary['auroc_mean'], summary['auroc_std'])}")
        for r in results:
            pooled = [r["models"][n]["pixel"]["ap_pooled"] for n in individual if n in r["models"]]
            cells.append(_mean_sd(np.mean(pooled), np.std(pooled)) if pooled else "n/a")
        cells += ["" for _ in masked for _ in results] + (["" for _ in results] if with_threshold else [])
        row("all (mean±s.d.)", cells)
    for name in ensembles:
        row(f"**{name}**", model_cells(name))
    cells = [_pair(r["random"][scale]["ap"], r["random"][scale]["auroc"]) for scale in scales for r in results]
    cells += [_percent(r["random"]["pixel"]["ap"]) for r in results]
    cells += ["" for _ in masked for _ in results] + (["" for _ in results] if with_threshold else [])
    row("Random (prevalence)", cells)
    for name in baselines:
        row(f"baseline: {name}", model_cells(name))
    return "\n".join(lines) + "\n"


_CSV_COLUMNS = [
    "case", "model", "anomalous", "n_voxels", "n_positive", "pixel_ap", "pixel_auroc",
    "n_voxels_in_mask", "pixel_ap_in_mask", "pixel_auroc_in_mask",
    "score_mean", "score_percentile_75", "score_top_25_mean",
    "n_slices", "n_positive_slices", "slice_ap", "slice_auroc", "voxels_above_threshold",
]


def _csv_value(value):
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


def format_per_case_csv(rows: Sequence[dict]) -> str:
    """The per-case rows as CSV text (missing columns left empty)."""
    columns = [c for c in _CSV_COLUMNS if any(c in r for r in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_value(v) for k, v in r.items()})
    return buffer.getvalue()


def _json_safe(value):
    """nan/inf -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if not math.isfinite(value) else value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_outputs(output, results, per_case_rows, *, accumulators, overlays, sample_labels, slice_labels, figures=True):
    """Write results.json, table.md, per_case.csv and figures/*.png into `output` (atomically, file by file)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if figures:
        from ._figures import draw_figures

        results["figures"] = draw_figures(
            output / "figures", results, accumulators=accumulators, overlays=overlays,
            sample_labels=sample_labels, slice_labels=slice_labels,
        )
    write_json(output / "results.json", _json_safe(results))
    write_text(output / "table.md", format_table(results))
    write_text(output / "per_case.csv", format_per_case_csv(per_case_rows))
