"""Convert a folder of your own radiographs (DICOM, PNG or JPEG) to an nnU-Net dataset (2D), as Dataset504.

Input:

* ``-i TRAIN_DIR``: healthy radiographs for training, one file per image: DICOM (``.dcm``,
  ``.dicom``, or no suffix with DICOM's ``DICM`` marker), PNG or JPEG (8 or 16 bit). The file stem
  is the case name. Other files are listed once and left alone; sub-folders are not searched.
* ``--test TEST_DIR`` (optional): test radiographs, with their truth from
  ``--test-masks MASK_DIR``: one pixel mask per test image with the same stem (PNG, or DICOM;
  non-zero = anomaly, all zero = a healthy image; the image's size), written to
  ``imagesTs``/``labelsTs``; or
  ``--test-labels CSV``: image-level labels, columns ``case,label`` (0 = healthy, 1 = abnormal),
  written to ``imagesTs_imagelevel``/``labelsTs_imagelevel``, where the mask of an abnormal image is
  the whole image: its sample-wise scores are right, its pixel-wise scores mean nothing.
  With both, every image needs a mask and the CSV must agree with it (a non-empty mask for 1).

Per image, the preprocessing of Dataset504 (the reference's ``vindr_cxr_preproc.py``,
:func:`nnunet_anomaly.conversion.preprocess_radiograph_pixels`): DICOM through its modality LUT and
window (when both window tags exist), bicubic anti-aliased resize to 512 x 512, histogram equalisation
(256 bins), inversion for MONOCHROME1, [-1, 1], bicubic anti-aliased resize to ``--size`` (256). PNG
and JPEG files have no window and are read as MONOCHROME2 (bright = dense, as they are displayed);
their EXIF orientation is applied. A colour (RGB/RGBA) file becomes one grey channel: exactly its
first channel when R = G = B (the usual radiograph export), otherwise the luma 0.299 R + 0.587 G +
0.114 B, and any alpha channel is dropped (:func:`nnunet_anomaly.conversion.radiograph_to_grey`).
Like Dataset504, every image is squeezed to a square whatever its aspect ratio; a mask is resized the
same way (:func:`nnunet_anomaly.conversion.resize_mask`: area-preserving, and no lesion disappears).

Output (2D NIfTI, float32, channel ``noNorm``; nnU-Net's SimpleITKIO reads it as a 2D case):
``imagesTr``/``labelsTr`` (label = the whole image: anomalies may be placed anywhere, as in the
reference), the test folders above, ``dataset.json`` and ``conversion.json``. Resumable (finished
cases are skipped), the sources are only read, every file is written atomically, and each bad file
(unreadable, not 2D, a mask of another size, a missing mask or label) is one ``FAILED`` line while the
other cases go on.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from nnunet_anomaly.conversion import (
    RADIOGRAPH_SUFFIXES,
    Case,
    add_common_arguments,
    check_conversion_options,
    dataset_folder_name,
    is_dicom_file,
    preprocess_radiograph_pixels,
    read_radiograph,
    resize_mask,
    resolve_output_root,
    run_cases,
    run_conversion,
    write_dataset_json,
    write_image_2d,
)

DATASET_ID = 505
DATASET_NAME = "Radiographs"
SIZE = 256
#: label values accepted in --test-labels, and what they mean
LABEL_VALUES = {"0": 0, "1": 1}

__all__ = ["find_radiographs", "read_image_labels", "convert_radiograph_file", "build_cases", "convert", "main"]


def find_radiographs(folder: str | Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """The radiograph files of `folder` by case name (file stem), and the other files.

    A case name with more than one file (``a.png`` and ``a.dcm``) keeps all of them, so that the
    caller can report the clash. Hidden files are ignored; sub-folders are not searched.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.PNG", "a.dcm", "a.jpg", "notes.txt", ".DS_Store"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> found, other = find_radiographs(folder)
    >>> {case: [p.name for p in paths] for case, paths in found.items()}, [p.name for p in other]
    ({'a': ['a.dcm', 'a.jpg'], 'b': ['b.PNG']}, ['notes.txt'])
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder does not exist: {folder}")
    found: dict[str, list[Path]] = defaultdict(list)
    other = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() in RADIOGRAPH_SUFFIXES or (not path.suffix and is_dicom_file(path)):
            found[path.stem if path.suffix else path.name].append(path)
        else:
            other.append(path)
    return dict(sorted(found.items())), other


