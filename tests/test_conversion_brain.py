"""Brain MRI conversion (HCP, BraTS 2017, ISLES 2015) on tiny fabricated volumes in the real layouts.

Independent truths: the fabricated brain is an ellipsoid with a known world-space centre and a lesion
at a known world position, so the outputs' geometry is checked through their affines, not only their
shapes; intensities against the z-score definition; masks against the images.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnunet_anomaly import conversion
from nnunet_anomaly.dataset_conversion import Dataset501_HCP as hcp
from nnunet_anomaly.dataset_conversion import Dataset502_BraTS2017 as brats
from nnunet_anomaly.dataset_conversion import Dataset503_ISLES2015 as isles

REPO = Path(__file__).resolve().parents[1]


def _ellipsoid_brain(shape, centre, radii, rng, scale=1.0):
    grid = np.indices(shape, dtype=float)
    inside = sum(((grid[a] - centre[a]) / radii[a]) ** 2 for a in range(3)) <= 1.0
    texture = 100 * scale + 20 * scale * grid[0] / shape[0] + rng.normal(0, 2 * scale, shape)
    return np.where(inside, texture, 0.0).astype(np.float32), inside


def _save(path: Path, array, spacing, origin=(0.0, 0.0, 0.0)):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return affine


def _hash_tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask).mean(0)
    return affine[:3, :3] @ idx + affine[:3, 3]


@pytest.fixture()
def hcp_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "hcp"
    for subject in ("100307", "100408"):
        folder = root / subject / "T1w"
        t2, inside = _ellipsoid_brain((46, 54, 44), (22, 27, 21), (16, 20, 15), rng)
        t1 = np.where(inside, 500 + rng.normal(0, 5, t2.shape), 0).astype(np.float32)
        _save(folder / "T2w_acpc_dc_restore_brain.nii.gz", t2, (0.7, 0.7, 0.7), (-10, -20, -5))
        _save(folder / "T1w_acpc_dc_restore_brain.nii.gz", t1, (0.7, 0.7, 0.7), (-10, -20, -5))
    return root


def test_edge_preserving_rescale_keeps_edge_intensity():
    image = np.zeros((30, 30, 30), np.float32)
    image[5:25, 5:25, 5:25] = 7.0
    out = conversion.edge_preserving_rescale(image, 0.7)
    assert out.shape == (21, 21, 21)
    assert np.allclose(out[out > 0], 7.0, atol=1e-5)  # no darkened rim
    from skimage.transform import rescale

    plain = rescale(image, 0.7, order=1, anti_aliasing=False, preserve_range=True)
    assert plain[(plain > 0)].min() < 6.0  # what the trick avoids


def test_hcp_geometry_intensity_and_masks(hcp_root, tmp_path):
    out = tmp_path / "raw"
    before = _hash_tree(hcp_root)
    summary, dataset_dir = hcp.convert(hcp_root, out, with_t1=True)
    assert summary.converted == ["HCP_100307", "HCP_100408"] and summary.ok
    assert _hash_tree(hcp_root) == before  # the source is untouched

    meta = json.loads((dataset_dir / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "noNorm", "1": "noNorm"} and meta["numTraining"] == 2
    assert meta["modalities"] == {"0": "T2", "1": "T1"}
    assert meta["labels"] == {"background": 0, "brain": 1} and "brain mask" in meta["label_meaning"]

    t2_img = nib.load(str(dataset_dir / "imagesTr" / "HCP_100307_0000.nii.gz"))
    t2 = t2_img.get_fdata()
    t1 = nib.load(str(dataset_dir / "imagesTr" / "HCP_100307_0001.nii.gz")).get_fdata()
    label = nib.load(str(dataset_dir / "labelsTr" / "HCP_100307.nii.gz")).get_fdata()
    # brain: 0.7 mm ellipsoid of radii (16, 20, 15) voxels = (11.2, 14, 10.5) mm -> 1 mm -> 2 mm voxels
    extent = np.ptp(np.argwhere(label > 0), axis=0) + 1
    assert np.all(np.abs(extent - np.array([11.2, 14.0, 10.5])) <= 1.5), extent
    assert np.allclose(np.diag(t2_img.affine)[:3], 2 * 0.7 * 46 / 32, atol=0.05)  # 0.7 mm x (46/32) x 2
    # the brain stays where it was in world space
    centre_in = np.array([22, 27, 21]) * 0.7 + np.array([-10, -20, -5])
    assert np.allclose(_world_centroid(label > 0, t2_img.affine), centre_in, atol=1.0)
    # intensities: z-scored in the brain, exactly 0 outside the label, label = filled nonzero region
    assert np.all(t2[label == 0] == 0) and np.all(t1[label == 0] == 0)
    assert abs(t2[label > 0].mean()) < 0.15 and 0.6 < t2[label > 0].std() < 1.2
    assert np.array_equal(label > 0, conversion.brain_foreground(np.stack([t2, t1])))
    assert all(s <= m for s, m in zip(t2.shape, (80, 112, 80)))

    info = json.loads((dataset_dir / "crop_info" / "HCP_100307.json").read_text())
    assert info["input_shape"] == [46, 54, 44] and info["resampled_shape"] == [32, 38, 31]
    assert all(p % 2 == 0 for p in info["padded_shape"])
    assert info["output_shape"] == [p // 2 for p in info["padded_shape"]] == list(t2.shape)
    assert np.allclose(info["output_affine"], t2_img.affine, atol=1e-4)
    # nnU-Net's own reader agrees on shape and on the label grid
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    img, props = SimpleITKIO().read_images([str(dataset_dir / "imagesTr" / "HCP_100307_0000.nii.gz"),
                                            str(dataset_dir / "imagesTr" / "HCP_100307_0001.nii.gz")])
    seg, _ = SimpleITKIO().read_seg(str(dataset_dir / "labelsTr" / "HCP_100307.nii.gz"))
    assert img.shape[0] == 2 and img.shape[1:] == seg.shape[1:]


def test_hcp_resumable_and_failures_are_named(hcp_root, tmp_path):
    out = tmp_path / "raw"
    summary, dataset_dir = hcp.convert(hcp_root, out)
    assert len(summary.converted) == 2
    outputs = {p: p.stat().st_mtime_ns for p in dataset_dir.rglob("*.nii.gz")}
    again, _ = hcp.convert(hcp_root, out)
    assert again.converted == [] and sorted(again.skipped) == ["HCP_100307", "HCP_100408"]
    assert {p: p.stat().st_mtime_ns for p in dataset_dir.rglob("*.nii.gz")} == outputs

    # a malformed file and a missing T1 fail their own case, named, and the run goes on
    broken = hcp_root / "100408" / "T1w" / "T2w_acpc_dc_restore_brain.nii.gz"
    broken.write_bytes(b"not a nifti at all")
    (hcp_root / "100307" / "T1w" / "T1w_acpc_dc_restore_brain.nii.gz").unlink()
    summary, _ = hcp.convert(hcp_root, tmp_path / "raw2", with_t1=True)
    assert set(summary.failed) == {"HCP_100307", "HCP_100408"}
    assert "T1w_acpc_dc_restore_brain" in summary.failed["HCP_100307"]
    assert str(broken) in summary.failed["HCP_100408"]
    assert not list((tmp_path / "raw2").rglob("*.tmp*"))  # atomic writes leave no debris
    assert "failed 2" in str(summary)

    with pytest.raises(FileNotFoundError, match="does not exist"):
        hcp.find_subjects(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="T2w_acpc_dc_restore_brain"):
        hcp.find_subjects(tmp_path / "empty")
    with pytest.raises(ValueError, match="two"):  # the root one level too high: ambiguous subjects
        hcp.find_subjects(tmp_path)


@pytest.fixture()
def brats_root(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "brats"
    for grade, case in (("HGG", "Brats17_2013_10_1"), ("LGG", "Brats17_TCIA_101_1")):
        folder = root / grade / case
        t2, inside = _ellipsoid_brain((40, 48, 36), (20, 24, 18), (16, 20, 14), rng)
        seg = np.zeros(t2.shape, np.int16)
        seg[18:24, 32:38, 15:21] = 2   # oedema, anterior (high j)
        seg[20:22, 34:36, 17:19] = 4   # enhancing core
        _save(folder / f"{case}_t2.nii.gz", t2, (1, 1, 1))
        _save(folder / f"{case}_t1.nii.gz", np.where(inside, 300.0, 0).astype(np.float32) + t2 * 0.1, (1, 1, 1))
        _save(folder / f"{case}_seg.nii.gz", seg, (1, 1, 1))
        _save(folder / f"{case}_flair.nii.gz", t2, (1, 1, 1))
    return root


def test_brats_flip_lesion_alignment_and_test_layout(brats_root, tmp_path):
    before = _hash_tree(brats_root)
    summary, dataset_dir = brats.convert(brats_root, tmp_path / "raw", num_processes=2)
    assert summary.ok and sorted(summary.converted) == ["Brats17_2013_10_1", "Brats17_TCIA_101_1"]
    assert _hash_tree(brats_root) == before
    assert not (dataset_dir / "imagesTr").exists()
    meta = json.loads((dataset_dir / "dataset.json").read_text())
    assert meta["numTraining"] == 0 and meta["labels"]["tumour"] == 1 and meta["channel_names"] == {"0": "noNorm"} and meta["modalities"] == {"0": "T2"}

    case = "Brats17_2013_10_1"
    img = nib.load(str(dataset_dir / "imagesTs" / f"{case}_0000.nii.gz"))
    lesion = nib.load(str(dataset_dir / "labelsTs" / f"{case}.nii.gz")).get_fdata()
    brain = nib.load(str(dataset_dir / "brainmasksTs" / f"{case}.nii.gz")).get_fdata()
    assert set(np.unique(lesion)) == {0, 1}  # every tumour class became 1
    assert np.all(lesion <= brain)
    # flipped along axis 1: the anterior lesion now sits at LOW j indices of the array ...
    j_centre = np.argwhere(lesion).mean(0)[1]
    assert j_centre < lesion.shape[1] / 2
    # ... while in world space it stays where it was (the affine records the flip)
    assert np.allclose(_world_centroid(lesion > 0, img.affine), [20.5, 34.5, 17.5], atol=1.5)
    # lesion volume: 6^3 voxels at 1 mm ~ 27 voxels at 2 mm
    assert 15 <= lesion.sum() <= 45
    info = json.loads((dataset_dir / "crop_info" / f"{case}.json").read_text())
    assert info["flip_axis"] == 1 and "resample_scale" not in info
    # the crop info undoes everything: the lesion maps back onto the input grid (CRADL comparison)
    back = conversion.undo_brain_crop(lesion.astype(np.uint8), info, order=0).astype(bool)
    original = np.asarray(nib.load(str(brats_root / "HGG" / case / f"{case}_seg.nii.gz")).dataobj) != 0
    assert back.shape == original.shape
    dice = 2 * (back & original).sum() / (back.sum() + original.sum())
    assert dice > 0.6, dice
    with pytest.raises(ValueError, match="output_shape"):
        conversion.undo_brain_crop(np.zeros((3, 3, 3)), info)


def _isles_case(root: Path, number: int, rng, with_ot=True):
    t2, inside = _ellipsoid_brain((38, 44, 30), (19, 22, 15), (15, 18, 12), rng)
    ot = np.zeros(t2.shape, np.uint8)
    ot[10:16, 10:18, 12:18] = 1
    base = root / "Training" / str(number)
    tags = {"MR_T2": t2, "MR_T1": t2 * 0.5, "MR_Flair": t2}
    if with_ot:
        tags["OT"] = ot
    for i, (tag, data) in enumerate(tags.items()):
        name = f"VSD.Brain.XX.O.{tag}.{70000 + 10 * number + i}"
        _save(base / name / f"{name}.nii", data, (1, 1, 1))


def test_isles_layout_lesion_and_missing_modality(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "isles"
    _isles_case(root, 1, rng)
    _isles_case(root, 2, rng)
    summary, dataset_dir = isles.convert(root, tmp_path / "raw", with_t1=True)
    assert summary.ok and sorted(summary.converted) == ["ISLES_1", "ISLES_2"]
    lesion = nib.load(str(dataset_dir / "labelsTs" / "ISLES_1.nii.gz")).get_fdata()
    t2 = nib.load(str(dataset_dir / "imagesTs" / "ISLES_1_0000.nii.gz"))
    assert (dataset_dir / "imagesTs" / "ISLES_1_0001.nii.gz").is_file()
    assert np.allclose(_world_centroid(lesion > 0, t2.affine), [12.5, 13.5, 14.5], atol=1.5)  # no flip
    assert np.all(t2.get_fdata()[lesion > 0] != 0)

    # a case whose T1 is missing fails by name; the other converts
    for p in (root / "Training" / "2").rglob("*MR_T1*.nii"):
        p.unlink()
    summary, _ = isles.convert(root, tmp_path / "raw2", with_t1=True)
    assert summary.converted == ["ISLES_1"] and "MR_T1" in summary.failed["ISLES_2"]


def test_cli_help_errors_and_env(hcp_root, tmp_path, monkeypatch):
    script = REPO / "dataset_conversion" / "Dataset501_HCP.py"
    env_clean = {k: v for k, v in __import__("os").environ.items() if k != "nnUNet_raw"}
    res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--with-t1" in res.stdout
    res = subprocess.run([sys.executable, str(script), "-i", str(hcp_root)], capture_output=True, text=True,
                         env=env_clean)
    assert res.returncode == 1 and "nnUNet_raw" in res.stderr and "Traceback" not in res.stderr
    # nnUNet_raw is read at use time
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "envraw"))
    assert hcp.main(["-i", str(hcp_root)]) == 0
    assert (tmp_path / "envraw" / "Dataset501_HCP" / "labelsTr" / "HCP_100307.nii.gz").is_file()
    assert hcp.main(["-i", str(tmp_path / "missing")]) == 1


def test_preprocess_brain_rejects_bad_inputs():
    with pytest.raises(ValueError, match="no positive voxels"):
        conversion.preprocess_brain([np.zeros((4, 4, 4))])
    with pytest.raises(ValueError, match="differ"):
        conversion.preprocess_brain([np.ones((4, 4, 4)), np.ones((4, 4, 5))])
    with pytest.raises(ValueError, match="constant"):
        conversion.preprocess_brain([np.ones((4, 4, 4))])
    with pytest.raises(ValueError, match="exceeds"):
        conversion.preprocess_brain([np.arange(1.0, 513.0).reshape(8, 8, 8)], max_crop_shape=(4, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        conversion.preprocess_brain([np.full((4, 4, 4), np.nan)])
