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
With ``--ddad-split paper`` (the default) they are used as the paper and its code
(``multitask_method/data/vindr_cxr.py``) use them: only images that all three radiologists labelled
"No finding" (``annotations/image_labels_train.csv``) stay healthy; the DDAD training and healthy test
lists lose the others (52 and 10 in VinDr 1.0.0) and are refilled to 4000 and 1000 from the other
unanimously healthy training images, in sorted order: the first ones for training, the last ones for
testing. ``--ddad-split ddad`` keeps DDAD's lists as they are.
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
    check_conversion_options,
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
DDAD_SPLIT_MODES = ("paper", "ddad")
REQUIRED_COLUMNS = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")
#: radiologists who read every VinDr training image; "fully healthy" = all of them said "No finding"
N_READERS = 3

__all__ = ["load_ddad_split", "read_fully_healthy", "paper_ddad_split", "read_annotations", "find_dicom",
           "convert_radiograph", "build_cases", "convert", "main"]


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


def read_fully_healthy(path: str | Path) -> list[str]:
    """Image ids that every radiologist labelled "No finding" in VinDr's ``image_labels_train.csv``, sorted.

    The file has one row per (image, radiologist) with a 0/1 column per label; an image is fully
    healthy when its "No finding" column sums to 3, as ``vindr_cxr.py`` counts it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing per-image label file: {path} (VinDr's annotations/image_labels_train.csv; "
                                "the paper's DDAD split needs it; --ddad-split ddad uses DDAD's lists as they are)")
    votes: dict[str, int] = defaultdict(int)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("image_id", HEALTHY_CLASS) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; VinDr's layout is image_id, rad_id, one 0/1 "
                             "column per label (including 'No finding')")
        for line, row in enumerate(reader, start=2):
            image_id = row["image_id"].strip()
            try:
                vote = int(float(row[HEALTHY_CLASS]))
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: 'No finding' of {image_id} is {row[HEALTHY_CLASS]!r}, "
                                 "not 0 or 1") from None
            votes[image_id] += vote
    return sorted(image_id for image_id, count in votes.items() if count == N_READERS)


def paper_ddad_split(ddad: dict[str, list[str]], fully_healthy) -> dict[str, list[str]]:
    """The DDAD split as the paper uses it: healthy lists keep only fully healthy images, refilled.

    The DDAD training and healthy test lists drop the images that not every radiologist labelled
    "No finding"; each is refilled to its original length from the other fully healthy images (sorted
    by id): the training list from the first of them, the test list from the last, so the two never
    overlap (``multitask_method/data/vindr_cxr.py``). The abnormal test list is unchanged.

    Returns
    -------
    dict
        ``train``, ``test_healthy``, ``test_abnormal`` and, for the record, ``dropped_train``,
        ``dropped_test``, ``added_train``, ``added_test``.

    Examples
    --------
    >>> ddad = {"train": ["a", "b", "x"], "test_healthy": ["c", "y"], "test_abnormal": ["z"]}
    >>> split = paper_ddad_split(ddad, ["a", "b", "c", "d", "e", "f"])
    >>> split["train"], split["test_healthy"], split["dropped_train"], split["added_test"]
    (['a', 'b', 'd'], ['c', 'f'], ['x'], ['f'])
    """
    healthy = set(fully_healthy)
    train = [s for s in ddad["train"] if s in healthy]
    test = [s for s in ddad["test_healthy"] if s in healthy]
    used = set(train) | set(test)
    extra = [s for s in sorted(healthy) if s not in used]
    n_train, n_test = len(ddad["train"]) - len(train), len(ddad["test_healthy"]) - len(test)
    if len(extra) <= n_train + n_test:
        raise ValueError(f"only {len(extra)} other fully healthy images to refill {n_train} training and {n_test} "
                         "test images without overlap; is image_labels_train.csv complete?")
    added_train, added_test = extra[:n_train], (extra[-n_test:] if n_test else [])
    abnormal_healthy = sorted(healthy & set(ddad["test_abnormal"]))
    if abnormal_healthy:
        raise ValueError(f"{len(abnormal_healthy)} DDAD abnormal test images are labelled 'No finding' by every "
                         f"radiologist (e.g. {', '.join(abnormal_healthy[:3])}); the label file does not match VinDr")
    return {"train": train + added_train, "test_healthy": test + added_test, "test_abnormal": list(ddad["test_abnormal"]),
            "dropped_train": [s for s in ddad["train"] if s not in healthy],
            "dropped_test": [s for s in ddad["test_healthy"] if s not in healthy],
            "added_train": added_train, "added_test": added_test}


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
                test_annotations=None, ddad_split: str = "paper", image_labels=None) -> list[Case]:
    """One case per image of the chosen `splits`; annotation CSVs are read (and checked) up front.

    `ddad_split` 'paper' (default) applies :func:`paper_ddad_split` with the fully healthy images of
    `image_labels` (default ``<root>/annotations/image_labels_train.csv``); 'ddad' uses DDAD's lists.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VinDr-CXR input folder does not exist: {root}")
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; choose from {SPLITS}")
    if ddad_split not in DDAD_SPLIT_MODES:
        raise ValueError(f"unknown DDAD split {ddad_split!r}; choose one of {DDAD_SPLIT_MODES}")
    ddad = load_ddad_split(split_json)
    if ddad_split == "paper" and {"ddad_train", "ddad_test"} & set(splits):
        labels_csv = Path(image_labels) if image_labels else root / "annotations" / "image_labels_train.csv"
        ddad = paper_ddad_split(ddad, read_fully_healthy(labels_csv))
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
            split_json=None, train_annotations=None, test_annotations=None, ddad_split: str = "paper",
            image_labels=None, overwrite: bool = False):
    """Convert the chosen splits; return ``(RunSummary, dataset folder)``. Resumable; see ``--overwrite``."""
    dataset_dir = Path(output_root) / dataset_folder_name(dataset_id, DATASET_NAME)
    cases = build_cases(input_root, dataset_dir, splits=splits, split_json=split_json,
                        train_annotations=train_annotations, test_annotations=test_annotations,
                        ddad_split=ddad_split, image_labels=image_labels)
    # --splits adds cases; everything else changes what a case holds or which images a split has
    check_conversion_options(dataset_dir, "Dataset504_VinDrCXR",
                             {"size": SIZE, "ddad_split": ddad_split, "split_json": split_json}, overwrite=overwrite)
    summary = run_cases(cases, num_processes, desc="VinDr-CXR", overwrite=overwrite, remove_orphans=overwrite)
    num_training = sum(case.done() for case in cases if case.name.startswith("imagesTr/"))
    if not any(case.name.startswith("imagesTr/") for case in cases):  # training split not in this run
        num_training = len(list((dataset_dir / "imagesTr").glob("*_0000.nii.gz")))
    write_dataset_json(
        dataset_dir, channel_names={0: "noNorm"}, labels={"background": 0, "anomaly_region": 1},
        num_training=num_training, file_ending=".nii.gz",
        description="VinDr-CXR with the DDAD split: windowed, MONOCHROME1-inverted, histogram-equalised, [-1, 1], "
                    "256x256 2D NIfTI (float32; channel noNorm keeps the paper's intensities).",
        ddad_split=("paper: DDAD's healthy lists without the images not every radiologist labelled 'No finding', "
                    "refilled from the other unanimously healthy training images (first ones for training, last "
                    "ones for testing), as multitask_method/data/vindr_cxr.py" if ddad_split == "paper"
                    else "ddad: DDAD's lists as published"),
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
    parser.add_argument("--ddad-split", choices=DDAD_SPLIT_MODES, default="paper",
                        help="paper (default): keep only images all 3 radiologists labelled 'No finding' and refill "
                             "DDAD's healthy lists as the paper's code does (needs image_labels_train.csv); "
                             "ddad: DDAD's lists as published")
    parser.add_argument("--image-labels", default=None,
                        help="default: <input>/annotations/image_labels_train.csv (for --ddad-split paper)")
    parser.add_argument("-d", "--dataset-id", type=int, default=DATASET_ID)
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, resolve_output_root(args.output), splits=tuple(args.splits),
                                          num_processes=args.num_processes, dataset_id=args.dataset_id,
                                          split_json=args.split_json, train_annotations=args.train_annotations,
                                          test_annotations=args.test_annotations, ddad_split=args.ddad_split,
                                          image_labels=args.image_labels, overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