def read_image_labels(path: str | Path) -> dict[str, int]:
    """``{case: 0 or 1}`` from a CSV with the columns ``case`` and ``label``; errors name the line.

    Examples
    --------
    >>> import tempfile
    >>> csv_file = Path(tempfile.mkdtemp()) / "labels.csv"
    >>> _ = csv_file.write_text("case,label\\npatient1,0\\npatient2, 1\\n")
    >>> read_image_labels(csv_file)
    {'patient1': 0, 'patient2': 1}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing label file: {path}")
    labels: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [name.strip() for name in reader.fieldnames or []]
        if "case" not in fields or "label" not in fields:
            raise ValueError(f"{path}: needs the columns 'case' and 'label' (0 = healthy, 1 = abnormal); "
                             f"found {fields}")
        for line, row in enumerate(reader, start=2):
            row = {(key or "").strip(): (value or "").strip() for key, value in row.items()}
            case, value = row["case"], row["label"]
            if not case:
                raise ValueError(f"{path}, line {line}: empty case name")
            if value not in LABEL_VALUES:
                raise ValueError(f"{path}, line {line}: label of {case!r} is {value!r}; use 0 (healthy) or 1 (abnormal)")
            if case in labels:
                raise ValueError(f"{path}, line {line}: case {case!r} appears twice")
            labels[case] = LABEL_VALUES[value]
    return labels


def convert_radiograph_file(*, source: str, image_path: str, label_path: str, whole_image: bool = False,
                            mask_source: str | None = None, image_label: int | None = None,
                            size: int = SIZE) -> None:
    """Preprocess one radiograph and write its 2D NIfTI image and label (the image last).

    The label is the whole image (`whole_image`, training), the resized pixel mask of `mask_source`
    (which must have the image's size, and agree with `image_label` when that is given), or the
    image-level `image_label` alone (1: the whole image, 0: empty).
    """
    pixels, info = read_radiograph(source)
    try:
        image = preprocess_radiograph_pixels(pixels, window=info["window"],
                                             photometric=info["photometric_interpretation"], size=size)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    if whole_image:
        label = np.ones((size, size), np.uint8)
    elif mask_source is not None:
        if Path(mask_source).suffix.lower() in (".jpg", ".jpeg"):
            raise ValueError(f"{mask_source}: a JPEG mask; JPEG compression blurs a mask's edges and adds "
                             "non-zero noise, so save masks as PNG")
        mask, _ = read_radiograph(mask_source)
        if mask.shape != pixels.shape:
            raise ValueError(f"{mask_source}: mask shape {mask.shape} differs from the image's {pixels.shape} "
                             f"({source})")
        if image_label is not None and bool(image_label) != bool(mask.any()):
            state = "is empty" if image_label else "marks an anomaly"
            raise ValueError(f"{mask_source}: the mask {state} but --test-labels gives {image_label} for this case")
        label = resize_mask(mask, size=size)
    elif image_label is not None:
        label = np.full((size, size), int(image_label), np.uint8)
    else:
        raise ValueError("convert_radiograph_file needs whole_image, mask_source or image_label")
    write_image_2d(label_path, label)
    write_image_2d(image_path, image)


def _fail(message: str) -> None:
    raise ValueError(message)


def _case(name: str, dataset_dir: Path, images: str, labels: str, sources: list[Path], **kwargs) -> Case:
    image = dataset_dir / images / f"{name}_0000.nii.gz"
    label = dataset_dir / labels / f"{name}.nii.gz"
    if len(sources) > 1:
        clash = ", ".join(p.name for p in sources)
        return Case(f"{images}/{name}", (image, label), _fail,
                    {"message": f"{sources[0].parent}: several files for case {name!r} ({clash}); rename or remove one"})
    return Case(f"{images}/{name}", (image, label), convert_radiograph_file,
                dict(source=str(sources[0]), image_path=str(image), label_path=str(label), **kwargs))


def build_cases(train_dir, dataset_dir: Path, *, test_dir=None, test_masks=None, test_labels=None,
                size: int = SIZE) -> tuple[list[Case], dict[str, str], list[Path]]:
    """The cases, the problems that belong to no case, and the ignored files.

    A problem of one case found while listing (two files for one case, a test image without its mask
    or CSV row) makes that case fail with one line when the run reaches it, so every other case is
    still converted. A CSV row or a mask without an image is returned as ``{name: message}``.
    """
    dataset_dir = Path(dataset_dir)
    if (test_masks is not None or test_labels is not None) and test_dir is None:
        raise ValueError("--test-masks and --test-labels describe the images of --test; pass --test TEST_DIR too")
    if test_dir is not None and test_masks is None and test_labels is None:
        raise ValueError("test images need their truth: --test-masks MASK_DIR (pixel masks, same file stems) "
                         "and/or --test-labels CSV (case,label with 0 = healthy, 1 = abnormal)")
    train, ignored = find_radiographs(train_dir)
    unmatched: dict[str, str] = {}
    if not train:
        raise ValueError(f"no radiographs in {train_dir} (looked for {', '.join(RADIOGRAPH_SUFFIXES)} and DICOM "
                         "files without a suffix)")
    cases = [_case(name, dataset_dir, "imagesTr", "labelsTr", paths, whole_image=True, size=size)
             for name, paths in train.items()]
    if test_dir is None:
        return cases, unmatched, ignored
    tests, more_ignored = find_radiographs(test_dir)
    ignored += more_ignored
    if not tests:
        raise ValueError(f"no radiographs in the test folder {test_dir}")
    labels = read_image_labels(test_labels) if test_labels is not None else None
    masks = None
    if test_masks is not None:
        masks, mask_others = find_radiographs(test_masks)
        ignored += mask_others
    images, label_folder = ("imagesTs", "labelsTs") if masks is not None else ("imagesTs_imagelevel",
                                                                                "labelsTs_imagelevel")
    for name, paths in tests.items():
        kwargs = dict(size=size, image_label=None if labels is None else labels.get(name))
        problem = None
        if labels is not None and name not in labels:
            problem = f"{paths[0]}: no row for case {name!r} in {test_labels}"
        if masks is not None:
            if name not in masks:
                problem = problem or f"{paths[0]}: no mask {name}.png in {test_masks} (an all-zero mask marks a healthy image)"
            elif len(masks[name]) > 1:
                problem = problem or (f"{test_masks}: several masks for case {name!r} "
                                      f"({', '.join(p.name for p in masks[name])}); rename or remove one")
            else:
                kwargs["mask_source"] = str(masks[name][0])
        case = _case(name, dataset_dir, images, label_folder, paths, **kwargs)
        if problem is not None:
            case = Case(case.name, case.outputs, _fail, {"message": problem})
        cases.append(case)
    for name in sorted(set(labels or {}) - set(tests)):
        unmatched[f"test-labels/{name}"] = f"{test_labels}: case {name!r} has a label but no image in {test_dir}"
    for name, paths in (masks or {}).items():
        if name not in tests:
            unmatched[f"test-masks/{name}"] = f"{paths[0]}: a mask without an image {name}.* in {test_dir}"
    return cases, unmatched, ignored


def convert(train_dir, output_root, *, test_dir=None, test_masks=None, test_labels=None, size: int = SIZE,
            num_processes: int = 1, dataset_id: int = DATASET_ID, name: str = DATASET_NAME,
            overwrite: bool = False):
    """Convert the folders; return ``(RunSummary, dataset folder)``. Resumable; see ``--overwrite``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"dataset name {name!r}: use letters, digits, '_' and '-' (nnU-Net's folder is Dataset{dataset_id:03d}_NAME)")
    if size < 16:
        raise ValueError(f"--size must be at least 16 pixels, got {size}")
    dataset_dir = Path(output_root) / dataset_folder_name(dataset_id, name)
    cases, unmatched, ignored = build_cases(train_dir, dataset_dir, test_dir=test_dir, test_masks=test_masks,
                                 test_labels=test_labels, size=size)
    if ignored:
        shown = ", ".join(str(p) for p in ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        print(f"ignored {len(ignored)} file(s) that are not DICOM, PNG or JPEG: {shown}", file=sys.stderr)
    truth = "masks" if test_masks is not None else ("image-level" if test_labels is not None else None)
    check_conversion_options(dataset_dir, "Dataset505_Radiographs", {"size": size, "test_truth": truth},
                             overwrite=overwrite)
    summary = run_cases(cases, num_processes, desc="radiographs", overwrite=overwrite, remove_orphans=overwrite)
    summary.failed.update(unmatched)  # reported like a failed case: one line each, exit code 1
    num_training = sum(case.done() for case in cases if case.name.startswith("imagesTr/"))
    test_sets = {}
    if truth == "masks":
        test_sets["imagesTs"] = "your test radiographs with pixel masks (labelsTs: 1 = anomaly, all zero = healthy)"
    elif truth == "image-level":
        test_sets["imagesTs_imagelevel"] = (
            "your test radiographs with image-level labels only (labelsTs_imagelevel: 1 everywhere = abnormal, "
            "all zero = healthy): read the sample-wise scores; the pixel-wise ones treat a whole abnormal image as "
            "its lesion and mean nothing")
    write_dataset_json(
        dataset_dir, channel_names={0: "noNorm"}, labels={"background": 0, "anomaly_region": 1},
        num_training=num_training, file_ending=".nii.gz",
        description=f"radiographs from {Path(train_dir).name}: Dataset504's preprocessing (DICOM modality LUT and "
                    f"window, histogram-equalised, MONOCHROME1 inverted, [-1, 1]), {size}x{size} 2D NIfTI (float32; "
                    "channel noNorm keeps these intensities). PNG/JPEG: no window, read as MONOCHROME2; colour "
                    "files made grey.",
        label_meaning="labelsTr: 1 = the whole image (healthy training data; anomalies may be placed anywhere, as "
                      "in the reference)." + (" " + " ".join(f"{k}: {v}." for k, v in test_sets.items())
                                              if test_sets else ""),
        test_sets=test_sets,
    )
    return summary, dataset_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="Dataset505_Radiographs", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, input_help="folder of healthy training radiographs (DICOM, PNG, JPEG)")
    parser.add_argument("--test", default=None, metavar="TEST_DIR", help="folder of test radiographs (optional)")
    parser.add_argument("--test-masks", default=None, metavar="MASK_DIR",
                        help="pixel masks of the test images, same file stems (PNG or DICOM; non-zero = anomaly)")
    parser.add_argument("--test-labels", default=None, metavar="CSV",
                        help="image-level labels of the test images: columns case,label (0 healthy, 1 abnormal)")
    parser.add_argument("--size", type=int, default=SIZE, help=f"output side in pixels (default {SIZE}, the paper's)")
    parser.add_argument("-d", "--dataset-id", type=int, default=DATASET_ID, help=f"default {DATASET_ID}")
    parser.add_argument("--name", default=DATASET_NAME, help=f"dataset name (default {DATASET_NAME}): "
                        "the folder is DatasetNNN_NAME")
    args = parser.parse_args(argv)
    return run_conversion(lambda: convert(args.input, resolve_output_root(args.output), test_dir=args.test,
                                          test_masks=args.test_masks, test_labels=args.test_labels, size=args.size,
                                          num_processes=args.num_processes, dataset_id=args.dataset_id,
                                          name=args.name, overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
