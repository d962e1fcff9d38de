"""``nnunet_anomaly crossval``: the cross-validation result of anomaly models, and which one is best.

For segmentation models nnU-Net's ``nnUNetv2_accumulate_crossval_results`` merges the folds'
validation segmentations and scores them by Dice against ``labelsTr``, and
``nnUNetv2_find_best_configuration`` ranks configurations that way. Neither applies to anomaly
models (their labels are anatomy masks, their outputs continuous scores; the start-up hook stops
those tools on anomaly models with a one-line pointer here). The anomaly analogue is each fold's
synthetic validation (``fold_X/validation/summary.json``): its held-out tasks stand in for unseen
anomalies. This command

* reads every fold's summary (all folds of the model's trainer unless ``-f`` names some; a missing
  fold is an error, as in nnU-Net);
* writes ``<model>/crossval_results_folds_<folds>/summary.json``: per fold the selection AP (pooled
  pixel AP with the healthy voxels as negatives when they were validated, else without), pooled AP
  and AUROC; their means over the folds; per task the mean AP over the folds that validate it; the
  tasks any fold dropped (``inter_blend`` without an external pool);
* with several models (``-c`` / ``-tr`` / ``-p`` take lists, like ``nnUNetv2_find_best_configuration``),
  ranks them by the mean selection AP and prints the command that predicts with the best.

Means over folds are not pooled over voxels (the summaries hold scalars); each fold weighs the same.
This module reads JSON only: it imports neither torch nor nnU-Net.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

__all__ = ["fold_validation_ap", "model_crossval", "configure_parser", "run"]


def fold_validation_ap(summary: dict) -> float | None:
    """A fold's selection AP: pooled pixel AP with the healthy negatives when validated, else without.

    Examples
    --------
    >>> fold_validation_ap({"pooled": {"ap": 0.5}, "pooled_with_healthy": {"ap": 0.4}})
    0.4
    >>> fold_validation_ap({"pooled": {"ap": 0.5}}), fold_validation_ap({"pooled": {"ap": None}})
    (0.5, None)
    """
    for key in ("pooled_with_healthy", "pooled"):
        value = (summary.get(key) or {}).get("ap")
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return None


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 6) if values else None


def _results_folder() -> Path:
    value = os.environ.get("nnUNet_results")
    if not value:
        raise ValueError("nnUNet_results is not set; it must name the folder nnUNetv2_train wrote the models to")
    return Path(value)


def model_folder(dataset: str, trainer: str, plans: str, configuration: str) -> Path:
    """``$nnUNet_results/DatasetXXX_Name/<trainer>__<plans>__<configuration>`` for a dataset id or name."""
    results = _results_folder()
    if dataset.startswith("Dataset"):
        names = [dataset]
    else:
        try:
            prefix = f"Dataset{int(dataset):03d}_"
        except ValueError:
            raise ValueError(f"-d {dataset!r}: give a dataset id (501) or name (Dataset501_Name)") from None
        names = sorted(d.name for d in results.glob(prefix + "*") if d.is_dir())
        if len(names) != 1:
            raise FileNotFoundError(f"{results}: {'no' if not names else 'several'} dataset folder(s) for id {dataset}"
                                    f"{': ' + ', '.join(names) if names else ''}")
    return results / names[0] / f"{trainer}__{plans}__{configuration}"


def _fold_key(name: str):
    number = name[len("fold_"):]
    return (0, int(number)) if number.isdigit() else (1, number)


def model_crossval(folder, folds=None) -> dict:
    """The cross-validation summary of one anomaly model folder (see the module docstring).

    Parameters
    ----------
    folder : path
        ``<trainer>__<plans>__<configuration>`` folder of a trained model.
    folds : sequence, optional
        Folds to include; default: every fold of the trainer (its number of training tasks, read from
        the summaries, gives C(5, T) folds).

    Raises
    ------
    FileNotFoundError
        The folder, or the summary of a requested fold, is missing.
    ValueError
        A summary is not an anomaly model's final validation.
    """
    from nnunet_anomaly.folds import num_folds
    from nnunet_anomaly.nnunet.resume import completed_summary

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such trained model (train it with nnUNetv2_train first)")
    available = {}
    for fold_dir in sorted(folder.glob("fold_*"), key=lambda p: _fold_key(p.name)):
        path = fold_dir / "validation" / "summary.json"
        if path.is_file():
            try:
                available[fold_dir.name[len("fold_"):]] = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                raise ValueError(f"{path}: not valid JSON ({error})") from None
    if folds is None:
        if not available:
            raise FileNotFoundError(f"{folder}: no fold has validation/summary.json; train the folds first")
        train_tasks = {len(s.get("train_tasks") or []) for s in available.values()}
        if len(train_tasks) != 1 or 0 in train_tasks:
            raise ValueError(f"{folder}: the fold summaries do not name one number of training tasks")
        folds = [str(f) for f in range(num_folds(train_tasks.pop()))]
    folds = [str(f) for f in folds]
    missing = [f for f in folds if f not in available]
    if missing:
        raise FileNotFoundError(f"{folder}: fold(s) {', '.join(missing)} have no validation/summary.json; train them "
                                "(nnUNetv2_train ... FOLD) or leave them out with -f")
    per_fold, per_task, dropped = {}, {}, {}
    for fold in folds:
        summary = available[fold]
        if completed_summary(folder / f"fold_{fold}" / "validation" / "summary.json", summary.get("trainer"),
                             fold) is None or "val_tasks" not in summary:
            raise ValueError(f"{folder}/fold_{fold}/validation/summary.json is not the final validation of an "
                             "anomaly model")
        per_fold[fold] = {"selection_ap": fold_validation_ap(summary),
                          "pooled_ap": (summary.get("pooled") or {}).get("ap"),
                          "pooled_auroc": (summary.get("pooled") or {}).get("auroc"),
                          "train_tasks": summary.get("train_tasks"), "val_tasks": summary["val_tasks"]}
        for task, values in (summary.get("per_task") or {}).items():
            per_task.setdefault(task, {}).setdefault("ap", []).append(values.get("ap"))
            per_task[task].setdefault("folds", []).append(fold)
        if summary.get("dropped_tasks"):
            dropped[fold] = summary["dropped_tasks"]
    return {
        "description": "cross-validation of an anomaly model on its folds' synthetic validation (each fold's "
                       "held-out tasks on its held-out cases); means over folds, each fold weighing the same; "
                       "selection_ap is the pooled pixel AP with the healthy voxels as negatives when validated",
        "model": folder.name, "folds": folds,
        "mean": {"selection_ap": _mean(f["selection_ap"] for f in per_fold.values()),
                 "pooled_ap": _mean(f["pooled_ap"] for f in per_fold.values()),
                 "pooled_auroc": _mean(f["pooled_auroc"] for f in per_fold.values())},
        "per_task": {task: {"ap": _mean(v["ap"]), "folds": v["folds"]} for task, v in sorted(per_task.items())},
        "per_fold": per_fold,
        "dropped_tasks": dropped,
    }


def inference_command(dataset: str, model: dict, trainer: str, plans: str, configuration: str) -> str:
    """The documented way to predict with the ensemble of a model's folds (see documentation/prediction.md)."""
    folds = " ".join(model["folds"])
    return (f"nnunet_anomaly predict -d {dataset} -c {configuration} -tr {trainer} -p {plans} -f {folds} "
            "-i INPUT_FOLDER -o OUTPUT_FOLDER")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Cross-validation of anomaly models from their folds' synthetic validation (what "
        "nnUNetv2_accumulate_crossval_results and nnUNetv2_find_best_configuration do for segmentation models). "
        "Writes <model>/crossval_results_folds_<folds>/summary.json; with several models, ranks them.")
    parser.add_argument("-d", required=True, help="dataset id or name")
    parser.add_argument("-c", nargs="+", required=True, help="configuration(s), e.g. 3d_fullres")
    parser.add_argument("-tr", nargs="+", default=["AnomalyTaskTrainer"], help="trainer(s) (default AnomalyTaskTrainer)")
    parser.add_argument("-p", nargs="+", default=["nnUNetPlans"], help="plans identifier(s) (default nnUNetPlans)")
    parser.add_argument("-f", nargs="+", default=None,
                        help="folds (default: all folds of each trainer: 5 for T = 1 and 4, 10 for T = 2 and 3)")


