"""``nnunet_anomaly predict``: ``nnUNetv2_predict`` for anomaly ensembles (probabilities averaged, not logits).

Takes ``nnUNetv2_predict``'s options and writes the same files (``{case}.npz`` with the
``probabilities``, ``{case}.pkl``, the thresholded image), through nnU-Net's own predictor. The one
difference is how fold models are combined (see :mod:`nnunet_anomaly.nnunet.ensemble`): their
probabilities are averaged (equal weights by default; ``--fold-weights validation`` weighs each fold
by its synthetic validation AP squared), where ``nnUNetv2_predict -f ...`` averages logits. The folds, their weights and where
the weights came from are written to ``OUT/ensemble.json``. Probabilities are always saved: the
anomaly map is the product (``--save_probabilities`` is accepted for compatibility).

Before any work (no model is loaded, nothing is written) the inputs are checked the way ``evaluate``
checks its own: the dataset and model folder exist, ``-i`` holds at least one case named
``CASE_XXXX<file_ending>``, every case has the channels of the model's ``dataset.json``, each image
is complete, has the dimensionality the model was trained on (2D or 3D, ``plans.json``) and holds
finite values. A refused run is one line naming the file and the problem. ``--continue_prediction``
keeps a case only when both its outputs (``CASE.npz`` and the image) pass
:func:`nnunet_anomaly._io.check_complete`, the check our readers use; a truncated one is redone.
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import numpy as np

__all__ = ["configure_parser", "run", "input_cases", "check_case_images", "cases_to_predict"]


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
    parser.add_argument("-chk", default="checkpoint_best.pth",
                        help="checkpoint name (default checkpoint_best.pth, the model the synthetic validation "
                             "selected; checkpoint_final.pth is the last epoch, nnU-Net's default)")
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


#: the hint when a fold lacks the requested checkpoint (a model trained elsewhere may keep only one of them)
_OTHER_CHECKPOINT = {"checkpoint_best.pth": "; -chk checkpoint_final.pth predicts with the last epoch instead",
                     "checkpoint_final.pth": "; -chk checkpoint_best.pth predicts with the selected epoch instead"}


def _folds(model_folder: str, requested, checkpoint: str) -> list:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    if requested is None:
        folds = nnUNetPredictor.auto_detect_available_folds(model_folder, checkpoint)
        if not folds:
            raise FileNotFoundError(f"{model_folder}: no fold_X/{checkpoint}; train the folds first (nnUNetv2_train)"
                                    f"{_OTHER_CHECKPOINT.get(checkpoint, '')}")
        return sorted(folds, key=lambda f: (isinstance(f, str), f))
    folds = [f if f == "all" else int(f) for f in requested]
    missing = [f for f in folds if not os.path.isfile(os.path.join(model_folder, f"fold_{f}", checkpoint))]
    if missing:
        raise FileNotFoundError(f"{model_folder}: no {checkpoint} for fold(s) {missing}; train them or leave them "
                                f"out of -f{_OTHER_CHECKPOINT.get(checkpoint, '')}")
    return folds


def _model_folder(args) -> Path:
    """The trained model folder of ``-d -tr -p -c``; a missing dataset or model is one line."""
    from nnunet_anomaly.nnunet.crossval import model_folder

    try:
        folder = model_folder(str(args.d), args.tr, args.p, args.c)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"-d {args.d}: no trained model ({error}); train it first (nnUNetv2_train) or check "
                                "-d and nnUNet_results") from None
    if not folder.is_dir():
        trained = sorted(d.name for d in folder.parent.iterdir() if d.is_dir()) if folder.parent.is_dir() else []
        raise FileNotFoundError(f"{folder}: no trained model for -d {args.d} -tr {args.tr} -p {args.p} -c {args.c}"
                                + (f" (trained there: {', '.join(trained)})" if trained else ""))
    return folder


def _channel_names(dataset_json: dict) -> list[str]:
    """The model's input channels, in order (``channel_names``, or the older ``modality``).

    Examples
    --------
    >>> _channel_names({"channel_names": {"1": "T2", "0": "T1"}})
    ['T1', 'T2']
    """
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    return [str(channels[key]) for key in sorted(channels, key=int)]


def _training_is_2d(plans: dict) -> bool | None:
    """Whether the model was trained on 2D images (nnU-Net's median shape has a singleton axis); None if unknown.

    Examples
    --------
    >>> _training_is_2d({"original_median_shape_after_transp": [1, 64, 64]}), _training_is_2d({})
    (True, None)
    """
    shape = plans.get("original_median_shape_after_transp")
    return None if not shape else 1 in [int(n) for n in shape]


def input_cases(folder, file_ending: str) -> dict[str, dict[int, Path]]:
    """The cases of an input folder in nnU-Net's naming: ``{case: {channel index: file}}``, sorted by case.

    Files that do not end in `file_ending` (the model's) are not inputs; hidden files are skipped.

    Raises
    ------
    ValueError
        A file ending in `file_ending` that is not named ``CASE_XXXX<file_ending>``.
    FileNotFoundError
        If the folder holds no case.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b_0000.nii.gz", "a_0001.nii.gz", "a_0000.nii.gz", "notes.txt"):
    ...     _ = (root / name).write_bytes(b"")
    >>> {case: sorted(files) for case, files in input_cases(root, ".nii.gz").items()}
    {'a': [0, 1], 'b': [0]}
    """
    folder = Path(folder)
    pattern = re.compile(r"(.+)_(\d{4})" + re.escape(file_ending))
    cases: dict[str, dict[int, Path]] = {}
    others = set()
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if not path.name.endswith(file_ending):
            others.add("".join(path.suffixes[-2:]) or path.name)
            continue
        match = pattern.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path}: not named CASE_XXXX{file_ending} (nnU-Net's naming: the case, _ and a 4-digit "
                             f"channel index, e.g. brain_001_0000{file_ending})")
        cases.setdefault(match[1], {})[int(match[2])] = path
    if not cases:
        found = f"it holds only {', '.join(sorted(others))} files" if others else "it is empty"
        raise FileNotFoundError(f"-i {folder}: no input image ending in {file_ending} (the model's file_ending, named "
                                f"CASE_0000{file_ending}); {found}")
    return dict(sorted(cases.items()))


def _read_channels(path: Path, reader):
    """`path` read by the model's nnU-Net reader, after the completeness check: ``(C, Z, Y, X)``."""
    from nnunet_anomaly._io import check_complete

    check_complete(path)
    try:
        data, _ = reader.read_images([str(path)])
    except Exception as error:  # noqa: BLE001 -- any reader failure is a bad input file
        reason = str(error).strip().splitlines()
        raise ValueError(f"{path}: nnU-Net's {type(reader).__name__} cannot read it "
                         f"({type(error).__name__}{': ' + reason[-1] if reason else ''})") from None
    return data


def _nifti_non_finite(path: Path) -> int:
    """NaN/inf values stored in a float NIfTI file (SimpleITK reads them as 0, so nnU-Net's array hides them)."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return 0
    import nibabel

    try:
        image = nibabel.load(str(path))
        if image.header.get_data_dtype().kind not in "fc":
            return 0
        data = np.asanyarray(image.dataobj)
    except Exception:  # noqa: BLE001 -- nnU-Net's reader read it; nibabel's view is only a second opinion
        return 0
    return int(data.size - np.count_nonzero(np.isfinite(data)))


def check_case_images(case: str, files: dict[int, Path], reader, *, channels: list[str],
                      trained_2d: bool | None = None) -> None:
    """Check one case's images against the model: channel files, channels, dimensionality, finite values.

    Parameters
    ----------
    case : str
        The case name (``CASE`` of ``CASE_0000.nii.gz``).
    files : dict
        Channel index -> file (:func:`input_cases`).
    reader : nnU-Net reader instance
        The model's ``image_reader_writer`` (what ``nnUNetv2_predict`` reads the images with).
    channels : list of str
        The model's channel names (its ``dataset.json``).
    trained_2d : bool, optional
        Whether the model was trained on 2D images (None: not checked).

    Raises
    ------
    ValueError
        One line naming the file (or the case) and the problem.
    """
    indices = sorted(files)
    first = files[indices[0]]
    ending = first.name[len(f"{case}_{indices[0]:04d}"):]
    names = f"{len(channels)} channel(s): {', '.join(channels)}; its dataset.json"
    missing = [i for i in range(indices[-1] + 1) if i not in files]
    if missing:
        raise ValueError(f"{first.parent / f'{case}_{missing[0]:04d}{ending}'}: missing; the channel files of case "
                         f"{case} ({', '.join(f'{i:04d}' for i in indices)}) must be numbered from 0000 on")
    if len(indices) > len(channels):
        raise ValueError(f"{files[indices[len(channels)]]}: a channel the model does not have (it takes {names})")
    n_read, spatial = 0, None
    for position, index in enumerate(indices):
        path = files[index]
        data = _read_channels(path, reader)
        if data.ndim != 4:
            raise ValueError(f"{path}: nnU-Net reads it as an array of shape {tuple(data.shape)}; expected "
                             "(channels, Z, Y, X)")
        later = len(indices) - 1 - position  # the files after this one hold at least one channel each
        if data.shape[0] > 1 and n_read + data.shape[0] + later > len(channels):
            what = (f"a 4D image of shape {tuple(data.shape)}" if type(reader).__name__.startswith(("SimpleITK", "Nibabel"))
                    else f"an image of {data.shape[0]} channels")
            raise ValueError(f"{path}: {what} ({data.shape[0]} channels in one file); the model takes {names}, one "
                             f"{'2D' if trained_2d else '3D'} image per channel file ({case}_0000{ending}, ...)")
        if spatial is not None and tuple(data.shape[1:]) != spatial:
            raise ValueError(f"{path}: shape {tuple(data.shape[1:])} differs from {first.name}'s {spatial}; the "
                             "channels of a case must have one shape")
        spatial = tuple(data.shape[1:])
        is_2d = spatial[0] == 1
        if trained_2d is not None and is_2d != trained_2d:
            raise ValueError(f"{path}: a {'2D' if is_2d else '3D'} image of shape {spatial[1:] if is_2d else spatial}; "
                             f"the model was trained on {'2D' if trained_2d else '3D'} images")
        non_finite = int(data.size - np.count_nonzero(np.isfinite(data))) or _nifti_non_finite(path)
        if non_finite:
            raise ValueError(f"{path}: {non_finite} NaN/inf voxel(s); nnU-Net would predict from them unnoticed (its "
                             "SimpleITK reader turns them into 0 in NIfTI files): replace them first")
        n_read += int(data.shape[0])
    if n_read < len(channels):
        raise ValueError(f"{first.parent / f'{case}_{indices[-1] + 1:04d}{ending}'}: missing; case {case} has "
                         f"{n_read} channel(s), the model takes {names}")


def cases_to_predict(cases, output_folder, file_ending: str, *, overwrite: bool = True) -> tuple[list[str], dict]:
    """The cases to predict, and why each already-present one is redone.

    With ``overwrite=False`` (``--continue_prediction``) a case is kept when both its outputs,
    ``CASE.npz`` and ``CASE<file_ending>``, exist and pass :func:`nnunet_anomaly._io.check_complete`
    (the completeness check our readers use); a case with a missing or truncated output is redone.

    Returns
    -------
    (list of str, dict)
        The cases to predict, in order; ``{case: reason}`` for the cases redone because an output is
        incomplete.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> for case in ("a", "b"):
    ...     np.savez_compressed(out / f"{case}.npz", probabilities=np.zeros((1, 8, 8, 8), np.float32))
    ...     _ = (out / f"{case}.nii.gz").write_bytes(b"")
    >>> _ = (out / "a.npz").write_bytes((out / "a.npz").read_bytes()[:-30])  # cut short
    >>> todo, redo = cases_to_predict(["a", "b", "c"], out, ".nii.gz", overwrite=False)
    >>> todo, sorted(redo)
    (['a', 'b', 'c'], ['a', 'b'])
    """
    from nnunet_anomaly._io import check_complete

    cases = list(cases)
    if overwrite:
        return cases, {}
    output_folder = Path(output_folder)
    todo, redo = [], {}
    for case in cases:
        outputs = [output_folder / f"{case}.npz", output_folder / f"{case}{file_ending}"]
        if not all(path.is_file() for path in outputs):
            todo.append(case)
            continue
        try:
            for path in outputs:
                if path.stat().st_size == 0:  # a file created but never written: no format check sees it
                    raise ValueError(f"{path}: empty file")
                check_complete(path)
        except ValueError as error:
            todo.append(case)
            redo[case] = str(error)
    return todo, redo


def _reader(plans: dict, dataset_json: dict):
    """An instance of the model's nnU-Net image reader (``plans.json``'s ``image_reader_writer``)."""
    from nnunetv2.imageio.reader_writer_registry import (determine_reader_writer_from_dataset_json,
                                                         recursive_find_reader_writer_by_name)

    name = plans.get("image_reader_writer")
    if name:
        return recursive_find_reader_writer_by_name(name)()
    return determine_reader_writer_from_dataset_json(dataset_json)()


def run(args: argparse.Namespace) -> int:
    import multiprocessing

    from nnunet_anomaly._io import read_json, write_json

    # Everything is checked before any work: a refused run loads no model and writes nothing.
    if not os.path.isdir(args.i):
        raise NotADirectoryError(f"-i {args.i}: no such input folder")
    model_folder = str(_model_folder(args))
    dataset_json = read_json(os.path.join(model_folder, "dataset.json"))
    plans = read_json(os.path.join(model_folder, "plans.json"))
    folds = _folds(model_folder, args.f, args.chk)
    file_ending = dataset_json.get("file_ending", ".nii.gz")
    cases = input_cases(args.i, file_ending)
    todo, redo = cases_to_predict(cases, args.o, file_ending, overwrite=not args.continue_prediction)
    reader = _reader(plans, dataset_json)
    for case in todo:
        check_case_images(case, cases[case], reader, channels=_channel_names(dataset_json),
                          trained_2d=_training_is_2d(plans))
    if args.continue_prediction:
        print(f"nnunet_anomaly predict: --continue_prediction: {len(cases) - len(todo)} of {len(cases)} cases are "
              f"complete in {args.o}; predicting {len(todo)}", flush=True)
        for case, reason in redo.items():
            print(f"  redoing {case}: {reason}", flush=True)
    if not todo:
        return 0

    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_anomaly.nnunet.ensemble import (ProbabilityEnsemblePredictor, trainer_output_activation,
                                                validation_weights)
    from nnunet_anomaly.plugin._startup import quiet_trainer_lookup

    weights = validation_weights(model_folder, folds, weighting=args.fold_weights)
    if args.average == "logit":
        weights.update(weighting="uniform (nnU-Net's logit mean)", weights=[1 / len(folds)] * len(folds), note="")

    if args.device == "cpu":
        torch.set_num_threads(multiprocessing.cpu_count())
    elif args.device == "cuda":
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    # an identity-output model (AnomalyTaskTrainer_reference) has no logits for nnU-Net's sigmoid: always ours
    quiet_trainer_lookup()
    identity = trainer_output_activation(args.tr) == "identity"
    predictor_class = ProbabilityEnsemblePredictor if args.average == "probability" or identity else nnUNetPredictor
    predictor = predictor_class(tile_step_size=args.step_size, use_gaussian=True, use_mirroring=not args.disable_tta,
                                perform_everything_on_device=not args.not_on_device, device=torch.device(args.device),
                                verbose=args.verbose, verbose_preprocessing=args.verbose,
                                allow_tqdm=not args.disable_progress_bar)
    quiet_trainer_lookup()  # nnU-Net's "Trainer ... not found ... Searching" lines are no error (troubleshooting.md)
    predictor.initialize_from_trained_model_folder(model_folder, folds, checkpoint_name=args.chk)
    if args.average == "probability":
        predictor.fold_weights = weights["weights"]
    elif identity:  # nnU-Net's rule for such a model: mean of the raw outputs, then clipped to [0, 1]
        predictor.average_outputs = True

    os.makedirs(args.o, exist_ok=True)
    shown = ", ".join(f"fold {f}: {w:.3f}" for f, w in zip(weights["folds"], weights["weights"]))
    print(f"nnunet_anomaly predict: {args.average} mean of {len(folds)} fold model(s) ({weights['weighting']} "
          f"weights: {shown}){'; ' + weights['note'] if weights['note'] else ''}", flush=True)
    write_json(os.path.join(args.o, "ensemble.json"),
               {"model_folder": os.path.basename(model_folder), "checkpoint": args.chk, "average": args.average,
                **weights})
    # the checked cases, as lists (nnU-Net would list -i again, and keep truncated outputs with overwrite=False)
    inputs = [[str(cases[case][index]) for index in sorted(cases[case])] for case in todo]
    outputs = [os.path.join(args.o, case) for case in todo]
    if args.npp == 0 and args.nps == 0:
        predictor.predict_from_files_sequential(inputs, outputs, save_probabilities=True, overwrite=True)
    else:
        predictor.predict_from_files(inputs, outputs, save_probabilities=True, overwrite=True,
                                     num_processes_preprocessing=args.npp, num_processes_segmentation_export=args.nps)
    return 0
