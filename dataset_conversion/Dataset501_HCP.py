"""Convert the Human Connectome Project (HCP) structural MRI to ``Dataset501_HCP`` (healthy training set).

Input: the HCP "Structural Preprocessed" release, one folder per subject with
``<subject>/T1w/T2w_acpc_dc_restore_brain.nii.gz`` (and ``T1w_acpc_dc_restore_brain.nii.gz``),
skull-stripped, 0.7 mm isotropic. Any folder depth works: every ``T2w_acpc_dc_restore_brain.nii[.gz]``
under ``--input`` is one subject, named by its first folder below ``--input``.

Per subject (the reference's ``brain_preproc.py``): 0.7 mm -> 1 mm with the edge-preserving rescale
(anti-aliased, as skimage's ``resize`` defaults do), z-score inside the brain per channel, crop to the
union of the T1 and T2 brain boxes (T1 is read for the box even when only T2 is written, as the
reference does), pad to even sizes, downsample by 2 (so every brain fits 80 x 112 x 80; no padding to
exactly that size is written, since nnU-Net crops to the nonzero region anyway and chooses its own
patch size). Outputs:

* ``imagesTr/HCP_<subject>_0000.nii.gz`` (T2) and ``_0001`` (T1, with ``--with-t1``), float32;
* ``labelsTr/HCP_<subject>.nii.gz``: 1 = brain mask (no anomaly annotation: the data are healthy);
* ``crop_info/HCP_<subject>.json``: shapes, crop box, padding and the output affine, to undo the
  crop for the CRADL comparison;
* ``dataset.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_anomaly.conversion import (
    Case,
    add_common_arguments,
    brain_channel_names,
    convert_brain_subject,
    dataset_folder_name,
    check_conversion_options,
    run_conversion,
    resolve_output_root,
    run_cases,
    write_dataset_json,
)

DATASET_ID = 501
DATASET_NAME = "HCP"
T2_NAME = "T2w_acpc_dc_restore_brain"
T1_NAME = "T1w_acpc_dc_restore_brain"
HCP_SCALE = 0.7  # 0.7 mm -> 1 mm

__all__ = ["find_subjects", "build_cases", "convert", "main"]


def _nifti(folder: Path, stem: str) -> Path:
    """``stem.nii.gz`` or ``stem.nii`` in `folder` (the .nii.gz path if neither exists)."""
    for suffix in (".nii.gz", ".nii"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return folder / f"{stem}.nii.gz"


def find_subjects(root: str | Path) -> dict[str, Path]:
    """Map subject id -> folder holding its ``T2w_acpc_dc_restore_brain`` volume.

    Raises
    ------
    FileNotFoundError
        If `root` does not exist or holds no such volume.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"HCP input folder does not exist: {root}")
    subjects: dict[str, Path] = {}
    for path in sorted(root.rglob(f"{T2_NAME}.nii*")):
        if path.name not in (f"{T2_NAME}.nii.gz", f"{T2_NAME}.nii"):
            continue
        relative = path.relative_to(root)
        subject = relative.parts[0] if len(relative.parts) > 1 else path.parent.name
        if subject in subjects and subjects[subject] != path.parent:
            raise ValueError(f"subject {subject} has two {T2_NAME} volumes: {subjects[subject]} and {path.parent}")
        subjects[subject] = path.parent
    if not subjects:
        raise FileNotFoundError(f"no {T2_NAME}.nii.gz found under {root} (expected <subject>/T1w/{T2_NAME}.nii.gz)")
    return subjects


def build_cases(root: str | Path, dataset_dir: Path, *, with_t1: bool = False) -> list[Case]:
    """One :class:`~nnunet_anomaly.conversion.Case` per subject."""
    cases = []
    for subject, folder in find_subjects(root).items():
        name = f"HCP_{subject}"
        inputs = [_nifti(folder, T2_NAME)] + ([_nifti(folder, T1_NAME)] if with_t1 else [])
        # the reference crops to the union of the T1 and T2 boxes: read T1 for the box when it is not a channel
        box = [] if with_t1 or not _nifti(folder, T1_NAME).is_file() else [_nifti(folder, T1_NAME)]
        images = [dataset_dir / "imagesTr" / f"{name}_{c:04d}.nii.gz" for c in range(len(inputs))]
        label = dataset_dir / "labelsTr" / f"{name}.nii.gz"
        crop_info = dataset_dir / "crop_info" / f"{name}.json"
        kwargs = dict(image_paths=[str(p) for p in inputs], channel_names=["T2", "T1"][: len(inputs)],
                      output_images=[str(p) for p in images], crop_info_path=str(crop_info),
                      label_path=str(label), label_source="brain", resample_scale=HCP_SCALE,
                      box_paths=[str(p) for p in box])
        cases.append(Case(name, (*images, label, crop_info), convert_brain_subject, kwargs))
    return cases


def convert(input_root, output_root, *, with_t1: bool = False, num_processes: int = 1,
            dataset_id: int = DATASET_ID, overwrite: bool = False):
    """Convert every subject; return ``(RunSummary, dataset folder)``. Resumable; see ``--overwrite``."""
    dataset_dir = Path(output_root) / dataset_folder_name(dataset_id, DATASET_NAME)
    cases = build_cases(input_root, dataset_dir, with_t1=with_t1)
    check_conversion_options(dataset_dir, "Dataset501_HCP", {"with_t1": with_t1}, overwrite=overwrite)
    summary = run_cases(cases, num_processes, desc="HCP", overwrite=overwrite, remove_orphans=overwrite)
    channels, modalities = brain_channel_names(with_t1)
    num_training = sum(case.done() for case in cases)  # complete cases only: a failed one leaves no file
    write_dataset_json(
        dataset_dir, channel_names=channels, labels={"background": 0, "brain": 1}, num_training=num_training,
        file_ending=".nii.gz", modalities=modalities,
        description="HCP young-adult T2 (+T1) acpc_dc_restore_brain, healthy; 0.7 mm -> 1 mm (edge-preserving), "
                    "z-scored in the brain, cropped to the brain, padded to even, downsampled x2 (2 mm).",
        label_meaning="1 = brain mask (healthy training data carry no anomaly label; nnU-Net needs a non-empty "
                      "label and the anomaly trainers place synthetic anomalies inside it)",
        crop_info="crop_info/<case>.json: input/resampled/cropped/padded/output shapes, bbox, padding, affine",
        licence="HCP Open Access Data Use Terms (registration at db.humanconnectome.org); do not redistribute",
    )
    return summary, dataset_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="Dataset501_HCP", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, input_help="HCP root folder (one sub-folder per subject)")
    parser.add_argument("--with-t1", action="store_true", help="also write T1 as channel 0001 (default: T2 only, "
                        "as in the paper)")
    parser.add_argument("-d", "--dataset-id", type=int, default=DATASET_ID)
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, resolve_output_root(args.output), with_t1=args.with_t1,
                                          num_processes=args.num_processes, dataset_id=args.dataset_id,
                                          overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
