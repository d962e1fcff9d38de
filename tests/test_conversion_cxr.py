"""VinDr-CXR conversion on fabricated DICOMs (pydicom FileDataset) and annotation CSVs in VinDr's layout.

Independent truths: a bright rectangle drawn at known pixel coordinates must end up where the
rescaled annotation box puts the mask; MONOCHROME1 must come out as the negative of the same pixels
stored as MONOCHROME2; window clipping must flatten what lies outside the window.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _helpers import write_dicom

from nnunet_anomaly import conversion
from nnunet_anomaly.dataset_conversion import Dataset504_VinDrCXR as vindr

ROWS, COLS = 300, 240
BOX = (60, 90, 120, 180)  # x_min, y_min, x_max, y_max in original pixels (x = column)


def _pixels(rng, bright_box=True):
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    image = 1000 + 3 * rows + 2 * cols + rng.normal(0, 30, (ROWS, COLS))
    if bright_box:
        x0, y0, x1, y1 = BOX
        image[y0:y1, x0:x1] += 2500
    return np.clip(image, 0, 4095).astype(np.uint16)


def _write_csv(path: Path, rows, with_rad=True):
    columns = ["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max", "class_id"]
    if not with_rad:
        columns.remove("rad_id")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.items() if k in columns})


def _finding(image_id, box, rad="R1", name="Nodule/Mass", class_id=8):
    x0, y0, x1, y1 = box
    return dict(image_id=image_id, rad_id=rad, class_name=name, x_min=x0, y_min=y0, x_max=x1, y_max=y1,
                class_id=class_id)


def _healthy(image_id, rad="R1"):
    return dict(image_id=image_id, rad_id=rad, class_name="No finding", x_min="", y_min="", x_max="", y_max="",
                class_id=14)


@pytest.fixture()
def vindr_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "vindr"
    write_dicom(root / "train" / "tr_a.dicom", _pixels(rng, False), window=(2000, 4000))
    write_dicom(root / "train" / "tr_b.dicom", _pixels(rng, False), photometric="MONOCHROME1")
    write_dicom(root / "train" / "te_h.dicom", _pixels(rng, False))
    write_dicom(root / "train" / "te_a.dicom", _pixels(rng, True))
    write_dicom(root / "test" / "vt_1.dicom", _pixels(rng, True), photometric="MONOCHROME1", window=(2500, 5000))
    write_dicom(root / "test" / "vt_2.dicom", _pixels(rng, False))
    _write_csv(root / "annotations" / "annotations_train.csv", [
        _healthy("tr_a", "R1"), _healthy("tr_a", "R2"), _healthy("tr_b"), _healthy("te_h"),
        # te_a: two radiologists, overlapping boxes, plus one radiologist's "No finding"
        _finding("te_a", (60, 90, 100, 180), "R1"), _finding("te_a", (80, 90, 120, 150), "R2", "Nodule/Mass"),
        _healthy("te_a", "R3"),
    ])
    _write_csv(root / "annotations" / "annotations_test.csv",
               [_finding("vt_1", BOX, name="Aortic enlargement", class_id=0), _healthy("vt_2")], with_rad=False)
    split = {"train": {"0": ["tr_a.png", "tr_b.png"], "unlabeled": {"0": [], "1": []}},
             "test": {"0": ["te_h.png"], "1": ["te_a.png"]}}
    (root / "split.json").write_text(json.dumps(split))
    return root


def _read(path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    image, props = SimpleITKIO().read_images([str(path)])
    return image, props


def test_preprocess_radiograph_photometric_and_window(tmp_path):
    rng = np.random.default_rng(1)
    pixels = _pixels(rng, True)
    mono2 = pydicom.dcmread(str(write_dicom(tmp_path / "a.dcm", pixels)))
    mono1 = pydicom.dcmread(str(write_dicom(tmp_path / "b.dcm", pixels, photometric="MONOCHROME1")))
    img2, info2 = conversion.preprocess_radiograph(mono2)
    img1, info1 = conversion.preprocess_radiograph(mono1)
    for img in (img1, img2):
        assert img.shape == (256, 256) and img.dtype == np.float32
        assert img.min() >= -1 and img.max() <= 1 and img.min() < -0.95 and img.max() > 0.95
    assert info1["photometric_interpretation"] == "MONOCHROME1" and info2["window"] is None
    assert np.allclose(img1, -img2, atol=1e-5)  # the same stored pixels, inverted
    # the bright rectangle (rows 90-180 of 300, cols 60-120 of 240) is bright in MONOCHROME2
    r0, r1, c0, c1 = 90 * 256 // 300, 180 * 256 // 300, 60 * 256 // 240, 120 * 256 // 240
    assert img2[r0 + 3:r1 - 3, c0 + 3:c1 - 3].mean() > 0.8
    # histogram-equalised: roughly uniform over [-1, 1]
    assert abs(np.median(img2)) < 0.15

    # a narrow window flattens everything above its top: the bright box becomes one flat plateau
    windowed = pydicom.dcmread(str(write_dicom(tmp_path / "c.dcm", pixels, window=(1800, 1200))))
    imgw, infow = conversion.preprocess_radiograph(windowed)
    assert infow["window"] == [1800.0, 1200.0]
    plateau = imgw[r0 + 5:r1 - 5, c0 + 5:c1 - 5]
    assert np.ptp(plateau) < 1e-3 and plateau.mean() > 0.9


def test_vindr_conversion_split_masks_and_nnunet_reader(vindr_root, tmp_path):
    hashes = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in vindr_root.rglob("*") if p.is_file()}
    summary, dataset_dir = vindr.convert(vindr_root, tmp_path / "raw", split_json=vindr_root / "split.json",
                                         ddad_split="ddad")
    assert summary.ok and len(summary.converted) == 6
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in vindr_root.rglob("*") if p.is_file()} == hashes

    meta = json.loads((dataset_dir / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["channel_names"] == {"0": "noNorm"} and meta["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (dataset_dir / "imagesTr").iterdir()) == ["tr_a_0000.nii.gz", "tr_b_0000.nii.gz"]

    image, props = _read(dataset_dir / "imagesTr" / "tr_a_0000.nii.gz")
    assert image.shape == (1, 1, 256, 256) and image.dtype == np.float32
    assert props["spacing"][1:] == [1.0, 1.0] or tuple(props["spacing"][1:]) == (1.0, 1.0)
    assert image.min() >= -1 and image.max() <= 1 and image.max() - image.min() > 1.9
    train_label, _ = _read(dataset_dir / "labelsTr" / "tr_a.nii.gz")
    assert np.all(train_label == 1)  # whole-image label for healthy training images

    healthy, _ = _read(dataset_dir / "labelsTs" / "te_h.nii.gz")
    assert not healthy.any()
    abnormal, _ = _read(dataset_dir / "labelsTs" / "te_a.nii.gz")
    abnormal = abnormal[0, 0]
    # union of R1's (60,90,100,180) and R2's (80,90,120,150): an L-shape; scale 256/240 in x, 256/300 in y
    expected = np.zeros((256, 256), bool)
    for x0, y0, x1, y1 in ((60, 90, 100, 180), (80, 90, 120, 150)):
        expected[round(y0 * 256 / 300):round(y1 * 256 / 300), round(x0 * 256 / 240):round(x1 * 256 / 240)] = True
    assert np.array_equal(abnormal.astype(bool), expected)

    # the official test set goes to its own folders; the mask sits on the bright rectangle
    vt_image, _ = _read(dataset_dir / "imagesTs_vindrtest" / "vt_1_0000.nii.gz")
    vt_mask, _ = _read(dataset_dir / "labelsTs_vindrtest" / "vt_1.nii.gz")
    inside, outside = vt_image[vt_mask > 0], vt_image[vt_mask == 0]
    assert inside.mean() < outside.mean() - 0.5  # MONOCHROME1: the high stored values display dark
    assert not _read(dataset_dir / "labelsTs_vindrtest" / "vt_2.nii.gz")[0].any()

    again, _ = vindr.convert(vindr_root, tmp_path / "raw", split_json=vindr_root / "split.json", ddad_split="ddad")
    assert again.converted == [] and len(again.skipped) == 6

    # nnU-Net accepts the 2D NIfTI layout (raises on any inconsistency)
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(dataset_dir), 1)


def test_vindr_errors_name_the_file(vindr_root, tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("image_id,class_name,x_min\nabc,Nodule/Mass,1\n")
    with pytest.raises(ValueError, match="bad.csv.*missing column"):
        vindr.read_annotations(bad_csv)
    no_box = tmp_path / "nobox.csv"
    _write_csv(no_box, [_finding("x", ("", "", "", ""))])
    with pytest.raises(ValueError, match="nobox.csv, line 2"):
        vindr.read_annotations(no_box)
    with pytest.raises(FileNotFoundError, match="annotations_zzz.csv"):
        vindr.read_annotations(tmp_path / "annotations_zzz.csv")

    # an unreadable DICOM and a missing one fail their own cases, named
    (vindr_root / "train" / "tr_a.dicom").write_bytes(b"garbage")
    (vindr_root / "train" / "tr_b.dicom").unlink()
    summary, _ = vindr.convert(vindr_root, tmp_path / "raw", split_json=vindr_root / "split.json",
                               splits=("ddad_train",), ddad_split="ddad")
    assert set(summary.failed) == {"imagesTr/tr_a", "imagesTr/tr_b"}
    assert "tr_a.dicom" in summary.failed["imagesTr/tr_a"] and "missing" in summary.failed["imagesTr/tr_b"]
    with pytest.raises(ValueError, match="unknown split"):
        vindr.convert(vindr_root, tmp_path / "raw", splits=("nope",))


def test_packaged_ddad_split_and_licence():
    split = vindr.load_ddad_split()
    assert len(split["train"]) == 4000 and len(set(split["train"])) == 4000
    assert not set(split["train"]) & set(split["test_healthy"]) and not set(split["test_healthy"]) & set(
        split["test_abnormal"])
    assert all(len(i) == 32 and "." not in i for i in split["train"][:10])
    from importlib import resources

    assert "MIT" in resources.files("nnunet_anomaly").joinpath("data", "ddad_split.LICENSE").read_text()


def test_boxes_to_mask_rounding_and_thin_boxes():
    mask = conversion.boxes_to_mask([(0, 0, 0.1, 0.1)], (100, 100), size=10)
    assert mask.sum() == 1  # a sub-pixel box still marks one pixel
    mask = conversion.boxes_to_mask([(0, 0, 50, 100), (50, 0, 100, 50)], (100, 100), size=10)
    assert mask.sum() == 50 + 25
