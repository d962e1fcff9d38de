"""Convert ISLES 2015 SISS (training set) to ``Dataset503_ISLES2015``, an ischaemic-stroke TEST set.

Input: the SISS training release, ``<root>/<n>/VSD.Brain.XX.O.MR_T2.<id>/VSD.Brain.XX.O.MR_T2.<id>.nii``
(likewise ``MR_T1``, and the lesion mask ``VSD.Brain.XX.O.OT.<id>``), one numbered folder per case
(any depth works: every folder holding an ``.OT.`` volume below it is one case).

Per case, the reference's ``brain_preproc.py`` steps (1 mm data, no resampling, no flip): z-score
inside the brain per channel, crop to the union of the T1 and T2 brain boxes, pad to even,
downsample by 2; lesion = OT != 0.

Like BraTS, a test set (``numTraining: 0``): ``imagesTs`` (``_0000`` = T2, ``_0001`` = T1 with
``--with-t1``, the HCP channel order), ``labelsTs`` (1 = lesion), ``brainmasksTs``, ``crop_info``.
"""
from __future__ import annotations

import argparse
import re
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

DATASET_ID = 503
DATASET_NAME = "ISLES2015"

__all__ = ["find_cases", "find_modality", "build_cases", "convert", "main"]


def find_modality(case_dir: Path, tag: str) -> Path:
    """The one ``*.<tag>.*.nii[.gz]`` volume under `case_dir` (tag e.g. ``MR_T2`` or ``OT``).

    Raises
    ------
    FileNotFoundError, ValueError
        When there is none or more than one.
    """
    pattern = re.compile(rf"\.{re.escape(tag)}\.[^/]*\.nii(\.gz)?$")
    hits = sorted(p for p in Path(case_dir).rglob("*.nii*") if pattern.search(p.name))
    if not hits:
        raise FileNotFoundError(f"no {tag} volume (VSD.Brain.XX.O.{tag}.<id>.nii) under {case_dir}")
    if len(hits) > 1:
        raise ValueError(f"more than one {tag} volume under {case_dir}: {[h.name for h in hits]}")
    return hits[0]


def _optional_modality(case_dir: Path, tag: str) -> list[Path]:
    """``[path]`` of the one `tag` volume, or ``[]`` when there is none."""
    try:
        return [find_modality(case_dir, tag)]
    except FileNotFoundError:
        return []


def find_cases(root: str | Path) -> dict[str, Path]:
    """Map case id (``ISLES_<folder>``) -> case folder (the folder whose child holds the OT volume)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ISLES input folder does not exist: {root}")
    cases: dict[str, Path] = {}
    ot = re.compile(r"\.OT\.[^/]*\.nii(\.gz)?$")
    for path in sorted(root.rglob("*.nii*")):
        if not ot.search(path.name):
            continue
        # SISS nests each volume in a folder of its own name: <case>/<VSD...OT.id>/<VSD...OT.id>.nii
        case_dir = path.parent.parent if path.parent.name.startswith("VSD.") and path.parent != root else path.parent
        name = f"ISLES_{case_dir.name}"
        if name in cases and cases[name] != case_dir:
            raise ValueError(f"two ISLES cases are both called {case_dir.name}: {cases[name]} and {case_dir}")
        cases[name] = case_dir
    if not cases:
        raise FileNotFoundError(f"no VSD.Brain.XX.O.OT.<id>.nii lesion masks found under {root}")
    return cases


def build_cases(root, dataset_dir: Path, *, with_t1: bool = False) -> list[Case]:
    cases = []
    for name, folder in find_cases(root).items():
        tags = ["MR_T2"] + (["MR_T1"] if with_t1 else [])
        # a missing or ambiguous modality fails this case (named in the summary), not the whole run
        try:
            inputs = [find_modality(folder, t) for t in tags]
            # the reference crops to the union of the T1 and T2 boxes: read T1 for the box when it is not a channel
            box = [] if with_t1 else _optional_modality(folder, "MR_T1")
            cases.append(brain_test_case(name, dataset_dir, inputs, find_modality(folder, "OT"), box_paths=box))
        except (FileNotFoundError, ValueError) as exc:
            cases.append(brain_test_case(name, dataset_dir, tags, None, failure=str(exc)))
    return cases


def convert(input_root, output_root, *, with_t1: bool = False, num_processes: int = 1, dataset_id: int = DATASET_ID,
            overwrite: bool = False):
    """Convert every case; return ``(RunSummary, dataset folder)``. Resumable; see ``--overwrite``."""
    dataset_dir = Path(output_root) / dataset_folder_name(dataset_id, DATASET_NAME)
    cases = build_cases(input_root, dataset_dir, with_t1=with_t1)
    check_conversion_options(dataset_dir, "Dataset503_ISLES2015", {"with_t1": with_t1}, overwrite=overwrite)
    summary = run_cases(cases, num_processes, desc="ISLES 2015", overwrite=overwrite, remove_orphans=overwrite)
    channels, modalities = brain_channel_names(with_t1)
    write_dataset_json(
        dataset_dir, channel_names=channels, modalities=modalities,
        labels={"background": 0, "lesion": 1}, num_training=0, file_ending=".nii.gz",
        description="ISLES 2015 SISS training cases as an anomaly-localisation TEST set (numTraining 0, no "
                    "imagesTr): predict imagesTs with the Dataset501_HCP models. Preprocessed like HCP "
                    "(z-score in brain, crop, pad to even, downsample x2).",
        label_meaning="labelsTs: 1 = ischaemic stroke lesion (OT != 0); brainmasksTs: 1 = brain (nnunet_anomaly evaluate "
                      "reports its numbers inside it beside the paper's whole-canvas numbers)",
        crop_info="crop_info/<case>.json: shapes, bbox, padding and output affine",
        licence="ISLES 2015 challenge data terms (registration at isles-challenge.org / SMIR); cite the ISLES 2015 "
                "paper; do not redistribute",
    )
    return summary, dataset_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="Dataset503_ISLES2015", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, input_help="ISLES 2015 SISS training folder (numbered case folders)")
    parser.add_argument("--with-t1", action="store_true", help="also write T1 as channel 0001 (match the HCP model)")
    parser.add_argument("-d", "--dataset-id", type=int, default=DATASET_ID)
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, resolve_output_root(args.output), with_t1=args.with_t1,
                                          num_processes=args.num_processes, dataset_id=args.dataset_id,
                                          overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
