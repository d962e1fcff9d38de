"""Every reader of ours detects a file cut short, at several points, and fails with one line naming it.

SimpleITK 2.5 reads a gzip stream cut anywhere (and an uncompressed NIfTI shorter than its header
says) without an error and returns short or zero-filled data: a lesion mask cut to 150 bytes reads as
all zero, so its case looked healthy. These tests cut real files of each format we read and check
each reader (the shared check, evaluation, export, conversion, the pools).
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from nnunet_anomaly import _io, cli
from nnunet_anomaly.evaluation import evaluate_folder

sys.path.insert(0, str(Path(__file__).parent))
from test_conversion_cxr import write_dicom  # noqa: E402  (the fabricated-DICOM helper)


def _cuts(size: int) -> list[int]:
    """Cut points: inside the header, the data, and the last bytes (a gzip trailer: CRC and length)."""
    return sorted(n for n in {150, size // 4, size // 2, (9 * size) // 10, size - 8, size - 4, size - 1} if 0 < n < size)


def _cut(path: Path, length: int, out: Path | None = None) -> Path:
    out = out or path.with_name("cut_" + path.name)
    out.write_bytes(path.read_bytes()[:length])
    return out


def _write_volume(path: Path, array: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    volume = (rng.random((12, 20, 16)) > 0.7).astype(np.uint8)
    made = {
        ".nii.gz": _write_volume(tmp_path / "a.nii.gz", volume),
        ".nii": _write_volume(tmp_path / "a.nii", rng.random((12, 20, 16)).astype(np.float32)),
        ".npy": tmp_path / "a.npy",
        ".npz": tmp_path / "a.npz",
        ".png": tmp_path / "a.png",
        ".json": tmp_path / "a.json",
        ".txt.gz": tmp_path / "a.txt.gz",
    }
    np.save(made[".npy"], rng.random((30, 40)).astype(np.float32))
    np.savez_compressed(made[".npz"], probabilities=rng.random((1, 12, 20, 16)).astype(np.float32))
    Image.fromarray((rng.random((64, 48)) * 255).astype(np.uint8)).save(made[".png"])
    made[".json"].write_text(json.dumps({"output_shape": [1, 2, 3], "bbox": [[0, 1]] * 3}))
    made[".txt.gz"].write_bytes(gzip.compress(b"anomaly " * 5000))
    return made


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".npy", ".npz", ".png", ".json", ".txt.gz"])
def test_check_complete_finds_every_cut(files, suffix):
    path = files[suffix]
    assert _io.check_complete(path) == path
    size = path.stat().st_size
    for length in _cuts(size):
        if suffix == ".json" and length >= size - 1:
            continue  # a JSON object cut by its last newline-free brace is caught below
        cut = _cut(path, length, path.with_name(f"cut{length}_{path.name}"))
        with pytest.raises(_io.IncompleteFileError, match=rf"cut{length}_a{suffix.replace('.', '[.]')}: incomplete file"):
            _io.check_complete(cut)
    with pytest.raises(_io.IncompleteFileError):
        _io.check_complete(_cut(path, size - 1, path.with_name("last_" + path.name)))


def test_simpleitk_alone_reads_a_cut_mask_as_healthy(files):
    """Why the check exists: the cut mask reads without error, and reads as (nearly) empty."""
    cut = _cut(files[".nii.gz"], 150)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(cut)))
    assert array.shape == (12, 20, 16) and array.sum() < sitk.GetArrayFromImage(sitk.ReadImage(str(files[".nii.gz"]))).sum()


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".npy", ".npz", ".png"])
def test_read_array_refuses_cut_files(files, suffix):
    path = files[suffix]
    assert _io.read_array(path).size
    for length in _cuts(path.stat().st_size):
        with pytest.raises(ValueError, match="incomplete file"):
            _io.read_array(_cut(path, length))


# -- evaluation ------------------------------------------------------------------------------------
@pytest.fixture
def test_set(tmp_path):
    rng = np.random.default_rng(1)
    gt, pred = tmp_path / "labelsTs", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    for i in range(4):
        mask = np.zeros((12, 20, 16), np.uint8)
        if i:  # an irregular lesion, so that the compressed file is a few hundred bytes long
            mask[2:10, 3:17, 2:14] = rng.random((8, 14, 12)) < 0.6
        _write_volume(gt / f"case_{i}.nii.gz", mask)
        np.savez_compressed(pred / f"case_{i}.npz",
                            probabilities=np.clip(0.5 * mask + rng.random(mask.shape), 0, 1).astype(np.float32)[None])
    return gt, pred


def test_evaluation_refuses_a_cut_lesion_mask_instead_of_scoring_a_healthy_case(test_set, tmp_path, capsys):
    gt, pred = test_set
    assert evaluate_folder(pred, gt, None, progress=False)["n_anomalous_cases"] == 3
    path = gt / "case_2.nii.gz"
    whole = path.read_bytes()
    assert len(whole) > 400 and 150 in _cuts(len(whole))
    for length in _cuts(len(whole)):
        path.write_bytes(whole[:length])
        with pytest.raises(ValueError, match=r"case_2.nii.gz: incomplete file"):
            evaluate_folder(pred, gt, None, progress=False)
    assert cli.main(["evaluate", "-p", str(pred), "-g", str(gt), "-o", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "case_2.nii.gz: incomplete file" in err[0]


def test_evaluation_refuses_a_cut_map(test_set):
    gt, pred = test_set
    path = pred / "case_1.npz"
    whole = path.read_bytes()
    for length in _cuts(len(whole)):
        path.write_bytes(whole[:length])
        with pytest.raises(ValueError, match=r"case_1.npz: incomplete file"):
            evaluate_folder(pred, gt, None, progress=False)


# -- export -------------------------------------------------------------------------------------------
def test_export_refuses_cut_images_and_maps_and_writes_nothing(tmp_path, capsys):
    rng = np.random.default_rng(2)
    images, pred, out = tmp_path / "images", tmp_path / "pred", tmp_path / "out"
    images.mkdir(), pred.mkdir()
    (pred / "plans.json").write_text('{"image_reader_writer": "SimpleITKIO"}')  # as nnUNetv2_predict leaves it
    for case in ("a", "b"):
        _write_volume(images / f"{case}_0000.nii.gz", rng.normal(size=(6, 9, 7)).astype(np.float32))
        np.savez_compressed(pred / f"{case}.npz", probabilities=rng.random((1, 6, 9, 7)).astype(np.float32))
    for victim in (images / "b_0000.nii.gz", pred / "b.npz"):
        whole = victim.read_bytes()
        for length in _cuts(len(whole)):
            victim.write_bytes(whole[:length])
            assert cli.main(["export", "-p", str(pred), "-i", str(images), "-o", str(out), "--no-progress"]) == 1
            err = capsys.readouterr().err
            assert f"{victim.name}: incomplete file" in err and not out.exists()
        victim.write_bytes(whole)
    assert cli.main(["export", "-p", str(pred), "-i", str(images), "-o", str(out), "--no-progress"]) == 0


# -- conversion and pools --------------------------------------------------------------------------------
def test_conversion_readers_refuse_cut_nifti_and_dicom(tmp_path):
    from nnunet_anomaly import conversion

    volume = _write_volume(tmp_path / "t2.nii.gz", np.random.default_rng(3).random((10, 12, 9)).astype(np.float32))
    for length in _cuts(volume.stat().st_size):
        with pytest.raises(ValueError, match=r"cut_t2.nii.gz: incomplete file"):
            conversion.read_nifti(_cut(volume, length))
    dicom = write_dicom(tmp_path / "x.dicom", (np.random.default_rng(4).random((64, 48)) * 4000).astype(np.uint16))
    assert conversion.read_dicom(dicom) is not None
    for length in _cuts(dicom.stat().st_size):
        with pytest.raises(ValueError, match=r"cut_x.dicom"):
            conversion.read_dicom(_cut(dicom, length))


def test_a_cut_subject_fails_alone_with_its_file_named(tmp_path):
    from nnunet_anomaly.conversion import Case, convert_brain_subject, run_cases

    rng = np.random.default_rng(5)
    cases = []
    for name in ("good", "bad"):
        volume = np.zeros((20, 24, 18), np.float32)
        volume[4:16, 5:19, 3:15] = rng.random((12, 14, 12)) + 1
        path = _write_volume(tmp_path / f"{name}_t2.nii.gz", volume)
        if name == "bad":
            path.write_bytes(path.read_bytes()[:-6])
        out = tmp_path / "out"
        kwargs = dict(image_paths=[str(path)], channel_names=["T2"], output_images=[str(out / f"{name}_0000.nii.gz")],
                      crop_info_path=str(out / f"{name}.json"), label_path=str(out / f"{name}_label.nii.gz"))
        cases.append(Case(name, (out / f"{name}_0000.nii.gz",), convert_brain_subject, kwargs))
    summary = run_cases(cases)
    assert summary.converted == ["good"]
    assert "bad_t2.nii.gz: incomplete file" in summary.failed["bad"]


def test_pools_refuse_cut_files(tmp_path):
    from nnunet_anomaly.dataset_conversion import DatasetPool_ImageNet, DatasetPool_MOODAbdomen
    from nnunet_anomaly.pools import FolderPool

    rng = np.random.default_rng(6)
    pool = tmp_path / "pool"
    (pool / "images").mkdir(parents=True)
    image = _write_volume(pool / "images" / "x.nii.gz", rng.normal(size=(8, 9, 10)).astype(np.float32))
    whole = image.read_bytes()
    image.write_bytes(whole[:-5])
    with pytest.raises(ValueError, match=r"x.nii.gz: incomplete file"):
        FolderPool(pool).sample(np.random.default_rng(0))
    ct = _write_volume(tmp_path / "ct.nii.gz", rng.random((16, 16, 16)).astype(np.float32))
    _cut(ct, ct.stat().st_size // 2, tmp_path / "ct_cut.nii.gz")
    with pytest.raises(ValueError, match=r"ct_cut.nii.gz: incomplete file"):
        DatasetPool_MOODAbdomen.convert_volume(input_path=str(tmp_path / "ct_cut.nii.gz"),
                                               image_path=str(tmp_path / "o.nii.gz"), mask_path=str(tmp_path / "m.nii.gz"),
                                               size=8)
    for suffix in (".png", ".jpg"):
        picture = tmp_path / f"photo{suffix}"
        Image.fromarray((rng.random((64, 80, 3)) * 255).astype(np.uint8)).save(picture)
        cut = _cut(picture, picture.stat().st_size // 2)
        with pytest.raises(ValueError, match=rf"cut_photo{suffix}"):
            DatasetPool_ImageNet.convert_image(input_path=str(cut), output_path=str(tmp_path / "out.npy"), size=32)
