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

__all__ = ["FOLD_WEIGHTINGS", "validation_weights", "ProbabilityEnsemblePredictor", "trainer_output_activation"]

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


def trainer_output_activation(trainer_name: str) -> str:
    """``output_activation`` of the trainer class a checkpoint names: "sigmoid" or "identity".

    The checkpoint stores the trainer's class name, and the class says how its output becomes a map
    (``AnomalyTaskTrainer.output_activation``); a class that says nothing (nnU-Net's own) is "sigmoid".
    """
    from nnunetv2.utilities import find_objects

    if not trainer_name:
        return "sigmoid"
    trainer_class = find_objects.recursive_find_trainer_class_by_name(trainer_name)
    return getattr(trainer_class, "output_activation", "sigmoid") if trainer_class is not None else "sigmoid"


class ProbabilityEnsemblePredictor(nnUNetPredictor):
    """``nnUNetPredictor`` that averages the folds' sigmoid probabilities, with weights, not their logits.

    Everything else (preprocessing, sliding window, test-time mirroring, resampling, export) is
    nnU-Net's. The weighted mean probability ``p`` is handed back as the logit ``log(p / (1 - p))``,
    so nnU-Net's own sigmoid at export restores ``p`` (to float32 precision; ``p`` is kept in
    ``[1e-7, 1 - 1e-7]``). Set :attr:`fold_weights` (one per loaded fold, in the order of
    ``use_folds``) after ``initialize_from_trained_model_folder``; ``None`` means equal weights.

    A model whose trainer has ``output_activation = "identity"`` (``AnomalyTaskTrainer_reference``:
    MSE on the raw output) has no logits: each fold's map is its output clipped to [0, 1], and that
    map goes through the same ``log(p / (1 - p))`` hand-back, so nnU-Net's export writes the clipped
    map instead of a sigmoid of scores (even for one fold). With :attr:`average_outputs` the folds' raw
    outputs are averaged first and the mean is clipped (the identity model's "logit mean").
    """

    #: weights of the loaded folds (summing to 1), or None for equal weights
    fold_weights: Sequence[float] | None = None
    #: how the loaded model's output becomes a map; set from the checkpoint's trainer on initialisation
    output_activation: str = "sigmoid"
    #: identity-output models only: average the raw outputs, then clip (instead of averaging clipped maps)
    average_outputs: bool = False

    def initialize_from_trained_model_folder(self, *args, **kwargs):
        super().initialize_from_trained_model_folder(*args, **kwargs)
        self.output_activation = trainer_output_activation(self.trainer_name)

    def predict_logits_from_preprocessed_data(self, data: torch.Tensor) -> torch.Tensor:
        from nnunetv2.configuration import default_num_processes
        from torch._dynamo import OptimizedModule

        from nnunet_anomaly.nnunet.losses import output_to_map

        n = len(self.list_of_parameters)
        if n == 1 and self.output_activation == "sigmoid":  # one model: exactly nnU-Net's prediction
            return super().predict_logits_from_preprocessed_data(data)
        # an identity model's raw mean (average_outputs) is mapped once, after the mean
        per_fold = "identity_raw" if self.output_activation == "identity" and self.average_outputs \
            else self.output_activation
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
                output = self.predict_sliding_window_return_logits(data).to('cpu').float()
                probabilities = output.clone() if per_fold == "identity_raw" else output_to_map(output, per_fold)
                mean = probabilities.mul_(float(weight)) if mean is None else mean.add_(probabilities, alpha=float(weight))
            if per_fold == "identity_raw":
                mean = output_to_map(mean, "identity")
            return torch.logit(mean.clamp_(1e-7, 1 - 1e-7))
        finally:
            torch.set_num_threads(threads)