def run(args: argparse.Namespace) -> int:
    from nnunet_anomaly._io import write_json

    results = []
    for trainer in args.tr:
        for plans in args.p:
            for configuration in args.c:
                folder = model_folder(args.d, trainer, plans, configuration)
                model = model_crossval(folder, args.f)
                out = folder / f"crossval_results_folds_{'_'.join(model['folds'])}" / "summary.json"
                write_json(out, model)
                results.append((model, trainer, plans, configuration, out))
    width = max(len(m["model"]) for m, *_ in results)
    print(f"{'model':<{width}}  folds  selection AP  pooled AP  AUROC")
    fmt = lambda v: "   n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for model, *_, out in results:
        mean = model["mean"]
        print(f"{model['model']:<{width}}  {len(model['folds']):>5}  {fmt(mean['selection_ap']):>12}  "
              f"{fmt(mean['pooled_ap']):>9}  {fmt(mean['pooled_auroc'])}")
        for fold, dropped in model["dropped_tasks"].items():
            where = " and ".join(f"{part}" for part in dropped)
            print(f"  WARNING: fold {fold} ran without inter_blend ({where}): no external pool was configured")
        print(f"  -> {out}")
    ranked = [r for r in results if r[0]["mean"]["selection_ap"] is not None]
    if len(results) > 1 and ranked:
        best = max(ranked, key=lambda r: r[0]["mean"]["selection_ap"])
        model, trainer, plans, configuration, _ = best
        print(f"\nbest: {model['model']} (mean selection AP {model['mean']['selection_ap']:.4f})")
        print("predict with it:\n  " + inference_command(args.d, model, trainer, plans, configuration))
    return 0
