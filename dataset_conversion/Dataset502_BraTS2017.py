"""Convert BraTS 2017 (HGG + LGG training sets) to ``Dataset502_BraTS2017``, a brain-tumour TEST set.

Input: the BraTS 2017 training release, ``<root>/HGG/<case>/<case>_t2.nii.gz`` (``_t1``, ``_seg``) and
the same under ``LGG/`` (any depth works: every ``<case>_seg.nii[.gz]`` is one case).

Per case, the reference's ``brain_preproc.py`` steps (the data are already 1 mm, so no resampling):
z-score inside the brain per channel, crop to the union of the T1 and T2 brain boxes, flip axis 1 to
HCP's orientation, pad to even, downsample by 2. Every tumour class (1, 2, 4) becomes anomaly label 1.

nnU-Net never trains on this dataset: the models come from Dataset501_HCP. So the images go to
``imagesTs`` with the same channel order as HCP (``_0000`` = T2, ``_0001`` = T1 with ``--with-t1``),
the ground truth to ``labelsTs`` (1 = tumour), the brain masks to ``brainmasksTs`` (the region the
evaluation reports masked numbers in), the crop bookkeeping to ``crop_info`` (the evaluation's
paper canvas comes from it); ``dataset.json`` has ``numTraining: 0``
and documents this. No ``imagesTr``: run ``nnUNetv2_predict -i .../imagesTs -d 501 ...``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_anomaly.conversion import (
    Case,
    add_common_arguments,
    brain_test_case,
    brain_channel_names,
    dataset_folder_name,
    check_conversion_options,
    run_conversion,
    resolve_output_root,
    run_cases,
    write_dataset_json,
)

DATASET_ID = 502
DATASET_NAME = "BraTS2017"
FLIP_AXIS = 1  # BraTS's y axis runs opposite to HCP's

__all__ = ["find_cases", "build_cases", "convert", "main"]


def _modality(folder: Path, case: str, suffix: str) -> Path:
    for ending in (".nii.gz", ".nii"):
        if (folder / f"{case}_{suffix}{ending}").is_file():
            return folder / f"{case}_{suffix}{ending}"
    return folder / f"{case}_{suffix}.nii.gz"


def find_cases(root: str | Path) -> dict[str, Path]:
    """Map case id (e.g. ``Brats17_2013_10_1``) -> its folder, from every ``*_seg.nii[.gz]`` under `root`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"BraTS input folder does not exist: {root}")
    cases: dict[str, Path] = {}
    for seg in sorted(root.rglob("*_seg.nii*")):
        if not (seg.name.endswith("_seg.nii.gz") or seg.name.endswith("_seg.nii")):
            continue
        case = seg.name.split("_seg.nii")[0]
        if case in cases:
            raise ValueError(f"case {case} appears twice: {cases[case]} and {seg.parent}")
        cases[case] = seg.parent
    if not cases:
        raise FileNotFoundError(f"no <case>_seg.nii.gz found under {root} (expected HGG/<case>/<case>_seg.nii.gz)")
    return cases


def build_cases(root, dataset_dir: Path, *, with_t1: bool = False) -> list[Case]:
    cases = []
    for case, folder in find_cases(root).items():
        inputs = [_modality(folder, case, "t2")] + ([_modality(folder, case, "t1")] if with_t1 else [])
        # the reference crops to the union of the T1 and T2 boxes: read T1 for the box when it is not a channel
        t1 = _modality(folder, case, "t1")
        box = [] if with_t1 or not t1.is_file() else [t1]
        cases.append(brain_test_case(case, dataset_dir, inputs, _modality(folder, case, "seg"), flip_axis=FLIP_AXIS,
                                     box_paths=box))
    return cases


def convert(input_root, output_root, *, with_t1: bool = False, num_processes: int = 1, dataset_id: int = DATASET_ID,
            overwrite: bool = False):
    """Convert every case; return ``(RunSummary, dataset folder)``. Resumable; see ``--overwrite``."""
    dataset_dir = Path(output_root) / dataset_folder_name(dataset_id, DATASET_NAME)
    cases = build_cases(input_root, dataset_dir, with_t1=with_t1)
    check_conversion_options(dataset_dir, "Dataset502_BraTS2017", {"with_t1": with_t1}, overwrite=overwrite)
    summary = run_cases(cases, num_processes, desc="BraTS 2017", overwrite=overwrite, remove_orphans=overwrite)
    channels, modalities = brain_channel_names(with_t1)
    write_dataset_json(
        dataset_dir, channel_names=channels, modalities=modalities,
        labels={"background": 0, "tumour": 1}, num_training=0, file_ending=".nii.gz",
        description="BraTS 2017 HGG+LGG as an anomaly-localisation TEST set (numTraining 0, no imagesTr): "
                    "predict imagesTs with the Dataset501_HCP models. Preprocessed like HCP (z-score in brain, "
                    "crop, flip axis 1 to HCP orientation, pad to even, downsample x2).",
        label_meaning="labelsTs: 1 = tumour (all BraTS classes 1, 2, 4); brainmasksTs: 1 = brain (nnunet_anomaly evaluate "
                      "reports its numbers inside it beside the paper's whole-canvas numbers)",
        crop_info="crop_info/<case>.json: shapes, bbox, flip axis, padding and output affine",
        licence="BraTS 2017 data usage terms (registration via the CBICA image processing portal); cite the "
                "BraTS papers; do not redistribute",
    )
    return summary, dataset_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="Dataset502_BraTS2017", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, input_help="BraTS 2017 training folder (holding HGG/ and LGG/)")
    parser.add_argument("--with-t1", action="store_true", help="also write T1 as channel 0001 (match the HCP model)")
    parser.add_argument("-d", "--dataset-id", type=int, default=DATASET_ID)
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, resolve_output_root(args.output), with_t1=args.with_t1,
                                          num_processes=args.num_processes, dataset_id=args.dataset_id,
                                          overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
