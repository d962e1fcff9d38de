"""Dataset505_Radiographs: a folder of one's own radiographs (DICOM, PNG, JPEG) to an nnU-Net dataset.

Every input is made here: PNG (8 and 16 bit, grey, RGB, RGBA), JPEG, DICOM written with pydicom
(with and without a suffix, MONOCHROME1 and 2, a multi-frame one), a cut-short file, pixel masks and a
label CSV. Independent truths: a bright rectangle drawn at known pixels must come out bright at the
rescaled place, and its mask must mark that place; the same pixels stored as a grey PNG and as an
RGB PNG give the same output; the preprocessing of an array equals Dataset504's of the same DICOM.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from _helpers import write_dicom

from nnunet_anomaly import conversion
from nnunet_anomaly.dataset_conversion import Dataset505_Radiographs as radiographs

ROWS, COLS = 240, 200
#: a bright rectangle in original pixels, off-centre: rows 30..89, columns 120..179
BOX = (slice(30, 90), slice(120, 180))
SIZE = 64  # small outputs keep the test fast; 256 is the default


def _pixels(rng, *, maximum=4095, bright_box=True) -> np.ndarray:
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    image = 0.15 + 0.25 * rows / ROWS + 0.1 * cols / COLS + rng.normal(0, 0.02, (ROWS, COLS))
    if bright_box:
        image[BOX] += 0.5
    return np.clip(image, 0, 1) * maximum


def _hashes(root: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _box_out(size=SIZE):
    """The rectangle's rows and columns on the output grid (the image is squeezed to a square)."""
    return (slice(round(BOX[0].start * size / ROWS), round(BOX[0].stop * size / ROWS)),
            slice(round(BOX[1].start * size / COLS), round(BOX[1].stop * size / COLS)))


