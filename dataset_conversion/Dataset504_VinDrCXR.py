"""Convert VinDr-CXR (DICOMs + annotation CSVs) to ``Dataset504_VinDrCXR`` with the DDAD split (2D).

Input: the VinDr-CXR release (PhysioNet, credentialed access): ``<root>/train/<image_id>.dicom``,
``<root>/test/<image_id>.dicom``, ``<root>/annotations/annotations_train.csv`` and
``annotations_test.csv`` with the columns ``image_id, rad_id, class_name, x_min, y_min, x_max, y_max,
class_id`` (``rad_id`` may be absent in the consensus test file; "No finding" rows have empty boxes).

Per image, the reference's ``vindr_cxr_preproc.py``: window clipping when WindowCenter/WindowWidth
exist, histogram equalisation, MONOCHROME1 inversion, [-1, 1], anti-aliased resize to 256 x 256
(:func:`nnunet_anomaly.conversion.preprocess_radiograph`). Boxes are scaled to 256 and their union over
every radiologist and every abnormal class is the anomaly mask.

Output format: 2D NIfTI (``.nii.gz``, float32), which keeps the paper's [-1, 1] intensities exactly
(a 16-bit PNG cannot) and which nnU-Net's ``SimpleITKIO`` reads as a 2D case of shape (1, 1, 256, 256);
the channel is called ``noNorm`` so nnU-Net keeps those intensities.

* ``imagesTr``/``labelsTr``: the DDAD training set (4000 healthy images); label = the WHOLE image
  (1 everywhere): the reference places anomalies anywhere in a radiograph, and nnU-Net needs a
  non-empty label.
* ``imagesTs``/``labelsTs``: the DDAD test set (1000 healthy with empty masks + 1000 abnormal with
  box masks, all from VinDr's training split).
* ``imagesTs_vindrtest``/``labelsTs_vindrtest``: every image of VinDr's official test set with the
  consensus boxes.

The split lists ship with this package (``nnunet_anomaly/data/ddad_split.json``, MIT licence beside it).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np

from nnunet_anomaly.conversion import (
    Case,
    add_common_arguments,
    boxes_to_mask,
    dataset_folder_name,
    run_conversion,
    preprocess_radiograph,
    read_dicom,
    resolve_output_root,
    run_cases,
    write_dataset_json,
    write_image_2d,
)

DATASET_ID = 504
DATASET_NAME = "VinDrCXR"
SIZE = 256
HEALTHY_CLASS = "No finding"
SPLITS = ("ddad_train", "ddad_test", "vindr_test")
REQUIRED_COLUMNS = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")

__all__ = ["load_ddad_split", "read_annotations", "find_dicom", "convert_radiograph", "build_cases",
           "convert", "main"]


def load_ddad_split(path: str | Path | None = None) -> dict[str, list[str]]:
    """The DDAD split as image ids: ``{"train": [...4000], "test_healthy": [...], "test_abnormal": [...]}``.

    `path` defaults to the copy shipped with the package.

    Examples
    --------
    >>> split = load_ddad_split()
    >>> len(split["train"]), len(split["test_healthy"]), len(split["test_abnormal"])
    (4000, 1000, 1000)
    """
    if path is None:
        text = resources.files("nnunet_anomaly").joinpath("data", "ddad_split.json").read_text(encoding="utf-8")
        source = "the packaged ddad_split.json"
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"missing split file: {path}")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        raw = json.loads(text)
        split = {"train": raw["train"]["0"], "test_healthy": raw["test"]["0"], "test_abnormal": raw["test"]["1"]}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{source} is not a DDAD split (expected train/0, test/0, test/1 lists): {exc}") from exc
    return {key: [Path(str(name)).stem for name in names] for key, names in split.items()}


def read_annotations(path: str | Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Abnormal boxes per image id from a VinDr annotation CSV (every image id appears, maybe with [])."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing annotation file: {path}")
    boxes: dict[str, list] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; VinDr's layout is image_id, rad_id, class_name, "
                             "x_min, y_min, x_max, y_max, class_id")
        for line, row in enumerate(reader, start=2):
            image_id = row["image_id"].strip()
            if not image_id:
                raise ValueError(f"{path}, line {line}: empty image_id")
            boxes[image_id]  # register healthy images too
            if row["class_name"].strip() == HEALTHY_CLASS:
                continue
            try:
                box = tuple(float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: finding {row['class_name']!r} of {image_id} has no valid "
                                 f"box ({[row[k] for k in ('x_min', 'y_min', 'x_max', 'y_max')]})") from None
            if box[2] < box[0] or box[3] < box[1] or not np.isfinite(box).all():
                raise ValueError(f"{path}, line {line}: box {box} of {image_id} has max < min")
            boxes[image_id].append(box)
    return dict(boxes)


def find_dicom(folder: Path, image_id: str) -> Path:
    """``<folder>/<image_id>.dicom`` (VinDr's suffix) or ``.dcm``; the .dicom path if neither exists."""
    for suffix in (".dicom", ".dcm"):
        if (folder / f"{image_id}{suffix}").is_file():
            return folder / f"{image_id}{suffix}"
    return folder / f"{image_id}.dicom"


def convert_radiograph(*, dicom_path: str, image_path: str, label_path: str, boxes=None, whole_image: bool = False,
                       size: int = SIZE) -> None:
    """Preprocess one DICOM and write its 2D NIfTI image and mask (the image last)."""
    ds = read_dicom(dicom_path)
    try:
        image, info = preprocess_radiograph(ds, size=size)
    except ValueError as exc:
        raise ValueError(f"{dicom_path}: {exc}") from exc
    if whole_image:
        mask = np.ones((size, size), np.uint8)
    else:
        mask = boxes_to_mask(boxes or [], info["original_shape"], size=size)
    write_image_2d(label_path, mask)
    write_image_2d(image_path, image)


def build_cases(root, dataset_dir: Path, *, splits=SPLITS, split_json=None, train_annotations=None,
                test_annotations=None) -> list[Case]:
    """One case per image of the chosen `splits`; annotation CSVs are read (and checked) up front."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VinDr-CXR input folder does not exist: {root}")
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; choose from {SPLITS}")
    ddad = load_ddad_split(split_json)
    train_csv = Path(train_annotations) if train_annotations else root / "annotations" / "annotations_train.csv"
    test_csv = Path(test_annotations) if test_annotations else root / "annotations" / "annotations_test.csv"
    cases: list[Case] = []

    def add(image_id, folder, images, labels, boxes=None, whole=False):
        image = dataset_dir / images / f"{image_id}_0000.nii.gz"
        label = dataset_dir / labels / f"{image_id}.nii.gz"
        kwargs = dict(dicom_path=str(find_dicom(root / folder, image_id)), image_path=str(image),
                      label_path=str(label), boxes=boxes, whole_image=whole)
        cases.append(Case(f"{images}/{image_id}", (image, label), convert_radiograph, kwargs))

    if "ddad_train" in splits:
        for image_id in ddad["train"]:
            add(image_id, "train", "imagesTr", "labelsTr", whole=True)
    if "ddad_test" in splits:
        train_boxes = read_annotations(train_csv)
        for image_id in ddad["test_healthy"]:
            add(image_id, "train", "imagesTs", "labelsTs", boxes=[])
        for image_id in ddad["test_abnormal"]:
            if image_id not in train_boxes:
                raise ValueError(f"{train_csv}: no annotation rows for DDAD test image {image_id}")
            add(image_id, "train", "imagesTs", "labelsTs", boxes=train_boxes[image_id])
    if "vindr_test" in splits:
        for image_id, boxes in sorted(read_annotations(test_csv).items()):
            add(image_id, "test", "imagesTs_vindrtest", "labelsTs_vindrtest", boxes=boxes)
    return cases


def convert(input_root, output_root, *, splits=SPLITS, num_processes: int = 1, dataset_id: int = DATASET_ID,
            split_json=None, train_annotations=None, test_annotations=None):
    """Convert the chosen splits; return ``(RunSummary, dataset folder)``. Resumable."""
    dataset_dir = Path(output_root) / dataset_folder_name(dataset_id, DATASET_NAME)
    cases = build_cases(input_root, dataset_dir, splits=splits, split_json=split_json,
                        train_annotations=train_annotations, test_annotations=test_annotations)
    summary = run_cases(cases, num_processes, desc="VinDr-CXR")
    num_training = len(list((dataset_dir / "labelsTr").glob("*.nii.gz")))
    write_dataset_json(
        dataset_dir, channel_names={0: "noNorm"}, labels={"background": 0, "anomaly_region": 1},
        num_training=num_training, file_ending=".nii.gz",
        description="VinDr-CXR with the DDAD split: windowed, MONOCHROME1-inverted, histogram-equalised, [-1, 1], "
                    "256x256 2D NIfTI (float32; channel noNorm keeps the paper's intensities).",
        label_meaning="labelsTr: 1 = the whole image (healthy training data; anomalies may be placed anywhere, as in "
                      "the reference). labelsTs (DDAD test) and labelsTs_vindrtest (official test, consensus): "
                      "1 = union of all abnormal-finding boxes, all-zero for 'No finding' images.",
        test_sets={"imagesTs": "DDAD test: 1000 healthy + 1000 abnormal (VinDr train split)",
                   "imagesTs_vindrtest": "VinDr-CXR official test set (3000 images, consensus boxes)"},
        licence="VinDr-CXR: PhysioNet Credentialed Health Data License 1.5.0 (credentialed access; do not "
                "redistribute). DDAD split lists: MIT (nnunet_anomaly/data/ddad_split.LICENSE).",
    )
    return summary, dataset_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="Dataset504_VinDrCXR", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, input_help="VinDr-CXR root (train/, test/, annotations/)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--split-json", default=None, help="DDAD split json (default: the packaged copy)")
    parser.add_argument("--train-annotations", default=None, help="default: <input>/annotations/annotations_train.csv")
    parser.add_argument("--test-annotations", default=None, help="default: <input>/annotations/annotations_test.csv")
    parser.add_argument("-d", "--dataset-id", type=int, default=DATASET_ID)
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, resolve_output_root(args.output), splits=tuple(args.splits),
                                          num_processes=args.num_processes, dataset_id=args.dataset_id,
                                          split_json=args.split_json, train_annotations=args.train_annotations,
                                          test_annotations=args.test_annotations))


if __name__ == "__main__":
    sys.exit(main())
