"""``nnunet_anomaly predict``: ``nnUNetv2_predict`` for anomaly ensembles (probabilities averaged, not logits).

Takes ``nnUNetv2_predict``'s options and writes the same files (``{case}.npz`` with the
``probabilities``, ``{case}.pkl``, the thresholded image), through nnU-Net's own predictor. The one
difference is how fold models are combined (see :mod:`nnunet_anomaly.nnunet.ensemble`): their
probabilities are averaged (equal weights by default; ``--fold-weights validation`` weighs each fold
by its synthetic validation AP squared), where ``nnUNetv2_predict -f ...`` averages logits. The folds, their weights and where
the weights came from are written to ``OUT/ensemble.json``. Probabilities are always saved: the
anomaly map is the product (``--save_probabilities`` is accepted for compatibility).
"""
from __future__ import annotations

import argparse
import os

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Predict anomaly maps with an ensemble of task-fold models: nnUNetv2_predict's options and outputs, but the "
        "folds' sigmoid probabilities are averaged instead of their logits. Writes OUT/ensemble.json with the folds and weights.")
    parser.add_argument("-i", required=True, help="input folder (nnU-Net naming: CASE_0000.nii.gz, ...)")
    parser.add_argument("-o", required=True, help="output folder (created if missing)")
    parser.add_argument("-d", required=True, help="dataset name or id")
    parser.add_argument("-p", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("-tr", default="AnomalyTaskTrainer", help="trainer class (default AnomalyTaskTrainer)")
    parser.add_argument("-c", required=True, help="configuration, e.g. 3d_fullres")
    parser.add_argument("-f", nargs="+", default=None,
                        help="folds to ensemble (default: every fold of the model folder that has the checkpoint)")
    parser.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint name (default checkpoint_final.pth)")
    parser.add_argument("--fold-weights", choices=("uniform", "validation"), default="uniform",
                        help="uniform (default): equal weights; validation: each fold weighs its synthetic validation "
                             "AP squared (fold_X/validation/summary.json)")
    parser.add_argument("--average", choices=("probability", "logit"), default="probability",
                        help="probability (default); logit = nnUNetv2_predict's own rule, for comparison")
    parser.add_argument("-step_size", type=float, default=0.5, help="sliding-window step as a fraction of the patch")
    parser.add_argument("--disable_tta", action="store_true", help="no test-time mirroring")
    parser.add_argument("--save_probabilities", action="store_true", help="accepted for compatibility (always on)")
    parser.add_argument("--continue_prediction", action="store_true", help="keep cases already predicted in -o")
    parser.add_argument("-npp", type=int, default=3, help="preprocessing processes (0 with -nps 0: no workers)")
    parser.add_argument("-nps", type=int, default=3, help="export processes")
    parser.add_argument("-device", choices=("cuda", "cpu", "mps"), default="cuda", help="device (default cuda)")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--disable_progress_bar", action="store_true")
    parser.add_argument("--not_on_device", action="store_true",
                        help="keep the sliding-window accumulation off the GPU (for very large images)")


def _folds(model_folder: str, requested, checkpoint: str) -> list:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    if requested is None:
        folds = nnUNetPredictor.auto_detect_available_folds(model_folder, checkpoint)
        if not folds:
            raise FileNotFoundError(f"{model_folder}: no fold_X/{checkpoint}; train the folds first (nnUNetv2_train)")
        return sorted(folds, key=lambda f: (isinstance(f, str), f))
    folds = [f if f == "all" else int(f) for f in requested]
    missing = [f for f in folds if not os.path.isfile(os.path.join(model_folder, f"fold_{f}", checkpoint))]
    if missing:
        raise FileNotFoundError(f"{model_folder}: no {checkpoint} for fold(s) {missing}; train them or leave them "
                                "out of -f")
    return folds


def run(args: argparse.Namespace) -> int:
    import multiprocessing

    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from nnunet_anomaly._io import write_json
    from nnunet_anomaly.nnunet.ensemble import ProbabilityEnsemblePredictor, validation_weights

    if not os.path.isdir(args.i):
        raise NotADirectoryError(f"-i {args.i}: no such input folder")
    model_folder = get_output_folder(args.d, args.tr, args.p, args.c)
    if not os.path.isdir(model_folder):
        raise FileNotFoundError(f"{model_folder}: no trained model for -d {args.d} -tr {args.tr} -p {args.p} -c {args.c}")
    folds = _folds(model_folder, args.f, args.chk)
    weights = validation_weights(model_folder, folds, weighting=args.fold_weights)
    if args.average == "logit":
        weights.update(weighting="uniform (nnU-Net's logit mean)", weights=[1 / len(folds)] * len(folds), note="")

    if args.device == "cpu":
        torch.set_num_threads(multiprocessing.cpu_count())
    elif args.device == "cuda":
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    predictor_class = ProbabilityEnsemblePredictor if args.average == "probability" else nnUNetPredictor
    predictor = predictor_class(tile_step_size=args.step_size, use_gaussian=True, use_mirroring=not args.disable_tta,
                                perform_everything_on_device=not args.not_on_device, device=torch.device(args.device),
                                verbose=args.verbose, verbose_preprocessing=args.verbose,
                                allow_tqdm=not args.disable_progress_bar)
    predictor.initialize_from_trained_model_folder(model_folder, folds, checkpoint_name=args.chk)
    if args.average == "probability":
        predictor.fold_weights = weights["weights"]

    os.makedirs(args.o, exist_ok=True)
    shown = ", ".join(f"fold {f}: {w:.3f}" for f, w in zip(weights["folds"], weights["weights"]))
    print(f"nnunet_anomaly predict: {args.average} mean of {len(folds)} fold model(s) ({weights['weighting']} "
          f"weights: {shown}){'; ' + weights['note'] if weights['note'] else ''}", flush=True)
    write_json(os.path.join(args.o, "ensemble.json"),
               {"model_folder": os.path.basename(model_folder), "checkpoint": args.chk, "average": args.average,
                **weights})
    if args.npp == 0 and args.nps == 0:
        predictor.predict_from_files_sequential(args.i, args.o, save_probabilities=True,
                                                overwrite=not args.continue_prediction)
    else:
        predictor.predict_from_files(args.i, args.o, save_probabilities=True, overwrite=not args.continue_prediction,
                                     num_processes_preprocessing=args.npp, num_processes_segmentation_export=args.nps)
    return 0
