"""Ensembles of task-fold models: their probabilities averaged (optionally weighted by synthetic validation).

nnU-Net's ``nnUNetv2_predict -f 0 1 2 3 4`` averages the folds' *logits* and applies the sigmoid once.
For task-fold models that is the wrong average: a fold that has never seen an anomaly's kind is
confidently negative there, and in logit space its large negative value vetoes the fold that found
it. Averaging *probabilities* (the reference averages its models' outputs) keeps a detection that
one fold makes.

The folds are not equally good, and each fold's validation AP (on its held-out tasks, with the
healthy voxels as negatives) says how well it generalises; :func:`validation_weights` can weigh the
folds by it. Equal weights are the default because that is what the synthetic evidence supports:
scored on each task as an *unseen* one (the ensemble of the folds that did not train on it, weights
from their other validation tasks), equal weights gave a mean AP of 0.277, weights proportional to
the validation AP 0.264, to its square 0.245, the logit mean 0.257 (demo, five folds of 1,200
iterations; 0.437, 0.427, 0.415 and 0.408 for folds trained about 7x longer on a GPU). The numbers,
and the demo's lesions, which choose nothing, are in ``benchmarks/README.md`` ("Model quality").
:class:`ProbabilityEnsemblePredictor` is nnU-Net's predictor with the one change of averaging
probabilities, so it reads, preprocesses, resamples and writes exactly like ``nnUNetv2_predict``.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

from nnunet_anomaly.nnunet.crossval import fold_validation_ap

__all__ = ["FOLD_WEIGHTINGS", "validation_weights", "ProbabilityEnsemblePredictor"]

#: how fold models are weighted: "uniform" (the default) or "validation" (their synthetic validation AP)
FOLD_WEIGHTINGS = ("uniform", "validation")
#: the validation AP of a fold is raised to this power: folds that generalise better count clearly more
VALIDATION_WEIGHT_POWER = 2


def validation_weights(model_folder, folds: Sequence, *, weighting: str = "uniform") -> dict:
    """Weights of the fold models, summing to 1, and where they came from.

    With ``weighting="validation"`` each fold weighs its pooled pixel AP on its own synthetic
    validation tasks (``fold_X/validation/summary.json``, healthy voxels included as negatives when
    they were scored) raised to :data:`VALIDATION_WEIGHT_POWER`. A fold without a summary, or an
    ensemble whose folds all score 0, falls back to equal weights, and the result says so.

    Returns
    -------
    dict
        ``{"weighting", "folds", "weights", "validation_ap", "note"}`` (JSON-ready).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for fold, ap in ((0, 0.2), (1, 0.4)):
    ...     (root / f"fold_{fold}" / "validation").mkdir(parents=True)
    ...     _ = (root / f"fold_{fold}" / "validation" / "summary.json").write_text(
    ...         json.dumps({"pooled_with_healthy": {"ap": ap}}))
    >>> validation_weights(root, [0, 1])["weights"]
    [0.5, 0.5]
    >>> validation_weights(root, [0, 1], weighting="validation")["weights"]
    [0.2, 0.8]
    """
    if weighting not in FOLD_WEIGHTINGS:
        raise ValueError(f"fold weighting must be one of {', '.join(FOLD_WEIGHTINGS)}; got {weighting!r}")
    folds = list(folds)
    if not folds:
        raise ValueError("no folds to ensemble")
    scores = []
    for fold in folds:
        path = os.path.join(os.fspath(model_folder), f"fold_{fold}", "validation", "summary.json")
        try:
            with open(path) as handle:
                scores.append(fold_validation_ap(json.load(handle)))
        except (OSError, ValueError):
            scores.append(None)
    note = ""
    if weighting == "uniform":
        raw = np.ones(len(folds))
    elif any(s is None for s in scores):
        missing = [f for f, s in zip(folds, scores) if s is None]
        note = f"no synthetic validation summary for fold(s) {missing}: equal weights"
        raw = np.ones(len(folds))
    else:
        raw = np.asarray(scores, dtype=np.float64) ** VALIDATION_WEIGHT_POWER
        if raw.sum() <= 0:
            note = "every fold has validation AP 0: equal weights"
            raw = np.ones(len(folds))
    weights = raw / raw.sum()
    return {"weighting": weighting, "folds": [str(f) for f in folds], "weights": [round(float(w), 6) for w in weights],
            "validation_ap": scores, "note": note}


class ProbabilityEnsemblePredictor(nnUNetPredictor):
    """``nnUNetPredictor`` that averages the folds' sigmoid probabilities, with weights, not their logits.

    Everything else (preprocessing, sliding window, test-time mirroring, resampling, export) is
    nnU-Net's. The weighted mean probability ``p`` is handed back as the logit ``log(p / (1 - p))``,
    so nnU-Net's own sigmoid at export restores ``p`` (to float32 precision; ``p`` is kept in
    ``[1e-7, 1 - 1e-7]``). Set :attr:`fold_weights` (one per loaded fold, in the order of
    ``use_folds``) after ``initialize_from_trained_model_folder``; ``None`` means equal weights.
    """

    #: weights of the loaded folds (summing to 1), or None for equal weights
    fold_weights: Sequence[float] | None = None

    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        from nnunetv2.configuration import default_num_processes
        from torch._dynamo import OptimizedModule

        n = len(self.list_of_parameters)
        if n == 1:  # one model: exactly nnU-Net's prediction
            return super().predict_logits_from_preprocessed_data(data)
        weights = np.full(n, 1.0 / n) if self.fold_weights is None else np.asarray(self.fold_weights, float)
        if weights.shape != (n,):
            raise ValueError(f"{n} fold models are loaded but {weights.size} fold weights were given")
        threads = torch.get_num_threads()
        torch.set_num_threads(min(default_num_processes, threads))
        try:
            mean = None
            for params, weight in zip(self.list_of_parameters, weights):
                network = self.network._orig_mod if isinstance(self.network, OptimizedModule) else self.network
                network.load_state_dict(params)
                probabilities = torch.sigmoid(self.predict_sliding_window_return_logits(data).to('cpu').float())
                mean = probabilities.mul_(float(weight)) if mean is None else mean.add_(probabilities, alpha=float(weight))
            return torch.logit(mean.clamp_(1e-7, 1 - 1e-7))
        finally:
            torch.set_num_threads(threads)
