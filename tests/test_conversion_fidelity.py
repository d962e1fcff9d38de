"""Conversion as the paper's code does it, and robust to kills, failures, re-runs and unexpected errors.

Independent truths: the reference's brain preprocessing written out with scikit-image exactly as
``multitask_method/preprocessing/brain_preproc.py`` calls it; the DDAD refill rule of
``multitask_method/data/vindr_cxr.py`` on a fabricated ``image_labels_train.csv`` in VinDr's layout;
nnU-Net's own file listing (``subfiles``) for what a killed writer leaves behind.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from skimage import transform

from nnunet_anomaly import conversion
from nnunet_anomaly.dataset_conversion import Dataset501_HCP as hcp
from nnunet_anomaly.dataset_conversion import Dataset502_BraTS2017 as brats
from nnunet_anomaly.dataset_conversion import Dataset504_VinDrCXR as vindr

sys.path.insert(0, str(Path(__file__).parent))
from test_conversion_cxr import _finding, _healthy, _pixels, _write_csv, write_dicom  # noqa: E402


def _save(path: Path, array, spacing=(1.0, 1.0, 1.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), np.diag([*spacing, 1.0])), str(path))
    return path


def _brain(shape, lo, hi, rng, base=100.0):
    volume = np.zeros(shape, np.float32)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    volume[box] = base + rng.normal(0, 5, volume[box].shape) + np.indices(volume[box].shape)[0]
    return volume


# -- item 5: brain preprocessing as the reference -----------------------------------------------------
def _reference_low_res_t2(t1, t2, *, hcp_scale=None, flip=False):
    """``brain_preproc.load_and_crop`` for one subject, written out (T2 channel of the low-res stack)."""
    def resize_preserve_edge(img, new_size):
        mask = (img > 0).astype(float)
        new_img = transform.resize(img, new_size, order=1, preserve_range=True)
        new_mask = transform.resize(mask, new_size, order=1, preserve_range=True)
        new_img[new_mask < 0.5] = 0
        new_img[new_mask >= 0.5] /= new_mask[new_mask >= 0.5]
        return new_img

    t1, t2 = t1.astype(float), t2.astype(float)
    if hcp_scale:
        size = np.array(t1.shape) * hcp_scale
        t1, t2 = resize_preserve_edge(t1, size), resize_preserve_edge(t2, size)
    boxes = []
    for volume in (t1, t2):
        mask = volume > 0
        volume[mask] = (volume[mask] - volume[mask].mean()) / (volume[mask].std() + 1e-8)
        boxes.append([(int(np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))[0]),
                       int(np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))[-1]) + 1)
                      for a in range(3)])
    box = tuple(slice(min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(*boxes))
    t2 = t2[box]
    if flip:
        t2 = t2[:, ::-1, :]
    t2 = np.pad(t2, [(0, s % 2) for s in t2.shape])
    return transform.resize(t2, np.array(t2.shape) / 2, order=1, preserve_range=True), [[s.start, s.stop] for s in box]


def test_brain_preprocessing_equals_the_reference_written_out(tmp_path):
    rng = np.random.default_rng(0)
    t2 = _brain((40, 46, 38), (6, 8, 5), (33, 38, 31), rng)
    t1 = _brain((40, 46, 38), (4, 8, 5), (33, 41, 34), rng, base=300.0)  # reaches further than T2
    for scale, flip in ((0.7, False), (None, True)):
        expected, box = _reference_low_res_t2(t1, t2, hcp_scale=scale, flip=flip)
        case = conversion.preprocess_brain([t2], resample_scale=scale, flip_axis=1 if flip else None, box_channels=[t1])
        assert case.crop_info["bbox"] == box  # the union of the T1 and T2 boxes, not T2's alone
        assert case.channels.shape[1:] == expected.shape
        np.testing.assert_allclose(case.channels[0], expected, atol=2e-5)


def test_hcp_and_brats_crop_to_the_union_of_t1_and_t2_without_writing_t1(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "hcp" / "100307" / "T1w"
    t2 = _brain((40, 46, 38), (6, 8, 5), (33, 38, 31), rng)
    t1 = _brain((40, 46, 38), (4, 8, 5), (33, 43, 34), rng, base=300.0)
    _save(folder / "T2w_acpc_dc_restore_brain.nii.gz", t2, (0.7,) * 3)
    _save(folder / "T1w_acpc_dc_restore_brain.nii.gz", t1, (0.7,) * 3)
    summary, dataset = hcp.convert(tmp_path / "hcp", tmp_path / "raw")
    assert summary.ok
    info = json.loads((dataset / "crop_info" / "HCP_100307.json").read_text())
    assert info["crop_box_from"] == ["T2w_acpc_dc_restore_brain.nii.gz", "T1w_acpc_dc_restore_brain.nii.gz"]
    assert info["bbox"] == _reference_low_res_t2(t1, t2, hcp_scale=0.7)[1]
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == ["HCP_100307_0000.nii.gz"]

    case = tmp_path / "brats" / "HGG" / "Brats17_x"
    _save(case / "Brats17_x_t2.nii.gz", t2)
    _save(case / "Brats17_x_t1.nii.gz", t1)
    seg = np.zeros(t2.shape, np.int16)
    seg[15:20, 15:20, 15:20] = 1
    _save(case / "Brats17_x_seg.nii.gz", seg)
    summary, dataset = brats.convert(tmp_path / "brats", tmp_path / "raw")
    assert summary.ok
    info = json.loads((dataset / "crop_info" / "Brats17_x.json").read_text())
    expected, box = _reference_low_res_t2(t1, t2, flip=True)
    assert info["bbox"] == box
    written = np.asarray(nib.load(str(dataset / "imagesTs" / "Brats17_x_0000.nii.gz")).dataobj)
    np.testing.assert_allclose(written, expected, atol=2e-5)


# -- item 4: the DDAD split as the paper uses it --------------------------------------------------------
def _image_labels(path: Path, votes: dict):
    """VinDr's image_labels_train.csv: one row per (image, radiologist), a 0/1 column per label."""
    columns = ["image_id", "rad_id", "Aortic enlargement", "Nodule/Mass", "Other lesion", "No finding"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for image_id, healthy_votes in votes.items():
            for reader in range(3):
                healthy = reader < healthy_votes
                writer.writerow([image_id, f"R{reader + 1}", 0, 0 if healthy else 1, 0, int(healthy)])


@pytest.fixture()
def ddad_root(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "vindr"
    # DDAD lists tr_a, tr_b (train) and te_h, te_h2 (healthy test), te_a (abnormal test);
    # tr_b and te_h2 were not labelled "No finding" by every radiologist; ex_* are other healthy images
    votes = {"tr_a": 3, "tr_b": 2, "te_h": 3, "te_h2": 1, "te_a": 0, "ex_1": 3, "ex_2": 3, "ex_3": 3, "sick": 0}
    _image_labels(root / "annotations" / "image_labels_train.csv", votes)
    for image_id in votes:
        write_dicom(root / "train" / f"{image_id}.dicom", _pixels(rng, image_id == "te_a"))
    _write_csv(root / "annotations" / "annotations_train.csv",
               [_healthy(i, f"R{r}") for i in votes if i not in ("te_a", "sick") for r in (1, 2, 3)]
               + [_finding("te_a", (60, 90, 100, 180), "R1"), _finding("sick", (10, 10, 50, 50), "R2")])
    split = {"train": {"0": ["tr_a.png", "tr_b.png"]}, "test": {"0": ["te_h.png", "te_h2.png"], "1": ["te_a.png"]}}
    (root / "split.json").write_text(json.dumps(split))
    return root


def test_paper_ddad_split_drops_and_refills_like_the_reference(ddad_root, tmp_path):
    fully = vindr.read_fully_healthy(ddad_root / "annotations" / "image_labels_train.csv")
    assert fully == ["ex_1", "ex_2", "ex_3", "te_h", "tr_a"]
    split = vindr.paper_ddad_split(vindr.load_ddad_split(ddad_root / "split.json"), fully)
    assert split["train"] == ["tr_a", "ex_1"] and split["test_healthy"] == ["te_h", "ex_3"]
    assert split["dropped_train"] == ["tr_b"] and split["dropped_test"] == ["te_h2"]

    summary, dataset = vindr.convert(ddad_root, tmp_path / "raw", split_json=ddad_root / "split.json",
                                     splits=("ddad_train", "ddad_test"))
    assert summary.ok
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == ["ex_1_0000.nii.gz", "tr_a_0000.nii.gz"]
    assert sorted(p.name for p in (dataset / "labelsTs").iterdir()) == ["ex_3.nii.gz", "te_a.nii.gz", "te_h.nii.gz"]
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["ddad_split"].startswith("paper")

    as_published, dataset = vindr.convert(ddad_root, tmp_path / "raw_ddad", split_json=ddad_root / "split.json",
                                          splits=("ddad_train",), ddad_split="ddad")
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == ["tr_a_0000.nii.gz", "tr_b_0000.nii.gz"]


def test_paper_ddad_split_needs_the_label_file(ddad_root, tmp_path):
    (ddad_root / "annotations" / "image_labels_train.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"image_labels_train.csv .*--ddad-split ddad"):
        vindr.convert(ddad_root, tmp_path / "raw", split_json=ddad_root / "split.json")
    _image_labels(ddad_root / "annotations" / "image_labels_train.csv", {"tr_a": 3, "te_h": 3, "te_a": 3})
    with pytest.raises(ValueError, match="only 1 other fully healthy images to refill 1 training and 1 test"):
        vindr.convert(ddad_root, tmp_path / "raw", split_json=ddad_root / "split.json")


# -- item 7: robustness --------------------------------------------------------------------------------
def test_a_hard_kill_leaves_nothing_that_nnunet_lists_as_a_case(tmp_path):
    from nnunetv2.utilities.file_path_utilities import subfiles  # nnU-Net's own listing of imagesTr

    folder = tmp_path / "imagesTr"
    conversion.write_nifti(folder / "done_0000.nii.gz", np.ones((4, 4, 4)))
    script = textwrap.dedent(f"""
        import os, signal
        from nnunet_anomaly._io import atomic_path
        with atomic_path({str(folder / 'killed_0000.nii.gz')!r}) as tmp:
            tmp.write_bytes(b"half a volume")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert completed.returncode == -9
    assert subfiles(str(folder), suffix=".nii.gz", join=False) == ["done_0000.nii.gz"]
    leftovers = [p for p in folder.rglob("*") if p.is_file() and p.name != "done_0000.nii.gz"]
    assert len(leftovers) == 1  # in the hidden temporary folder
    summary = conversion.run_cases([conversion.Case("x", (folder / "x.txt",), (folder / "x.txt").write_text,
                                                    {"data": "1"})])
    assert summary.converted == ["x"]
    assert sorted(p.name for p in folder.iterdir()) == ["done_0000.nii.gz", "x.txt"]  # the leftover is gone


def test_num_training_counts_only_cases_whose_image_was_written(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    for subject in ("100307", "100408"):
        _save(tmp_path / "hcp" / subject / "T1w" / "T2w_acpc_dc_restore_brain.nii.gz",
              _brain((30, 34, 28), (5, 6, 5), (25, 28, 23), rng), (0.7,) * 3)
    real = conversion.write_nifti

    def failing(path, *args, **kwargs):
        if "100408_0000" in str(path):
            raise OSError("No space left on device")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(conversion, "write_nifti", failing)
    summary, dataset = hcp.convert(tmp_path / "hcp", tmp_path / "raw")
    assert set(summary.failed) == {"HCP_100408"} and "No space left" in summary.failed["HCP_100408"]
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 1
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == ["HCP_100307.nii.gz"]  # no orphan label


def test_a_rerun_with_other_options_is_refused_or_redone(tmp_path, capsys):
    rng = np.random.default_rng(4)
    folder = tmp_path / "hcp" / "100307" / "T1w"
    _save(folder / "T2w_acpc_dc_restore_brain.nii.gz", _brain((30, 34, 28), (5, 6, 5), (25, 28, 23), rng), (0.7,) * 3)
    _save(folder / "T1w_acpc_dc_restore_brain.nii.gz", _brain((30, 34, 28), (5, 6, 5), (25, 28, 23), rng), (0.7,) * 3)
    summary, dataset = hcp.convert(tmp_path / "hcp", tmp_path / "raw", with_t1=True)
    assert summary.ok and (dataset / "imagesTr" / "HCP_100307_0001.nii.gz").is_file()
    with pytest.raises(ValueError, match=r"other options \(with_t1: True -> False\).*--overwrite"):
        hcp.convert(tmp_path / "hcp", tmp_path / "raw", with_t1=False)
    assert hcp.main(["-i", str(tmp_path / "hcp"), "-o", str(tmp_path / "raw")]) == 1
    assert "other options" in capsys.readouterr().err
    assert hcp.main(["-i", str(tmp_path / "hcp"), "-o", str(tmp_path / "raw"), "--overwrite"]) == 0
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == ["HCP_100307_0000.nii.gz"]
    assert json.loads((dataset / "dataset.json").read_text())["channel_names"] == {"0": "noNorm"}
    again, _ = hcp.convert(tmp_path / "hcp", tmp_path / "raw")  # same options: resumes
    assert again.skipped == ["HCP_100307"]


def _raise(kind):
    raise {"key": KeyError("rad_id"), "index": IndexError("tuple index out of range"),
           "memory": MemoryError("out of memory"), "eof": EOFError("compressed file ended")}[kind]


@pytest.mark.parametrize("num_processes", [1, 2])
def test_any_exception_fails_one_case_not_the_run(tmp_path, num_processes):
    cases = [conversion.Case(kind, (tmp_path / f"{kind}.txt",), _raise, {"kind": kind})
             for kind in ("key", "index", "memory", "eof")]
    good = tmp_path / "good.txt"
    cases.append(conversion.Case("good", (good,), conversion.write_json, {"path": good, "data": {"ok": True}}))
    summary = conversion.run_cases(cases, num_processes)
    assert summary.converted == ["good"] and good.is_file()
    assert summary.failed == {"key": "KeyError: 'rad_id'", "index": "IndexError: tuple index out of range",
                              "memory": "MemoryError: out of memory", "eof": "EOFError: compressed file ended"}
