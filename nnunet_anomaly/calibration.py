"""Decision thresholds calibrated on healthy validation data, read from a trained model's folder.

Each fold's final validation (``AnomalyTaskTrainer.perform_actual_validation``) scores its
validation images as they are, anomaly-free, on their foreground, and writes into
``fold_X/validation/summary.json`` the scores that a given fraction of those healthy voxels exceed::

    "healthy": {"n_voxels": ..., "score_exceeded_by_1%": 0.41, "score_exceeded_by_0.1%": 0.77, "max": ...}

The score exceeded by 1 % of healthy voxels is the threshold at which 1 % of healthy tissue would be
marked anomalous: a voxel-level false-positive rate chosen by the user, stored with the model.

For an ensemble of fold models there is no held-out healthy set: fold X's validation images were
training images of the other folds. The ensemble's threshold is therefore the **mean of the folds'
thresholds**, an approximation (the ensemble's false-positive rate on new healthy data can differ;
``nnunet_anomaly evaluate --threshold-from`` measures it on a test set's healthy cases).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["Threshold", "parse_rate", "rate_key", "fold_thresholds", "calibrated_threshold", "resolve_threshold",
           "add_threshold_arguments", "threshold_from_args"]

DEFAULT_RATE = 0.01
_RATE_KEY = re.compile(r"^score_exceeded_by_(?P<percent>[0-9.eE+-]+)%$")


@dataclass(frozen=True)
class Threshold:
    """A decision threshold on anomaly scores and where it comes from (a voxel is marked if score > value)."""

    value: float
    source: str
    rate: float | None = None
    per_fold: dict = field(default_factory=dict)
    rule: str = "given"

    def as_dict(self) -> dict:
        return {"value": self.value, "source": self.source, "healthy_voxel_rate": self.rate,
                "per_fold": dict(self.per_fold), "rule": self.rule}


def parse_rate(rate) -> float:
    """A false-positive rate from ``"1%"``, ``"0.1%"`` or a fraction such as ``0.01``.

    Examples
    --------
    >>> parse_rate("1%"), parse_rate("0.1%"), parse_rate(0.01)
    (0.01, 0.001, 0.01)
    """
    text = str(rate).strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"false-positive rate {rate!r} is not a number or a percentage such as '1%'") from None
    if not 0 < value < 1:
        raise ValueError(f"false-positive rate must lie in (0, 1) (or (0 %, 100 %)); got {rate!r}")
    return round(value, 12)


def rate_key(rate) -> str:
    """The key under which the trainer stores the score exceeded by that fraction of healthy voxels.

    Examples
    --------
    >>> rate_key(0.01), rate_key("0.1%")
    ('score_exceeded_by_1%', 'score_exceeded_by_0.1%')
    """
    return f"score_exceeded_by_{parse_rate(rate) * 100:g}%"


def _available_rates(healthy: dict) -> list[str]:
    return [f"{m.group('percent')}%" for key in healthy for m in [_RATE_KEY.match(key)] if m]


def _read_summary(path: Path) -> dict:
    from nnunet_anomaly._io import read_json

    return read_json(path)


def _fold_folders(model_dir: Path, folds: Sequence | None) -> list[Path]:
    if (model_dir / "validation" / "summary.json").is_file() and folds is None:
        return [model_dir]  # a single fold folder
    if folds is None:
        found = sorted((p for p in model_dir.glob("fold_*") if (p / "validation" / "summary.json").is_file()),
                       key=lambda p: (len(p.name), p.name))
        if not found:
            raise FileNotFoundError(f"{model_dir}: no fold_X/validation/summary.json; pass the trained model's folder "
                                    "($nnUNet_results/DatasetXXX_Name/Trainer__Plans__configuration) after training")
        return found
    folders = [model_dir / f"fold_{fold}" for fold in folds]
    missing = [str(p / "validation" / "summary.json") for p in folders if not (p / "validation" / "summary.json").is_file()]
    if missing:
        raise FileNotFoundError(f"no final validation summary for the requested folds: {', '.join(missing)}")
    return folders


def fold_thresholds(model_dir, rate=DEFAULT_RATE, folds: Sequence | None = None) -> dict[str, float]:
    """Each fold's calibrated threshold: the score that `rate` of its healthy validation voxels exceed.

    Parameters
    ----------
    model_dir : path
        ``$nnUNet_results/DatasetXXX_Name/Trainer__Plans__configuration`` (or one ``fold_X`` folder).
    rate : float or str
        Voxel-level false-positive rate on healthy tissue, e.g. ``"1%"`` or ``0.001``.
    folds : sequence, optional
        Folds to read (default: every ``fold_X`` with a final validation summary).

    Raises
    ------
    FileNotFoundError, ValueError
        Missing summaries, summaries without healthy calibration, or a rate the trainer did not store
        (the message lists the stored rates).
    """
    model_dir = Path(model_dir)
    key = rate_key(rate)
    out = {}
    for folder in _fold_folders(model_dir, folds):
        path = folder / "validation" / "summary.json"
        healthy = _read_summary(path).get("healthy")
        if not isinstance(healthy, dict) or not _available_rates(healthy):
            raise ValueError(f"{path} holds no healthy-voxel calibration ('healthy' entry); it comes from a final "
                             "validation with healthy images (AnomalyTaskTrainer.healthy_validation); give --threshold")
        if key not in healthy:
            raise ValueError(f"{path} stores thresholds for {', '.join(_available_rates(healthy))} of healthy voxels, "
                             f"not {parse_rate(rate) * 100:g}%")
        value = healthy[key]
        if value is None or not np.isfinite(float(value)):
            raise ValueError(f"{path}: {key} is undefined (no healthy voxel was scored)")
        out[folder.name] = float(value)
    return out


def calibrated_threshold(model_dir, rate=DEFAULT_RATE, folds: Sequence | None = None) -> Threshold:
    """The threshold of a model (one fold) or an ensemble of folds (the mean of the folds' thresholds).

    Examples
    --------
    >>> import tempfile, pathlib, json
    >>> model = pathlib.Path(tempfile.mkdtemp())
    >>> for fold, value in ((0, 0.4), (1, 0.6)):
    ...     (model / f"fold_{fold}" / "validation").mkdir(parents=True)
    ...     _ = (model / f"fold_{fold}" / "validation" / "summary.json").write_text(
    ...         json.dumps({"healthy": {"n_voxels": 10, "score_exceeded_by_1%": value, "max": 1.0}}))
    >>> t = calibrated_threshold(model, "1%")
    >>> round(t.value, 6), t.rate, t.rule
    (0.5, 0.01, "mean of the folds' thresholds")
    """
    per_fold = fold_thresholds(model_dir, rate, folds)
    rule = "the fold's threshold" if len(per_fold) == 1 else "mean of the folds' thresholds"
    return Threshold(float(np.mean(list(per_fold.values()))), str(model_dir), parse_rate(rate), per_fold, rule)


def resolve_threshold(value=None, model=None, rate=DEFAULT_RATE, folds=None) -> Threshold | None:
    """A `Threshold` from a given value or from a model folder; None when neither is given."""
    if value is not None and model is not None:
        raise ValueError("give either a threshold value or a model to calibrate it from, not both")
    if value is not None:
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"threshold must be finite; got {value}")
        return Threshold(value, "given")
    if model is not None:
        return calibrated_threshold(model, rate, folds)
    return None


def add_threshold_arguments(parser, *, purpose: str) -> None:
    """``--threshold`` / ``--threshold-from MODEL --fpr RATE [--folds ...]`` for a command-line parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, metavar="T", help=f"decision threshold on the scores ({purpose}); "
                       "a voxel is anomalous if its score > T")
    group.add_argument("--threshold-from", metavar="MODEL_DIR", help="calibrate the threshold on the model's healthy "
                       "validation data: $nnUNet_results/DatasetXXX/Trainer__Plans__config (or one fold_X); an "
                       "ensemble uses the mean of its folds' thresholds")
    parser.add_argument("--fpr", default="1%", help="voxel-level false-positive rate on healthy tissue for "
                        "--threshold-from (stored by the trainer: 1%% and 0.1%%; default 1%%)")
    parser.add_argument("--folds", nargs="+", metavar="FOLD", help="folds to read with --threshold-from (default: all)")


def threshold_from_args(args) -> Threshold | None:
    """The `Threshold` that `add_threshold_arguments`' options describe (None when none is given)."""
    return resolve_threshold(getattr(args, "threshold", None), getattr(args, "threshold_from", None),
                             getattr(args, "fpr", DEFAULT_RATE), getattr(args, "folds", None))