@pytest.fixture
def folders(tmp_path):
    """train/ (PNG 8+16 bit, RGB, RGBA, JPEG, DICOM, an extensionless DICOM, a cut PNG, a text file),
    test/ + masks/ (a lesion, a healthy image, a mask of the wrong size, an image without mask)."""
    rng = np.random.default_rng(0)
    train, test, masks = (tmp_path / name for name in ("train", "test", "masks"))
    for folder in (train, test, masks):
        folder.mkdir()
    Image.fromarray(np.round(_pixels(rng, maximum=65535)).astype(np.uint16)).save(train / "png16.png")
    grey8 = np.round(_pixels(rng, maximum=255)).astype(np.uint8)
    Image.fromarray(grey8).save(train / "png8.png")
    Image.fromarray(np.stack([grey8] * 3, axis=-1)).save(train / "rgb.png")
    Image.fromarray(np.dstack([grey8, grey8, grey8, np.full_like(grey8, 255)])).save(train / "rgba.png")
    Image.fromarray(grey8).save(train / "photo.jpg", quality=95)
    write_dicom(train / "cr.dcm", np.round(_pixels(rng)), window=(2000, 4000))
    write_dicom(train / "IM0001", np.round(_pixels(rng)))  # DICOM without a suffix, as exported from a PACS
    (train / "cut.png").write_bytes((train / "png8.png").read_bytes()[:300])
    (train / "notes.txt").write_text("not an image")

    lesion = np.round(_pixels(rng, maximum=255)).astype(np.uint8)
    Image.fromarray(lesion).save(test / "sick.png")
    mask = np.zeros((ROWS, COLS), np.uint8)
    mask[BOX] = 255
    Image.fromarray(mask).save(masks / "sick.png")
    Image.fromarray(np.round(_pixels(rng, maximum=255, bright_box=False)).astype(np.uint8)).save(test / "well.png")
    Image.fromarray(np.zeros((ROWS, COLS), np.uint8)).save(masks / "well.png")
    Image.fromarray(lesion).save(test / "wrongsize.png")
    Image.fromarray(np.zeros((ROWS // 2, COLS), np.uint8)).save(masks / "wrongsize.png")
    Image.fromarray(lesion).save(test / "nomask.png")
    return tmp_path


def _convert(root: Path, **kwargs):
    return radiographs.convert(root / "train", root / "raw", size=SIZE, **kwargs)


def test_folder_of_dicom_png_jpeg_with_masks(folders, capsys):
    sources = [folders / name for name in ("train", "test", "masks")]
    before = [_hashes(folder) for folder in sources]
    summary, dataset = _convert(folders, test_dir=folders / "test", test_masks=folders / "masks")
    assert [_hashes(folder) for folder in sources] == before  # sources untouched, nothing added beside them
    assert "notes.txt" in capsys.readouterr().err  # listed once, left alone

    train_cases = ["IM0001", "cr", "photo", "png16", "png8", "rgb", "rgba"]
    assert sorted(summary.converted) == sorted([f"imagesTr/{c}" for c in train_cases]
                                               + ["imagesTs/sick", "imagesTs/well"])
    # one clear line per bad file, naming it and the reason; the other cases went on
    assert set(summary.failed) == {"imagesTr/cut", "imagesTs/wrongsize", "imagesTs/nomask"}
    assert "cut.png" in summary.failed["imagesTr/cut"] and "incomplete" in summary.failed["imagesTr/cut"]
    assert "wrongsize.png" in summary.failed["imagesTs/wrongsize"] and "(120, 200)" in summary.failed["imagesTs/wrongsize"]
    assert "no mask" in summary.failed["imagesTs/nomask"]
    assert all("\n" not in message for message in summary.failed.values())
    assert not (dataset / "imagesTr" / "cut_0000.nii.gz").exists()  # a failed case leaves nothing

    rows, cols = _box_out()
    for case in train_cases:
        image = _read(dataset / "imagesTr" / f"{case}_0000.nii.gz")
        assert image.shape == (SIZE, SIZE) and image.dtype == np.float32, case
        assert -1 <= image.min() < -0.9 and 0.9 < image.max() <= 1, case
        inside = image[rows, cols][2:-2, 2:-2].mean()  # away from the rectangle's blurred edge
        assert inside > 0.5 and inside > image.mean() + 0.4, f"{case}: the bright rectangle is not where it was"
        label = _read(dataset / "labelsTr" / f"{case}.nii.gz")
        assert label.shape == (SIZE, SIZE) and label.dtype == np.uint8 and (label == 1).all()

    sick = _read(dataset / "labelsTs" / "sick.nii.gz")
    expected = np.zeros((SIZE, SIZE), np.uint8)
    expected[rows, cols] = 1
    assert np.abs(sick.astype(int) - expected).sum() <= 2 * (SIZE // 8)  # at most a rounding row / column
    assert sick[rows, cols][1:-1, 1:-1].all() and sick.sum() > 0.9 * expected.sum()
    assert not _read(dataset / "labelsTs" / "well.nii.gz").any()
    assert _read(dataset / "imagesTs" / "sick_0000.nii.gz").shape == (SIZE, SIZE)

    info = json.loads((dataset / "dataset.json").read_text())
    assert info["channel_names"] == {"0": "noNorm"} and info["file_ending"] == ".nii.gz"
    assert info["labels"] == {"background": 0, "anomaly_region": 1} and info["numTraining"] == len(train_cases)
    assert list(info["test_sets"]) == ["imagesTs"]
    assert not list(dataset.rglob(".nnunet_anomaly_tmp/*"))  # atomic writes left no temporary file


def test_grey_rgb_and_rgba_of_the_same_pixels_give_the_same_image(folders):
    summary, dataset = _convert(folders)
    grey = _read(dataset / "imagesTr" / "png8_0000.nii.gz")
    np.testing.assert_array_equal(_read(dataset / "imagesTr" / "rgb_0000.nii.gz"), grey)
    np.testing.assert_array_equal(_read(dataset / "imagesTr" / "rgba_0000.nii.gz"), grey)
    # channels that differ: ITU-R 601-2 luma, said in the note
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 200
    out, note = conversion.radiograph_to_grey(rgb)
    np.testing.assert_allclose(out, 0.299 * 100 + 0.587 * 50 + 0.114 * 200, rtol=1e-6)
    assert "0.299 R" in note
    _, note = conversion.radiograph_to_grey(np.dstack([rgb, np.zeros((4, 4), np.uint8) + [[0], [255], [255], [255]]]))
    assert "alpha" in note


def test_resumable_finished_cases_skipped_fixed_ones_converted(folders):
    summary, dataset = _convert(folders, test_dir=folders / "test", test_masks=folders / "masks")
    stamps = {p: p.stat().st_mtime_ns for p in dataset.rglob("*.nii.gz")}
    again, _ = _convert(folders, test_dir=folders / "test", test_masks=folders / "masks")
    assert again.converted == [] and sorted(again.skipped) == sorted(summary.converted)
    assert set(again.failed) == set(summary.failed)  # still reported, one line each
    assert {p: p.stat().st_mtime_ns for p in dataset.rglob("*.nii.gz")} == stamps  # not rewritten
    # the user repairs the cut file and adds the missing mask: only those cases run
    (folders / "train" / "cut.png").write_bytes((folders / "train" / "png8.png").read_bytes())
    Image.fromarray(np.zeros((ROWS, COLS), np.uint8)).save(folders / "masks" / "nomask.png")
    third, _ = _convert(folders, test_dir=folders / "test", test_masks=folders / "masks")
    assert sorted(third.converted) == ["imagesTr/cut", "imagesTs/nomask"]
    assert set(third.failed) == {"imagesTs/wrongsize"}
    # another --size would mix two sizes in one folder: refused, unless --overwrite
    with pytest.raises(ValueError, match="other options"):
        radiographs.convert(folders / "train", folders / "raw", size=32)


def test_wrong_dimensionality_and_clashing_files(tmp_path):
    rng = np.random.default_rng(1)
    train = tmp_path / "train"
    write_dicom(train / "good.dcm", np.round(_pixels(rng)))
    write_dicom(train / "cine.dcm", np.round(np.stack([_pixels(rng)] * 2)), frames=2)
    Image.fromarray(np.round(_pixels(rng, maximum=255)).astype(np.uint8)).save(train / "twice.png")
    Image.fromarray(np.round(_pixels(rng, maximum=255)).astype(np.uint8)).save(train / "twice.jpg")
    (train / "fake.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"rubbish")
    summary, dataset = radiographs.convert(train, tmp_path / "raw", size=SIZE)
    assert summary.converted == ["imagesTr/good"]
    assert "single-frame" in summary.failed["imagesTr/cine"] and "cine.dcm" in summary.failed["imagesTr/cine"]
    assert "twice.jpg" in summary.failed["imagesTr/twice"] and "twice.png" in summary.failed["imagesTr/twice"]
    assert "fake.dcm" in summary.failed["imagesTr/fake"]
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 1


def test_image_level_labels_from_a_csv(folders):
    (folders / "labels.csv").write_text("case,label\nsick,1\nwell,0\nwrongsize,1\nghost,0\n")
    summary, dataset = _convert(folders, test_dir=folders / "test", test_labels=folders / "labels.csv")
    assert {"imagesTs_imagelevel/sick", "imagesTs_imagelevel/well", "imagesTs_imagelevel/wrongsize"} <= set(
        summary.converted)
    assert "no row for case 'nomask'" in summary.failed["imagesTs_imagelevel/nomask"]
    assert "'ghost' has a label but no image" in summary.failed["test-labels/ghost"]
    assert (_read(dataset / "labelsTs_imagelevel" / "sick.nii.gz") == 1).all()  # the whole image: sample-wise only
    assert not _read(dataset / "labelsTs_imagelevel" / "well.nii.gz").any()
    assert not (dataset / "labelsTs").exists()
    assert "sample-wise" in json.loads((dataset / "dataset.json").read_text())["test_sets"]["imagesTs_imagelevel"]


def test_csv_and_masks_must_agree(folders):
    (folders / "labels.csv").write_text("case,label\nsick,0\nwell,0\nwrongsize,1\nnomask,1\n")
    summary, _ = radiographs.convert(folders / "train", folders / "raw", size=SIZE, test_dir=folders / "test",
                                     test_masks=folders / "masks", test_labels=folders / "labels.csv")
    assert "imagesTs/well" in summary.converted
    assert "marks an anomaly but --test-labels gives 0" in summary.failed["imagesTs/sick"]


@pytest.mark.parametrize("text, message", [("case,label\na,2\n", "line 2: label of 'a' is '2'"),
                                           ("name,label\na,1\n", "needs the columns"),
                                           ("case,label\na,1\na,0\n", "line 3: case 'a' appears twice")])
def test_bad_label_csv_stops_with_one_line(folders, capsys, text, message):
    (folders / "labels.csv").write_text(text)
    code = radiographs.main(["-i", str(folders / "train"), "-o", str(folders / "raw"), "--test", str(folders / "test"),
                             "--test-labels", str(folders / "labels.csv")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and message in error[-1]


def test_command_line_exit_codes(folders, capsys):
    ok = folders / "ok"
    ok.mkdir()
    Image.fromarray(np.round(_pixels(np.random.default_rng(2), maximum=255)).astype(np.uint8)).save(ok / "a.png")
    assert radiographs.main(["-i", str(ok), "-o", str(folders / "raw"), "--size", "32"]) == 0
    assert "converted 1" in capsys.readouterr().out
    assert radiographs.main(["-i", str(folders / "train"), "-o", str(folders / "raw2"), "--size", "32"]) == 1
    assert "FAILED imagesTr/cut" in capsys.readouterr().out
    assert radiographs.main(["-i", str(ok), "-o", str(folders / "raw3"), "--test", str(folders / "test")]) == 1
    assert "--test-masks" in capsys.readouterr().err


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("window", [None, (1800, 2600)])
def test_array_preprocessing_is_dataset504s(tmp_path, photometric, window):
    """read_radiograph + preprocess_radiograph_pixels give Dataset504's preprocess_radiograph, bit for bit."""
    path = write_dicom(tmp_path / "x.dcm", np.round(_pixels(np.random.default_rng(3))), photometric=photometric,
                       window=window)
    reference, _ = conversion.preprocess_radiograph(conversion.read_dicom(path), size=SIZE)
    pixels, info = conversion.read_radiograph(path)
    assert info["window"] == (None if window is None else list(map(float, window)))
    out = conversion.preprocess_radiograph_pixels(pixels, window=info["window"],
                                                  photometric=info["photometric_interpretation"], size=SIZE)
    np.testing.assert_array_equal(out, reference)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_simpleitk_reads_what_pydicom_cannot_decode_with_the_same_values(tmp_path, monkeypatch, photometric):
    """Pixel data pydicom cannot decode (JPEG lossless without pylibjpeg) go through SimpleITK/GDCM, which
    inverts MONOCHROME1 itself; the values must equal pydicom's."""
    path = write_dicom(tmp_path / "x.dcm", np.round(_pixels(np.random.default_rng(4))), photometric=photometric,
                       window=(2000, 3000))
    expected, expected_info = conversion.read_radiograph(path)

    def cannot_decode(p):
        raise ValueError(f"cannot read DICOM pixel data from {p}: no decoder")

    monkeypatch.setattr(conversion, "read_dicom", cannot_decode)
    pixels, info = conversion.read_radiograph(path)
    assert info["reader"] == "SimpleITK" and expected_info["reader"] == "pydicom"
    assert info["window"] == expected_info["window"] == [2000.0, 3000.0]
    np.testing.assert_array_equal(pixels, expected)


def test_resize_mask_keeps_every_lesion():
    mask = np.zeros((400, 300), np.uint8)
    mask[100:200, 60:180] = 1
    mask[350, 250] = 7  # one pixel: far below half an output pixel
    small = conversion.resize_mask(mask, size=32)
    assert small.dtype == np.uint8 and set(np.unique(small)) == {0, 1}
    assert small[8:16, 7:17].all() and not small[:7].any() and small[28, 26] == 1
    assert abs(int(small.sum()) - 1 - 8 * 12.8) <= 16


def test_docstring_examples_run():
    """dataset_conversion/ is outside pytest's doctest paths, so the script's Examples run here."""
    import doctest

    result = doctest.testmod(radiographs, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
